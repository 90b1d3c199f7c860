import { createReadStream, existsSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { L7FlowType, Verdict, type Flow } from '../gen/flow/flow.js';
import { ConnectionOpenings, isReplyOrLaterPacket } from '../modules/cilium/policy/connection.js';
import { PolicyEngine } from '../modules/cilium/policy/engine.js';
import { dropReasonOf, REASON_POLICY_DENIED, REASON_POLICY_DENY } from '../modules/cilium/policy/matcher.js';
import { loadPolicyFiles, policyWarningMessages } from '../modules/cilium/policy/parse.js';
import type { Attribution } from '../modules/cilium/policy/attribution.js';
import { dropReasonName, parseFlowLine, timestampToJson } from '../modules/cilium/flow-json.js';
import { l7Details } from '../modules/cilium/l7-details.js';
import { endpointName } from '../modules/cilium/endpoint-name.js';
import { namespaceNameProblem } from '../modules/cilium/namespace-name.js';
import { parseFlags, usageError } from './args.js';
import { isVerdictError } from '../shared/errors.js';

// `verdict replay`: the agent's policy matching, offline, over a capture of
// `hubble observe -o json`. One JSON object per alert on stdout; problems on
// stderr, each with what to do about it.

const HELP = `Usage: verdict replay --policies <file|dir>... --flows <file|-> [flags]

Matches captured Hubble flows against network policies, as the agent does, and
prints one JSON object per alert: {line, time, direction, reason, policies, ...}.

  --policies <path>       policy manifests: YAML/JSON files or directories
                          (repeatable; more paths may follow as arguments)
  --flows <file|->        \`hubble observe -o json\` output, one object per line,
                          plain or gzip-compressed (e.g. capture.json.gz);
                          - reads stdin
  --simulate              judge every flow that may open a connection (dropped
                          or not) as if the policies were enforced; print those
                          they would deny, with every responsible policy under
                          "responsible". Replies and later packets of a
                          connection (SYN+ACK, ACK, FIN, RST, echo replies, L7
                          responses) are skipped and counted, and so is a
                          connection opening seen again (another observation
                          point, a retransmit); L7 requests are judged against
                          L7 rules only
  --alert-namespace <ns>  only policies in these namespaces raise alerts
                          (repeatable; default: every namespace)
  --no-alert-clusterwide  clusterwide policies raise no alerts
  --no-allow-localhost    with --simulate: judge traffic from the node's own
                          host like any other (for clusters run with Cilium's
                          allow-localhost=policy; by default it passes unless a
                          deny rule matches, as Cilium lets it through)
  --default-namespace <ns> namespace of policies whose manifest has none
                          (default: default)
  -h, --help              this text

Only policies annotated app.gitlab.com/alert: "true" raise alerts. The summary
on stderr also counts policy drops no loaded policy explains (a policy of the
cluster is missing from --policies) and those only policies that may not alert
explain; neither raises an alert, in replay or in the agent.
Exit status: 0 done; 1 some input was skipped (see stderr); 2 usage error.
`;

const MAX_LINE_ERRORS = 10;

function describe(flow: Flow): { protocol: string; port: number } {
  const p = flow.l4?.protocol;
  if (!p) return { protocol: '', port: 0 };
  if (p.$case === 'ICMPv4' || p.$case === 'ICMPv6') return { protocol: p.$case, port: p.value.type };
  return { protocol: p.$case, port: p.value.destination_port };
}

function record(line: number, flow: Flow, a: Attribution, simulate: boolean): Record<string, unknown> {
  const { protocol, port } = describe(flow);
  const o: Record<string, unknown> = {
    line,
    time: flow.time ? timestampToJson(flow.time) : '',
    direction: a.direction,
    reason: a.reason,
    policies: a.policies,
  };
  if (simulate) {
    o.responsible = a.responsible ?? a.policies;
    o.verdict = Verdict[flow.verdict] ?? String(flow.verdict);
  } else {
    o.drop_reason = dropReasonName(flow.drop_reason_desc || flow.drop_reason);
  }
  o.source = endpointName(flow.source, flow.IP?.source ?? '', flow.source_names);
  o.destination = endpointName(flow.destination, flow.IP?.destination ?? '', flow.destination_names);
  o.protocol = protocol;
  o[protocol.startsWith('ICMP') ? 'icmp_type' : 'port'] = port;
  const l7 = l7Details(flow);
  if (l7.http) o.http = `${l7.http.method} ${l7.http.url}`;
  if (l7.dns) o.dns = l7.dns;
  if (l7.kafka) o.kafka = l7.kafka;
  if (a.l7) o.l7 = true;
  return o;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * The input, gunzipped when its first bytes are gzip's magic number: captures
 * are often kept compressed, and stdin has no file name to go by.
 */
async function decompressed(raw: Readable): Promise<{ stream: Readable; gzip: boolean }> {
  const chunks = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const toBuf = (c: Buffer | string) => (typeof c === 'string' ? Buffer.from(c) : c);
  let head = Buffer.alloc(0);
  let done = false;
  while (head.length < GZIP_MAGIC.length && !done) {
    const n = await chunks.next();
    if (n.done) done = true;
    else head = Buffer.concat([head, toBuf(n.value)]);
  }
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (let n = await chunks.next(); !n.done; n = await chunks.next()) yield toBuf(n.value);
  }
  const plain = Readable.from(all(), { objectMode: false });
  if (head[0] !== GZIP_MAGIC[0] || head[1] !== GZIP_MAGIC[1]) return { stream: plain, gzip: false };
  const gunzip = createGunzip();
  plain.on('error', (e) => gunzip.destroy(e));
  return { stream: plain.pipe(gunzip), gzip: true };
}

/** Whether Cilium says a policy dropped the flow: POLICY_DENIED, POLICY_DENY, a policy named as denying it, or a refused L7 request. */
function isPolicyDrop(flow: Flow): boolean {
  if (flow.verdict !== Verdict.DROPPED) return false;
  const code = dropReasonOf(flow);
  if (code === REASON_POLICY_DENIED || code === REASON_POLICY_DENY) return true;
  if (flow.ingress_denied_by.length > 0 || flow.egress_denied_by.length > 0) return true;
  return code === 0 && flow.l7?.record !== undefined && flow.l7.type !== L7FlowType.RESPONSE;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // opening it says what is wrong
  }
}

function errnoText(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

async function write(text: string): Promise<void> {
  if (!process.stdout.write(text)) await new Promise<void>((resolve) => process.stdout.once('drain', () => resolve()));
}

export async function run(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(
      'replay',
      argv,
      {
        policies: { type: 'string', multiple: true },
        flows: { type: 'string' },
        simulate: { type: 'boolean' },
        'alert-namespace': { type: 'string', multiple: true },
        'no-alert-clusterwide': { type: 'boolean' },
        'no-allow-localhost': { type: 'boolean' },
        'default-namespace': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      true,
    );
    if (flags.values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (!flags.values.policies?.length)
      throw usageError('verdict replay: --policies is required (a file or directory of network policy manifests); see `verdict replay --help`');
    if (!flags.values.flows)
      throw usageError('verdict replay: --flows is required (a `hubble observe -o json` capture, or - for stdin); see `verdict replay --help`');
    for (const ns of flags.values['alert-namespace'] ?? []) {
      const why = namespaceNameProblem(ns);
      if (why) throw usageError(`verdict replay: --alert-namespace ${why}`);
    }
    // A path that is not there is a mistyped argument, not a manifest to fix.
    // Named as given: `--policies a b` makes b an argument of its own, which the user may not know.
    const absent = (paths: string[]) => paths.filter((p) => !existsSync(p));
    const [flagged, bare] = [absent(flags.values.policies), absent(flags.positionals)];
    const missing = [...(flagged.length ? [`--policies ${flagged.join(', ')}`] : []), ...(bare.length ? [`policy path ${bare.join(', ')}`] : [])];
    if (missing.length > 0)
      throw usageError(
        `verdict replay: ${missing.join(', ')}: ${flagged.length + bare.length > 1 ? 'these paths do' : 'this path does'} not exist; give network policy manifests (YAML or JSON files, or directories of them)`,
      );
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_USAGE')) {
      process.stderr.write(`${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const v = flags.values;
  const simulate = v.simulate === true;
  let problems = 0;

  const loaded = await loadPolicyFiles([...v.policies!, ...flags.positionals], v['default-namespace'] ? { defaultNamespace: v['default-namespace'] } : {});
  for (const e of loaded.errors) process.stderr.write(`verdict replay: ${e.message}\n`);
  for (const s of loaded.skipped) process.stderr.write(`verdict replay: ${s.source}: skipped ${s.kind}${s.name ? ` ${s.name}` : ''}: ${s.note}\n`);
  for (const w of policyWarningMessages(loaded.policies)) process.stderr.write(`verdict replay: warning: ${w}\n`);
  problems += loaded.errors.length;
  if (loaded.policies.length === 0) process.stderr.write('verdict replay: no network policy loaded; nothing can match (check the --policies paths)\n');
  else if (!loaded.policies.some((p) => p.alert) && !simulate) {
    process.stderr.write(
      'verdict replay: no loaded policy is annotated app.gitlab.com/alert: "true", so none can raise alerts; use --simulate to see what they deny\n',
    );
  }
  const withPolicies = [...new Set(loaded.policies.map((p) => p.namespace).filter((ns) => ns !== ''))].sort();
  for (const ns of v['alert-namespace'] ?? []) {
    if (loaded.policies.length > 0 && !withPolicies.includes(ns))
      process.stderr.write(
        `verdict replay: warning: --alert-namespace ${ns}: no loaded policy is in this namespace, so none alerts for it (namespaces with policies: ${withPolicies.join(', ') || 'none, only clusterwide policies'})\n`,
      );
  }
  const engine = new PolicyEngine(loaded.policies, {
    ...(v['alert-namespace'] ? { alertNamespaces: v['alert-namespace'] } : {}),
    alertClusterwide: v['no-alert-clusterwide'] !== true,
    allowLocalhost: v['no-allow-localhost'] !== true,
  });

  let raw: Readable;
  if (v.flows === '-') raw = process.stdin;
  else if (isDirectory(v.flows!)) {
    process.stderr.write(`verdict replay: cannot read flows from ${v.flows} (a directory); pass a \`hubble observe -o json\` capture file, or - for stdin\n`);
    return 1;
  } else {
    const input = createReadStream(v.flows!);
    raw = input;
    const opened = await new Promise<Error | null>((resolve) => {
      input.once('open', () => resolve(null));
      input.once('error', (e) => resolve(e));
    });
    if (opened) {
      const code = (opened as NodeJS.ErrnoException).code;
      process.stderr.write(
        `verdict replay: cannot read flows from ${v.flows} (${code === 'ENOENT' ? 'no such file' : (code ?? opened.message)}); pass a \`hubble observe -o json\` capture, or - for stdin\n`,
      );
      return 1;
    }
  }

  const from = v.flows === '-' ? 'stdin' : v.flows!;
  let input: Awaited<ReturnType<typeof decompressed>>;
  try {
    input = await decompressed(raw);
  } catch (e) {
    // The first read failed (a device or special file, an I/O error): nothing was read.
    process.stderr.write(`verdict replay: cannot read flows from ${from} (${errnoText(e)}); pass a \`hubble observe -o json\` capture file, or - for stdin\n`);
    return 1;
  }
  let lineNo = 0;
  let flows = 0;
  let out = 0;
  let replies = 0;
  let again = 0;
  let unexplained = 0;
  let mayNotAlert = 0;
  let explainer: PolicyEngine | undefined;
  /** Lines that were a flow or another Hubble event. */
  let objects = 0;
  let pretty = false;
  const openings = new ConnectionOpenings();
  let badLines = 0;
  let buffer = '';
  const rl = createInterface({ input: input.stream, crlfDelay: Infinity });
  try {
    for await (const line of rl) {
      lineNo++;
      const first = objects === 0 && badLines === 0;
      let flow: Flow | null;
      try {
        flow = parseFlowLine(line);
        if (flow !== null || line.trim() !== '') objects++;
      } catch (e) {
        badLines++;
        const t = line.trim();
        // Pretty-printed JSON fails on every line, an array on its one: one error that says what to do.
        if (first && (t === '{' || t.startsWith('['))) {
          pretty = true;
          process.stderr.write(
            `verdict replay: ${from}: ${t === '{' ? 'pretty-printed JSON' : 'a JSON array'}, but replay reads one JSON object per line, as \`hubble observe -o json\` prints it; convert it with \`jq -c ${t === '{' ? '.' : "'.[]'"} ${v.flows === '-' ? '' : `${from} `}> capture.jsonl\`\n`,
          );
        }
        if (!pretty && badLines <= MAX_LINE_ERRORS) {
          const why = e instanceof SyntaxError ? `not a JSON object (${e.message})` : (e as Error).message;
          process.stderr.write(`verdict replay: ${from}:${lineNo}: ${why}; line skipped. Expected one \`hubble observe -o json\` object per line.\n`);
        }
        continue;
      }
      if (flow === null) continue;
      flows++;
      if (simulate && isReplyOrLaterPacket(flow)) {
        replies++;
        openings.ended(flow);
        continue;
      }
      if (simulate && !openings.first(flow)) {
        again++;
        continue;
      }
      const a = simulate ? engine.simulate(flow) : engine.attribute(flow);
      if (!simulate && a === null && isPolicyDrop(flow)) {
        // Cilium dropped it for a policy; which one, the loaded ones do not say (one is
        // missing), or only ones that may not alert. The agent drops these quietly too.
        explainer ??= new PolicyEngine(
          engine.list().map((p) => ({ ...p, alert: true })),
          { alertClusterwide: true },
        );
        if (explainer.attribute(flow) === null) unexplained++;
        else mayNotAlert++;
      }
      if (a === null || (!simulate && a.policies.length === 0)) continue;
      out++;
      buffer += `${JSON.stringify(record(lineNo, flow, a, simulate))}\n`;
      if (buffer.length > 65536) {
        await write(buffer);
        buffer = '';
      }
    }
  } catch (e) {
    // A stream that fails midway (corrupt gzip, a read error): say how far it was read.
    const what = input.gzip
      ? `the gzip data is corrupt or truncated after line ${lineNo} (${(e as Error).message}); check the file with gzip -t`
      : `reading failed after line ${lineNo} (${(e as Error).message})`;
    process.stderr.write(`verdict replay: ${from}: ${what}; the flows before it were used\n`);
    problems++;
  }
  if (buffer) await write(buffer);
  if (pretty) process.stderr.write(`verdict replay: ${badLines} ${badLines === 1 ? 'line' : 'lines'} skipped\n`);
  else if (badLines > MAX_LINE_ERRORS) process.stderr.write(`verdict replay: ${badLines - MAX_LINE_ERRORS} more lines could not be read and were skipped\n`);
  if (flows === 0 && badLines > 0 && !pretty)
    process.stderr.write('verdict replay: no flow in the input: `verdict replay` reads `hubble observe -o json` output, one {"flow": ...} object per line\n');
  problems += badLines;
  const skipped = simulate
    ? `, ${replies} skipped as replies or later packets of a connection (they pass with the connection), ${again} skipped as the same connection opening seen again at another observation point`
    : '';
  const quiet = [
    ...(unexplained > 0
      ? [
          `${unexplained} policy ${unexplained === 1 ? 'drop' : 'drops'} no loaded policy explains (are all the policies of the cluster loaded? kubectl get cnp,ccnp,netpol -A -o yaml)`,
        ]
      : []),
    ...(mayNotAlert > 0
      ? [`${mayNotAlert} explained only by policies that may not alert (not annotated app.gitlab.com/alert: "true", or outside --alert-namespace)`]
      : []),
  ];
  process.stderr.write(
    `verdict replay: ${flows} flows, ${out} ${simulate ? 'would be denied' : 'alerts'}${skipped}${quiet.length > 0 ? `; ${quiet.join(', ')}` : ''}; ${engine.size} policies\n`,
  );
  return problems > 0 ? 1 : 0;
}
