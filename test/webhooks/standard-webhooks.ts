import { webcrypto } from 'node:crypto';

// An independent receiver-side implementation of Standard Webhooks, written from
// the specification (not from src/server/webhooks/signer.ts) and on WebCrypto
// rather than node:crypto's HMAC, so a shared mistake cannot hide in both.
//
// Spec: signed content = `${id}.${timestamp}.${body}`; key = base64-decode of the
// secret without its "whsec_" prefix; header = space-separated "v1,<base64>".

const enc = new TextEncoder();

async function hmacBase64(secret: string, content: string): Promise<string> {
  const raw = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  const keyBytes = Uint8Array.from(atob(raw), (c) => c.charCodeAt(0));
  const key = await webcrypto.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = new Uint8Array(await webcrypto.subtle.sign('HMAC', key, enc.encode(content)));
  return btoa(String.fromCharCode(...mac));
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export class WebhookVerificationError extends Error {}

/** Throws unless one of the v1 signatures was made with `secret`. */
export async function verifyStandardWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  opts: { toleranceS?: number; nowS?: number } = {},
): Promise<void> {
  const get = (k: string) => {
    const v = headers[k];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = get('webhook-id');
  const ts = get('webhook-timestamp');
  const sig = get('webhook-signature');
  if (!id || !ts || !sig) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  const now = opts.nowS ?? Math.floor(Date.now() / 1000);
  const t = Number.parseInt(ts, 10);
  if (String(t) !== ts) throw new WebhookVerificationError('bad timestamp');
  if (Math.abs(now - t) > (opts.toleranceS ?? 300)) throw new WebhookVerificationError('timestamp outside tolerance');
  const expected = await hmacBase64(secret, `${id}.${ts}.${body}`);
  for (const part of sig.split(' ')) {
    const comma = part.indexOf(',');
    if (part.slice(0, comma) === 'v1' && constantTimeEqual(part.slice(comma + 1), expected)) return;
  }
  throw new WebhookVerificationError('no matching signature');
}
