import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isMap, isSeq, type Node } from 'yaml';
import { AddressPolicy } from '../net/ssrf.js';
import { ALERT_SOURCES, SEVERITIES, type AlertSource, type Severity } from '../alert/payload.js';
import { bool, duration, field, int, list, obj, oneOf, parseJsonValue, str, stringMap, type Validator, reportIssue, refine } from './schema.js';

// The `webhooks:` block of the server config, and the shape of one integration
// as both the config file and the admin API take it (the API parses its JSON
// body with the same validators, so both report problems the same way).

export const INTEGRATION_TYPES = ['generic', 'gitlab', 'alertmanager', 'slack'] as const;
export type IntegrationType = (typeof INTEGRATION_TYPES)[number];

/** Standard Webhooks' suggested schedule: the waits after the 1st, 2nd... failed try. */
export const DEFAULT_RETRY_SCHEDULE_MS = [5_000, 5 * 60_000, 30 * 60_000, 2 * 3_600_000, 5 * 3_600_000, 10 * 3_600_000, 10 * 3_600_000];
export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_CONCURRENCY = 4;
/** Standard Webhooks: 24 to 64 random bytes behind "whsec_". */
export const SECRET_MIN_BYTES = 24;
export const SECRET_MAX_BYTES = 64;
/** One active and one being rotated in. */
export const MAX_ACTIVE_SECRETS = 2;

/** A secret as each kind of source writes it in examples. */
const SECRET_EXAMPLE = { read: 'env:VERDICT_WEBHOOK_SECRET', refuse: 'whsec_…' } as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
// RFC 7230 token; names we set ourselves cannot be overridden.
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const RESERVED_HEADERS = new Set([
  'host',
  'content-type',
  'content-length',
  'transfer-encoding',
  'connection',
  'authorization',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
  'user-agent',
]);

/**
 * Reads a secret given as `env:VAR`, `file:/path` or the value itself, so
 * operators can keep secrets out of the config file. Throws a message that says
 * what to do.
 */
export function resolveSecretRef(ref: string): string {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`"${ref}": "${name}" is not an environment variable name`);
    const v = process.env[name];
    if (v === undefined || v.trim() === '') throw new Error(`environment variable ${name} is not set; export it before starting the server, or use file:/path`);
    return v.trim();
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    if (!path) throw new Error('"file:" needs a path, e.g. file:/etc/verdict/webhook-secret');
    try {
      return readFileSync(path, 'utf8').trim();
    } catch (e) {
      throw new Error(`cannot read secret file ${path}: ${(e as Error).message}; mount the file or fix the path`);
    }
  }
  return ref;
}

/** Checks a resolved Standard Webhooks secret; returns what is wrong. */
export function whsecProblem(secret: string): string | undefined {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!m) return 'must be "whsec_" followed by base64 (generate one with: echo "whsec_$(openssl rand -base64 32)")';
  const n = Buffer.from(m[1]!, 'base64').length;
  if (n < SECRET_MIN_BYTES || n > SECRET_MAX_BYTES)
    return `decodes to ${n} bytes; use ${SECRET_MIN_BYTES} to ${SECRET_MAX_BYTES} random bytes (echo "whsec_$(openssl rand -base64 32)")`;
  return undefined;
}

const isRef = (s: string) => s.startsWith('env:') || s.startsWith('file:');

/**
 * Whether env:/file: references are read. They read the server host's own
 * environment and files, which is the operator's to expose: the config file
 * may use them, an admin API body may not (it could read any file the server
 * can, and learn from the answer what the file holds or whether it exists).
 */
type Refs = 'read' | 'refuse';

const refRefused = (what: string) =>
  `env: and file: references read the server's own environment and files, so only the server config file may use them; send the ${what} itself`;

const secretRef = (kind: 'whsec' | 'key', refs: Refs): Validator<string> =>
  refine(str({ nonEmpty: true, sensitive: true }), (ref) => {
    if (isRef(ref) && refs === 'refuse') return refRefused(kind === 'whsec' ? 'secret (whsec_…)' : 'key');
    let value: string;
    try {
      value = resolveSecretRef(ref);
    } catch (e) {
      return (e as Error).message;
    }
    if (kind === 'whsec') {
      const why = whsecProblem(value);
      if (why) return isRef(ref) ? `the secret in ${ref} ${why}` : why;
    } else if (value === '') {
      return 'must not be empty';
    }
    return undefined;
  });

/** `secret`: the URL was read from env:/file:, so the message does not quote any of it. */
function urlProblem(u: string, secret = false): string | undefined {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return 'is not a URL; use e.g. https://hooks.example.com/verdict';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return `${secret ? 'has a scheme that' : `scheme "${url.protocol.slice(0, -1)}"`} is not supported; use https:// (or http:// inside a trusted network)`;
  if (url.username || url.password) return 'must not carry credentials; use key (Authorization: Bearer) or headers';
  return undefined;
}

const httpUrl: Validator<string> = refine(str({ nonEmpty: true }), (u) => urlProblem(u));

/** A URL, or env:/file: holding one (a Slack webhook URL is itself a secret). */
const endpointUrl = (refs: Refs): Validator<string> =>
  refine(str({ nonEmpty: true, sensitive: true }), (ref) => {
    if (!isRef(ref)) return urlProblem(ref);
    if (refs === 'refuse') return refRefused('URL');
    let value: string;
    try {
      value = resolveSecretRef(ref);
    } catch (e) {
      return (e as Error).message;
    }
    const why = urlProblem(value, true);
    return why && `the URL in ${ref} ${why}`;
  });

/** An IP, a CIDR or a host name. */
export function allowEntryProblem(e: string): string | undefined {
  const [addr, bits, extra] = e.split('/');
  if (extra !== undefined) return 'must be an IP address, a CIDR such as 10.0.0.0/8, or a host name';
  if (bits !== undefined) {
    const v = isIP(addr!);
    const n = Number(bits);
    if (!v || !/^\d{1,3}$/.test(bits) || n > (v === 4 ? 32 : 128)) return `"${e}" is not a CIDR; use e.g. 10.0.0.0/8 or fd00::/8`;
    return undefined;
  }
  if (isIP(addr!)) return undefined;
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(addr!)) return `"${e}" is neither an IP address, a CIDR nor a host name`;
  return undefined;
}

const headers: Validator<Record<string, string>> = refine(stringMap(), (h) => {
  for (const k of Object.keys(h)) {
    if (!HEADER_NAME_RE.test(k)) return `"${k}" is not a valid header name`;
    if (RESERVED_HEADERS.has(k.toLowerCase())) return `"${k}" is set by Verdict; use key for Authorization`;
    if (/[\r\n]/.test(h[k]!)) return `the value of "${k}" must be one line`;
  }
  return undefined;
});

export const DEFAULT_ROUTE = { min_severity: 'info' as const, sources: [], namespaces: [], policies: [], rules: [], agents: [] };

const routeSchema = obj({
  min_severity: field<Severity>(oneOf(SEVERITIES), { default: 'info' }),
  sources: field<AlertSource[]>(list(oneOf(ALERT_SOURCES), { example: `sources: [${ALERT_SOURCES.join(', ')}]` }), { default: [] }),
  namespaces: field(list(str({ nonEmpty: true })), { default: [] }),
  policies: field(list(str({ nonEmpty: true })), { default: [] }),
  rules: field(list(str({ nonEmpty: true })), { default: [] }),
  agents: field(list(str({ nonEmpty: true })), { default: [] }),
});

const integrationFields = (refs: Refs) =>
  obj({
    name: field(str({ pattern: NAME_RE, hint: 'letters, digits, ".", "_" or "-", at most 63, starting with a letter or digit' }), { required: true }),
    type: field(oneOf(INTEGRATION_TYPES), { required: true }),
    url: field(endpointUrl(refs), { required: true }),
    enabled: field(bool(), { default: true }),
    secrets: field(list(secretRef('whsec', refs), { example: `secrets: [${SECRET_EXAMPLE[refs]}]` }), { default: [] }),
    key: field(secretRef('key', refs)),
    route: field(routeSchema, { default: DEFAULT_ROUTE }),
    group_window: field(duration({ min: 1 })),
    headers: field(headers, { default: {} }),
    timeout: field(duration({ min: 1 }), { default: DEFAULT_TIMEOUT_MS }),
    retry_schedule: field(list(duration({ min: 1 }), { example: 'retry_schedule: [5s, 5m, 30m]' }), { default: DEFAULT_RETRY_SCHEDULE_MS }),
    concurrency: field(int({ min: 1, max: 64 }), { default: DEFAULT_CONCURRENCY }),
    repeat_milestones: field(list(int({ min: 2 }), { example: 'repeat_milestones: [10, 100, 1000]' }), { default: [] }),
  });

type Out<V> = V extends Validator<infer T> ? T : never;
export type IntegrationSpec = Out<ReturnType<typeof integrationFields>>;
export type RouteSpec = IntegrationSpec['route'];

/** Rules that span fields, reported at the field that has to change. */
const integrationSchema = (refs: Refs): Validator<IntegrationSpec> => {
  const fields = integrationFields(refs);
  return (node, path, ctx) => {
    const before = ctx.issues.length;
    const spec = fields(node, path, ctx);
    // Fields that failed are missing: cross-field rules would only add noise.
    if (!spec || ctx.issues.length > before) return undefined;
    const at = (k: string) => (isMap(node) ? (node.get(k, true) as Node | undefined) : undefined) ?? node;
    const p = (k: string) => (path ? `${path}.${k}` : k);
    if (spec.type === 'generic' && spec.secrets.length === 0)
      reportIssue(ctx, node, p('secrets'), `a generic webhook is signed: give one secret (two while rotating), e.g. secrets: [${SECRET_EXAMPLE[refs]}]`);
    if (spec.secrets.length > MAX_ACTIVE_SECRETS)
      reportIssue(ctx, at('secrets'), p('secrets'), `at most ${MAX_ACTIVE_SECRETS} secrets may be active (the new one and the one being retired)`);
    if (spec.type === 'gitlab' && spec.key === undefined)
      reportIssue(
        ctx,
        node,
        p('key'),
        `GitLab's HTTP integration needs its authorization key: key: ${refs === 'read' ? 'env:GITLAB_ALERT_KEY' : '<the key GitLab shows>'}`,
      );
    if (spec.type === 'slack' && (spec.key !== undefined || spec.secrets.length))
      reportIssue(
        ctx,
        at(spec.key !== undefined ? 'key' : 'secrets'),
        p(spec.key !== undefined ? 'key' : 'secrets'),
        'a Slack incoming webhook takes no key or secrets; its URL is the secret',
      );
    if (spec.type === 'gitlab' && spec.group_window !== undefined)
      reportIssue(ctx, at('group_window'), p('group_window'), "GitLab's HTTP integration takes one alert per request; remove group_window");
    const ms = spec.repeat_milestones;
    if (ms.some((m, i) => i > 0 && m <= ms[i - 1]!))
      reportIssue(ctx, at('repeat_milestones'), p('repeat_milestones'), 'must be increasing, e.g. [10, 100, 1000]');
    return ctx.issues.length > before ? undefined : spec;
  };
};

const allowEntry: Validator<string> = refine(str({ nonEmpty: true }), allowEntryProblem);

const integrationList: Validator<IntegrationSpec[]> = (node, path, ctx) => {
  const out = list(integrationSchema('read'))(node, path, ctx);
  if (!out) return undefined;
  if (!isSeq(node)) return out;
  // Read from the items, not the parsed list: an item that failed to parse is left out of it, which would shift the index.
  const seen = new Set<string>();
  node.items.forEach((item, i) => {
    const nameNode = isMap(item) ? (item.get('name', true) as Node | undefined) : undefined;
    const name = nameNode && 'value' in nameNode ? nameNode.value : undefined;
    if (typeof name !== 'string') return;
    if (seen.has(name)) reportIssue(ctx, nameNode!, `${path}[${i}].name`, `"${name}" is used by an earlier integration; names must be unique`);
    seen.add(name);
  });
  return out;
};

const webhooksFields = obj({
  /** IPs, CIDRs or host names that may be private, loopback or link-local. */
  allow_private_addresses: field(list(allowEntry, { example: 'allow_private_addresses: [10.0.0.0/8, 127.0.0.1]' }), { default: [] }),
  /** Public base URL of this server, for links in payloads. */
  external_url: field(httpUrl),
  integrations: field(integrationList, { default: [] }),
});

export type WebhooksConfig = Out<typeof webhooksFields>;

/**
 * The block, with integrations whose URL is a private address known without DNS (a literal IP, localhost)
 * and not in allow_private_addresses refused here, at the URL's line: every delivery to them would be
 * refused. Names are checked when delivering, where their current addresses are known.
 */
export const webhooksConfigSchema: Validator<WebhooksConfig> = (node, path, ctx, key) => {
  const before = ctx.issues.length;
  const out = webhooksFields(node, path, ctx, key);
  if (!out || ctx.issues.length > before) return out;
  const policy = new AddressPolicy(out.allow_private_addresses);
  const integrations = isMap(node) ? (node.get('integrations', true) as Node | undefined) : undefined;
  for (const [i, spec] of out.integrations.entries()) {
    let url: URL;
    try {
      url = new URL(resolveSecretRef(spec.url));
    } catch {
      continue; // reported by the url field already
    }
    const refused = policy.checkWithoutDns(url);
    if (!refused) continue;
    const item = isSeq(integrations) ? (integrations.items[i] as Node | undefined) : undefined;
    const at = (isMap(item) ? (item.get('url', true) as Node | undefined) : undefined) ?? item ?? node;
    reportIssue(ctx, at, `${path ? `${path}.` : ''}integrations[${i}].url`, isRef(spec.url) ? `the URL in ${spec.url}: ${refused}` : refused);
  }
  return ctx.issues.length > before ? undefined : out;
};

const apiIntegration = integrationSchema('refuse');

/** Validates an admin API body as an integration, refusing env:/file: references; throws ConfigError. */
export function parseIntegrationJson(value: unknown): IntegrationSpec {
  return parseJsonValue(value, 'request body', apiIntegration);
}

/** Validates a JSON value as a whole webhooks block, as the operator's config (used by `verdict demo`). */
export function parseWebhooksJson(value: unknown, what = 'webhooks'): WebhooksConfig {
  return parseJsonValue(value, what, webhooksConfigSchema);
}

export function formatDuration(ms: number): string {
  for (const [unit, n] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** The spec as the API and config take it (durations as strings), for views and PATCH merges. */
export function integrationToJson(spec: IntegrationSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { ...spec, timeout: formatDuration(spec.timeout), retry_schedule: spec.retry_schedule.map(formatDuration) };
  if (spec.group_window !== undefined) out.group_window = formatDuration(spec.group_window);
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
