import { isMap, isScalar, type Node } from 'yaml';
import { SEVERITIES } from '../../shared/alert/payload.js';
import { hostPort } from '../../shared/config/host-port.js';
import { bool, duration, field, int, list, obj, oneOf, refine, str, stringMap, type Validator, reportIssue } from '../../shared/config/schema.js';

// Schema of the `falco` block of config.yaml: which ways Falco events come in,
// and how rule hits become alerts. Defaults that depend on the event source
// (severity per priority, fingerprint fields) live in alerts/falco.yaml so they
// can be read and reviewed without reading code.

/** host:port to listen on; port 0 picks a free port (tests). */
const listenAddress = hostPort('host:port, e.g. 0.0.0.0:2801 (the port Falcosidekick uses) or [::]:2801');

const GRPC_HINT = 'unix:///run/falco/falco.sock or host:port, e.g. falco-grpc.falco.svc:5060';
const unixSocket = str({ pattern: /^unix:\/\/\/?\S+$/, hint: GRPC_HINT });
const grpcHostPort = hostPort(GRPC_HINT, { dial: true });
/** Falco's gRPC server: a unix socket or host:port, checked as the one it starts as. */
const grpcAddress: Validator<string> = (node, path, ctx) =>
  (isScalar(node) && typeof node.value === 'string' && node.value.startsWith('unix:') ? unixSocket : grpcHostPort)(node, path, ctx);

/** The largest falco.http.max_body_bytes: Falco's events are kilobytes; a body this large is a mistake. */
export const MAX_BODY_BYTES_CAP = 64 * 1024 * 1024;

/** A body size: the message says the unit and the bounds, since `64MiB` reads naturally but is not a number. */
const bodyBytes: Validator<number> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1024 && v <= MAX_BODY_BYTES_CAP) return v;
  const quoted = typeof v === 'string' && /^\d+$/.test(v) ? ', without quotes' : '';
  return reportIssue(
    ctx,
    node,
    path,
    `must be a number of bytes from 1024 to ${MAX_BODY_BYTES_CAP} (64 MiB), e.g. 8388608 for 8 MiB${quoted}; got ${JSON.stringify(v ?? null)}`,
  );
};

export const FALCO_PRIORITIES = ['Emergency', 'Alert', 'Critical', 'Error', 'Warning', 'Notice', 'Informational', 'Debug'] as const;
export type FalcoPriority = (typeof FALCO_PRIORITIES)[number];

/** Falco priority names, any case, plus "info" as Falco itself accepts it. */
export function priorityFromName(name: string): FalcoPriority | undefined {
  const n = name.trim().toLowerCase();
  if (n === 'info') return 'Informational';
  return FALCO_PRIORITIES.find((p) => p.toLowerCase() === n);
}

const priority: Validator<FalcoPriority> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  const p = typeof v === 'string' ? priorityFromName(v) : undefined;
  if (!p) return reportIssue(ctx, node, path, `must be a Falco priority (${FALCO_PRIORITIES.join(', ')}), got ${JSON.stringify(v ?? null)}`);
  return p;
};

const ruleOverride = obj({
  /** Drop events of this rule: no alert, no count. */
  ignore: field(bool(), { default: false }),
  /** Severity of this rule's alerts instead of the priority mapping. */
  severity: field(oneOf(SEVERITIES)),
});
export type FalcoRuleOverride = NonNullable<ReturnType<typeof ruleOverride>>;

/** Rule name -> override. Rule names are free text, so a mapping keyed by them. */
const ruleOverrides: Validator<Record<string, FalcoRuleOverride>> = (node, path, ctx) => {
  if (!isMap(node)) return reportIssue(ctx, node, path, 'must be a mapping of Falco rule names to { ignore: true } or { severity: <severity> }');
  const out: Record<string, FalcoRuleOverride> = {};
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const p = `${path}["${key}"]`;
    if (!key.trim()) {
      reportIssue(ctx, pair.key as Node, p, 'rule name must not be empty');
      continue;
    }
    const v = ruleOverride(pair.value as Node, p, ctx);
    if (v) out[key] = v;
  }
  return out;
};

const tlsServer = obj({
  cert_file: field(str({ nonEmpty: true }), { required: true }),
  key_file: field(str({ nonEmpty: true }), { required: true }),
  /** When set, clients must present a certificate signed by this CA (mutual TLS). */
  client_ca_file: field(str({ nonEmpty: true })),
});

const reconnect = obj({
  initial_backoff: field(duration({ min: 1 }), { default: 1_000 }),
  max_backoff: field(duration({ min: 1 }), { default: 60_000 }),
});

const falcoBlockShape = obj({
  /** Falco's http_output and Falcosidekick post here. */
  http: field(
    obj({
      listen: field(listenAddress, { default: '0.0.0.0:2801' }),
      max_body_bytes: field(bodyBytes, { default: 1024 * 1024 }),
      tls: field(tlsServer),
    }),
  ),
  /** The JSON lines file Falco's file_output appends to. */
  file: field(
    obj({
      path: field(str({ nonEmpty: true }), { required: true }),
      /** Where to begin when the agent has never read this file before. */
      start_at: field(oneOf(['beginning', 'end'] as const), { default: 'beginning' as 'beginning' | 'end' }),
      poll_interval: field(duration({ min: 10 }), { default: 250 }),
    }),
  ),
  /** JSON lines on the agent's stdin: Falco's program_output starts the agent. */
  stdin: field(bool(), { default: false }),
  /** Falco's legacy gRPC output API (Falco 0.43 and older). */
  grpc: field(
    obj({
      address: field(grpcAddress, { required: true }),
      ca_file: field(str({ nonEmpty: true })),
      cert_file: field(str({ nonEmpty: true })),
      key_file: field(str({ nonEmpty: true })),
      /** How often to ask Falco for queued events when none are arriving. */
      poll_interval: field(duration({ min: 10 }), { default: 1_000 }),
      reconnect: field(reconnect, { default: { initial_backoff: 1_000, max_backoff: 60_000 } }),
    }),
  ),
  cluster_name: field(str(), { default: '' }),
  minimum_priority: field(priority, { default: 'Debug' as FalcoPriority }),
  rules: field(ruleOverrides, { default: {} }),
  /** Added to every event's output_fields; a value "%NAME" is read from env var NAME. */
  custom_fields: field(
    // `tags` is the label holding the event's tags (labels.tags), which a custom field of that name would lose to.
    refine(stringMap(), (m) =>
      'tags' in m
        ? "tags is taken by the label holding the event's tags (with custom_tags); name this custom field differently, or add the value to custom_tags"
        : undefined,
    ),
    { default: {} },
  ),
  custom_tags: field(list(str({ nonEmpty: true })), { default: [] }),
  /**
   * Output fields that identify "the same thing happening again" (also `rule`,
   * `hostname`, `source`, `priority`). Unset: per-source defaults of alerts/falco.yaml.
   */
  fingerprint_fields: field(list(str({ nonEmpty: true }), { min: 1 })),
  /** Window in which repeats of the same fingerprint fold into one alert with a count. */
  dedup_window: field(duration({ min: 0 }), { default: 60_000 }),
  /**
   * How many Falcosidekick event uuids are remembered to acknowledge retries
   * without counting them twice; kept in memory (about 100 bytes each) and in SQLite.
   */
  uuid_cache_size: field(int({ min: 0, max: 1_000_000 }), { default: 100_000 }),
});

export type FalcoConfig = NonNullable<ReturnType<typeof falcoBlockShape>>;

/** The `falco` block; at least one input must be on, or the module would do nothing. */
export const falcoBlock: Validator<FalcoConfig> = (node, path, ctx) => {
  const v = falcoBlockShape(node, path, ctx);
  if (v) {
    if (!v.http && !v.file && !v.stdin && !v.grpc) {
      reportIssue(
        ctx,
        node,
        path,
        'enable at least one input: http (Falco http_output / Falcosidekick), file (file_output), stdin: true (program_output) or grpc (Falco 0.43 and older)',
      );
    }
    const g = v.grpc;
    if (g && (g.cert_file === undefined) !== (g.key_file === undefined)) {
      const grpcNode = isMap(node) ? (node.get('grpc', true) as Node | undefined) : undefined;
      reportIssue(
        ctx,
        grpcNode ?? node,
        `${path}.grpc`,
        "set both cert_file and key_file (Falco's gRPC server requires a client certificate over TCP) or neither",
      );
    }
  }
  return v;
};
