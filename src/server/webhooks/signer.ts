import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

// Standard Webhooks (https://www.standardwebhooks.com): the signed content is
// "<webhook-id>.<webhook-timestamp>.<body>", HMAC-SHA256 keyed with the base64
// part of a "whsec_" secret; the header lists one "v1,<base64>" per active
// secret so receivers keep verifying while a secret is rotated.

function keyOf(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
}

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  return createHmac('sha256', keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest('base64');
}

/** The value of the webhook-signature header for every active secret. */
export function signatureHeader(secrets: readonly string[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => `v1,${sign(s, id, timestamp, body)}`).join(' ');
}

export function newSecret(bytes = 32): string {
  return `whsec_${randomBytes(bytes).toString('base64')}`;
}

export function newWebhookId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`;
}

/**
 * A webhook-id derived from what the delivery is about rather than drawn at
 * random: the integration, an alert id that every server replica shares
 * (agent/fingerprint/first event id) and the event claimed for it
 * (`triggered`, `resolved`, `repeated:<milestone>`), which happens once per
 * alert and integration. Two replicas that record the same delivery give it
 * the same id, so a receiver that de-duplicates on webhook-id sees it once.
 * Same shape as newWebhookId (msg_ and 128 bits in base64url).
 */
export function stableWebhookId(integration: string, alertKey: string, event: string): string {
  const h = createHash('sha256').update(`verdict.webhook.v1\u0000${integration}\u0000${alertKey}\u0000${event}`).digest();
  return `msg_${h.subarray(0, 16).toString('base64url')}`;
}

/**
 * What a receiver does (see docs/webhooks.md): recompute, compare in constant
 * time, and refuse stale timestamps so a captured request cannot be replayed.
 */
export function verify(
  secret: string,
  headers: { id: string; timestamp: string; signature: string },
  body: string,
  opts: { toleranceS?: number; nowS?: number } = {},
): boolean {
  const ts = Number(headers.timestamp);
  const now = opts.nowS ?? Math.floor(Date.now() / 1000);
  if (!Number.isInteger(ts) || Math.abs(now - ts) > (opts.toleranceS ?? 300)) return false;
  const expected = Buffer.from(sign(secret, headers.id, ts, body));
  return headers.signature.split(' ').some((part) => {
    const [version, sig] = part.split(',');
    const got = Buffer.from(sig ?? '');
    return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
  });
}
