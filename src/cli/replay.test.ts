import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AlertAggregator } from '../agent/alerts/aggregator.js';
import { openAgentDb } from '../agent/spool/agent-db.js';
import { Spool } from '../agent/spool/spool.js';
import { createCiliumModule } from '../modules/cilium/agent.js';
import { FlowCursor } from '../modules/cilium/flow-cursor.js';
import { parseFlowLine } from '../modules/cilium/flow-json.js';
import { flowJson, pod, reserved, world } from '../modules/cilium/policy/testing.js';
import { HubbleRelayPeer } from '../peers/hubble-relay/relay-peer.js';
import { parseAgentConfig } from '../server/config/agent-config.js';
import type { AlertPayload } from '../shared/alert/payload.js';
import { until } from '../../test/helpers/processes.js';
import { run } from './replay.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const hubble = resolve(repoRoot, '../shared/fixtures/hubble');
const examples = resolve(repoRoot, 'policies');

async function replay(...argv: string[]): Promise<{ code: number; out: string; err: string; lines: Record<string, unknown>[] }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    err += String(c);
    return true;
  });
  try {
    const code = await run(argv);
    return {
      code,
      out,
      err,
      lines: out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

afterEach(() => vi.restoreAllMocks());

const CAPTURES = ['basic-sample-400-tcp-flows.jsonl', 'basic-sample-400-l7-redirected-flows.jsonl', 'basic-sample-5-http-flows.jsonl'];

describe('verdict replay on the fixture captures', () => {
  for (const c of CAPTURES) {
    it(`${c}: no alerts (the capture has no drops)`, async () => {
      const r = await replay('--policies', examples, '--flows', join(hubble, c));
      expect(r.code).toBe(0);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/verdict replay: \d+ flows, 0 alerts; 9 policies/);
    });
  }

  it('--simulate against the example policies gives the committed result', async () => {
    const r = await replay('--simulate', '--policies', examples, '--flows', join(hubble, CAPTURES[0]!));
    expect(r.code).toBe(0);
    const expected = await readFile(resolve(repoRoot, 'src/cli/testdata/replay-simulate-400-tcp.jsonl'), 'utf8');
    expect(r.out).toBe(expected);
    // What it says, in short: ratings calling productpage is refused at productpage's
    // ingress. productpage's requests to details and reviews, which Hubble's L7 records
    // show with the proxy's view of the peer (world), are not blamed on its egress
    // policy: their connections were judged when they opened, with the real identity.
    const summary = new Map<string, number>();
    for (const l of r.lines) {
      const k = `${l.direction} ${(l.policies as { name: string }[]).map((p) => p.name).join()} ${l.verdict}`;
      summary.set(k, (summary.get(k) ?? 0) + 1);
    }
    // Only connection openings are judged (SYNs, each once, and the L7 requests): the ACKs,
    // FINs and data segments of those connections, is_reply false or not, pass with them.
    expect(Object.fromEntries(summary)).toEqual({ 'ingress productpage-ingress FORWARDED': 9 });
    expect(r.err).toContain(
      '400 flows, 9 would be denied, 297 skipped as replies or later packets of a connection (they pass with the connection), 27 skipped as the same connection opening seen again at another observation point;',
    );
    for (const other of CAPTURES.slice(1)) {
      const o = await replay('--simulate', '--policies', examples, '--flows', join(hubble, other));
      expect(o.out, other).toBe('');
    }
  });
});

describe('verdict replay --simulate on the real capture, with a policy denying productpage the world', () => {
  const noWorld = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-noworld-'));
    await writeFile(
      join(dir, 'productpage-no-world.yaml'),
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: productpage-no-world\n  namespace: bookinfo\n  annotations: {app.gitlab.com/alert: "true"}\nspec:\n  endpointSelector: {matchLabels: {app: productpage}}\n  egressDeny:\n    - toEntities: [world]\n',
    );
    return dir;
  };

  it('does not judge L7 records (the proxy sees in-cluster peers as world) against L3/L4 rules', async () => {
    const r = await replay('--simulate', '--policies', await noWorld(), '--flows', join(hubble, CAPTURES[0]!));
    // Line 39: productpage's GET to details, which Hubble's L7 record shows as identity 2 (world);
    // Cilium judged that connection at its SYN (line 33), with details' real identity.
    expect(r.lines.filter((l) => l.http !== undefined)).toEqual([]);
    expect(r.lines.filter((l) => l.reason === 'POLICY_DENY')).toEqual([]);
  });

  it('counts a connection opening once, not once per observation point', async () => {
    const r = await replay('--simulate', '--policies', await noWorld(), '--flows', join(hubble, CAPTURES[0]!));
    // Lines 33 and 34 are the same SYN: the policy verdict (REDIRECTED) and the trace to the proxy (FORWARDED).
    const lines = r.lines.map((l) => l.line);
    expect(lines).toContain(33);
    expect(lines).not.toContain(34);
    expect(r.err).toMatch(/, \d+ skipped as the same connection opening seen again at another observation point;/);
  });
});

async function capture(lines: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-'));
  const p = join(dir, 'flows.jsonl');
  await writeFile(p, `${lines.join('\n')}\n`);
  return p;
}

describe('verdict replay on drops', () => {
  const frontend = pod('shop', 'frontend');
  const payments = pod('shop', 'payments');
  const cart = pod('shop', 'cart');
  const lines = [
    JSON.stringify(flowJson({ src: frontend, dst: payments, port: 8443, reason: 133 })),
    JSON.stringify({ node_status: { state_change: 'NODE_CONNECTED', node_names: ['n1'] }, node_name: 'relay' }),
    JSON.stringify(flowJson({ src: payments, dst: world('169.254.169.254'), dir: 'egress', port: 80, reason: 181 })),
    JSON.stringify(flowJson({ src: cart, dst: payments, port: 8443, reason: 133 })),
    JSON.stringify(flowJson({ src: frontend, dst: cart, port: 8080, reason: 155 })),
    JSON.stringify(flowJson({ src: frontend, dst: cart, port: 8080, http: { method: 'DELETE', url: 'http://cart:8080/api/cart' } })),
  ];

  it('prints one JSON object per alert with the input line', async () => {
    const r = await replay('--policies', examples, '--flows', await capture(lines));
    expect(r.code).toBe(0);
    expect(r.lines.map((l) => [l.line, l.direction, l.reason, (l.policies as { name: string }[]).map((p) => p.name)])).toEqual([
      [1, 'ingress', 'POLICY_DENIED', ['payments-ingress']],
      [3, 'egress', 'POLICY_DENY', ['deny-cloud-metadata']],
      [6, 'ingress', 'POLICY_DENIED', ['cart-ingress']],
    ]);
    expect(r.lines[0]).toMatchObject({
      source: `shop/${frontend.pod}`,
      destination: `shop/${payments.pod}`,
      protocol: 'TCP',
      port: 8443,
      drop_reason: 'POLICY_DENIED',
    });
    expect(r.lines[2]).toMatchObject({ http: 'DELETE http://cart:8080/api/cart', l7: true });
    expect(r.lines[0]!.policies).toEqual([{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }]);
    // A clusterwide policy has the namespace "".
    expect(r.lines[1]!.policies).toEqual([{ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'deny-cloud-metadata' }]);
    for (const l of r.lines) expect(Object.keys(l).slice(0, 5)).toEqual(['line', 'time', 'direction', 'reason', 'policies']);
  });

  it('counts the policy drops no loaded policy explains, and those only policies that may not alert explain', async () => {
    const p = await capture([
      // Default deny of an endpoint no loaded policy selects: a policy is missing from --policies.
      JSON.stringify(flowJson({ src: frontend, dst: pod('shop', 'search'), port: 9200, reason: 133 })),
      // An explicit deny by a policy that is not loaded.
      JSON.stringify(
        flowJson({ src: payments, dst: world('1.2.3.4'), dir: 'egress', port: 443, reason: 181, deniedBy: [{ name: 'no-egress', namespace: 'shop' }] }),
      ),
      lines[0]!,
      lines[4]!, // drop reason 155: not a policy drop
    ]);
    const r = await replay('--policies', examples, '--flows', p);
    expect(r.code).toBe(0);
    expect(r.lines.map((l) => l.line)).toEqual([3]);
    expect(r.err).toContain(
      'verdict replay: 4 flows, 1 alerts; 2 policy drops no loaded policy explains (are all the policies of the cluster loaded? kubectl get cnp,ccnp,netpol -A -o yaml); 9 policies',
    );
    const other = await replay('--policies', examples, '--flows', p, '--alert-namespace', 'db');
    expect(other.err).toContain(
      '4 flows, 0 alerts; 2 policy drops no loaded policy explains (are all the policies of the cluster loaded? kubectl get cnp,ccnp,netpol -A -o yaml), 1 explained only by policies that may not alert (not annotated app.gitlab.com/alert: "true", or outside --alert-namespace); 9 policies',
    );
  });

  it('--simulate: kubelet probes from the node pass (Cilium allow-localhost), unless --no-allow-localhost', async () => {
    const probe = JSON.stringify(flowJson({ src: reserved('host', 1, '10.0.0.1'), dst: payments, port: 8443, verdict: 'FORWARDED' }));
    const p = await capture([probe]);
    expect((await replay('--simulate', '--policies', examples, '--flows', p)).lines).toEqual([]);
    const strict = await replay('--simulate', '--no-allow-localhost', '--policies', examples, '--flows', p);
    expect(strict.lines.map((l) => [l.line, l.direction, l.reason, l.verdict, (l.policies as { name: string }[]).map((x) => x.name)])).toEqual([
      [1, 'ingress', 'POLICY_DENIED', 'FORWARDED', ['payments-ingress']],
    ]);
  });

  it('--simulate judges only what opens a connection, and says how many flows it skipped', async () => {
    const syn = flowJson({ src: frontend, dst: payments, port: 8443, verdict: 'FORWARDED' });
    const later = (flags: Record<string, boolean>) => {
      const j = flowJson({ src: frontend, dst: payments, port: 8443, verdict: 'FORWARDED' }) as { flow: { l4: { TCP: Record<string, unknown> } } };
      j.flow.l4.TCP.flags = flags;
      return JSON.stringify(j);
    };
    // The answer from payments, without is_reply, as older Hubbles and some observation points report it.
    const synAck = flowJson({ src: payments, dst: frontend, port: 40000, srcPort: 8443, verdict: 'FORWARDED' }) as {
      flow: { l4: { TCP: Record<string, unknown> } };
    };
    synAck.flow.l4.TCP.flags = { SYN: true, ACK: true };
    const echoReply = flowJson({ src: payments, dst: frontend, proto: 'ICMPv4', icmpType: 0, verdict: 'FORWARDED' });
    const p = await capture([
      JSON.stringify(syn),
      JSON.stringify(synAck),
      later({ ACK: true }),
      later({ ACK: true, PSH: true }),
      later({ FIN: true, ACK: true }),
      later({ RST: true }),
      JSON.stringify(echoReply),
    ]);
    const r = await replay('--simulate', '--policies', examples, '--flows', p);
    expect(r.lines.map((l) => [l.line, l.direction, (l.policies as { name: string }[]).map((x) => x.name)])).toEqual([[1, 'ingress', ['payments-ingress']]]);
    expect(r.err).toContain('7 flows, 1 would be denied, 6 skipped as replies or later packets of a connection');
  });

  it('--simulate counts a retransmitted SYN once, and a new connection on the same ports after a FIN again', async () => {
    const f = (tcpFlags: ('SYN' | 'ACK' | 'FIN')[]) => JSON.stringify(flowJson({ src: frontend, dst: payments, port: 8443, verdict: 'FORWARDED', tcpFlags }));
    const p = await capture([f(['SYN']), f(['SYN']), f(['FIN', 'ACK']), f(['SYN'])]);
    const r = await replay('--simulate', '--policies', examples, '--flows', p);
    expect(r.lines.map((l) => l.line)).toEqual([1, 4]);
    expect(r.err).toContain(
      '4 flows, 2 would be denied, 1 skipped as replies or later packets of a connection (they pass with the connection), 1 skipped as the same connection opening seen again',
    );
  });

  it('an L7 denial names what was asked: the DNS query (and rcode), the Kafka request', async () => {
    const dns = flowJson({
      src: cart,
      dst: pod('kube-system', { 'k8s-app': 'kube-dns' }),
      dir: 'egress',
      proto: 'UDP',
      port: 53,
      dns: 'exfil.evil.example.',
      reason: 133,
    }) as { flow: Record<string, unknown> };
    Object.assign(dns.flow, { Type: 'L7', event_type: { type: 129 }, l7: { type: 'REQUEST', dns: { query: 'exfil.evil.example.', qtypes: ['A'] } } });
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-dns-'));
    await writeFile(
      join(dir, 'dns.yaml'),
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: cart-dns\n  namespace: shop\n  annotations: {app.gitlab.com/alert: "true"}\nspec:\n  endpointSelector: {matchLabels: {app: cart}}\n  egress:\n    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]\n      toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.shop.example"}]}}]\n',
    );
    const refused = { flow: { ...dns.flow, l7: { type: 'REQUEST', dns: { query: 'exfil.evil.example.', rcode: 5 } } } };
    // No rule opens the broker's port to cart: the default deny is blamed, and the request shown.
    const kafka = flowJson({ src: cart, dst: pod('shop', 'kafka'), dir: 'egress', port: 9092, reason: 133 }) as { flow: Record<string, unknown> };
    Object.assign(kafka.flow, {
      Type: 'L7',
      event_type: { type: 129 },
      l7: { type: 'REQUEST', kafka: { api_key: 'produce', api_version: 7, topic: 'orders', correlation_id: 3 } },
    });
    const r = await replay('--policies', dir, '--flows', await capture([JSON.stringify(dns), JSON.stringify(refused), JSON.stringify(kafka)]));
    expect(r.lines.map((l) => [l.line, l.reason, l.l7, l.dns ?? l.kafka])).toEqual([
      [1, 'POLICY_DENIED', true, { query: 'exfil.evil.example.', qtypes: ['A'] }],
      [2, 'POLICY_DENIED', true, { query: 'exfil.evil.example.', rcode: 5 }],
      [3, 'POLICY_DENIED', undefined, { api_key: 'produce', api_version: 7, topic: 'orders', correlation_id: 3, error_code: 0 }],
    ]);
  });

  it('--alert-namespace and --no-alert-clusterwide limit who may alert', async () => {
    const p = await capture(lines);
    const r = await replay('--policies', examples, '--flows', p, '--alert-namespace', 'db', '--no-alert-clusterwide');
    expect(r.lines).toEqual([]);
    const s = await replay('--policies', examples, '--flows', p, '--alert-namespace', 'db');
    expect(s.lines.map((l) => l.line)).toEqual([3]);
  });

  it('reads stdin with -', async () => {
    vi.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from([`${lines[0]}\n`]) as unknown as typeof process.stdin);
    const r = await replay('--policies', examples, '--flows', '-');
    expect(r.lines.map((l) => l.line)).toEqual([1]);
  });

  it('reads gzip-compressed captures, from files and stdin, by their first bytes and not their name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-gz-'));
    const text = `${lines.join('\n')}\n`;
    await writeFile(join(dir, 'capture.json.gz'), gzipSync(text));
    await writeFile(join(dir, 'capture.jsonl'), gzipSync(text));
    await writeFile(join(dir, 'plain.json.gz'), text);
    for (const f of ['capture.json.gz', 'capture.jsonl', 'plain.json.gz']) {
      const r = await replay('--policies', examples, '--flows', join(dir, f));
      expect(r.code, f).toBe(0);
      expect(
        r.lines.map((l) => l.line),
        f,
      ).toEqual([1, 3, 6]);
    }
    // Two gzip members (e.g. `cat a.gz b.gz`) are one stream.
    vi.spyOn(process, 'stdin', 'get').mockReturnValue(
      Readable.from([Buffer.concat([gzipSync(`${lines[0]}\n`), gzipSync(`${lines[2]}\n`)])]) as unknown as typeof process.stdin,
    );
    const r = await replay('--policies', examples, '--flows', '-');
    expect(r.lines.map((l) => l.line)).toEqual([1, 2]);
  });

  it('a truncated gzip capture: the flows before the damage are used, and it says what to check', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-gz-'));
    const many = Array.from({ length: 2000 }, () => lines[0]!).join('\n');
    const gz = gzipSync(many);
    const p = join(dir, 'cut.json.gz');
    await writeFile(p, gz.subarray(0, gz.length - 20));
    const r = await replay('--policies', examples, '--flows', p);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /cut\.json\.gz: the gzip data is corrupt or truncated after line \d+ \(unexpected end of file\); check the file with gzip -t; the flows before it were used/,
    );
    expect(r.lines.length).toBeGreaterThan(1000);
  });

  it('prints policy warnings with file, policy and field path: a field the API server would drop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-pol-'));
    await writeFile(
      join(dir, 'api.yaml'),
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: "80"}]\n          rules:\n            HTTP: [{method: GET}]\n',
    );
    const r = await replay('--policies', dir, '--flows', await capture([lines[0]!]));
    expect(r.code).toBe(0);
    expect(r.err).toContain(
      `verdict replay: warning: ${join(dir, 'api.yaml')}:1: CiliumNetworkPolicy/shop/api: spec.ingress[0].toPorts[0].rules.HTTP: unknown field (did you mean http?)`,
    );
  });

  it('a `cilium policy import` rule list is named as such, with how to wrap it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-pol-'));
    await writeFile(
      join(dir, 'rules.json'),
      JSON.stringify([{ endpointSelector: { matchLabels: { app: 'payments' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'frontend' } }] }] }]),
    );
    const r = await replay('--policies', examples, dir, '--flows', await capture([lines[0]!]));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(dir, 'rules.json')}:1: a Cilium rule list as \`cilium policy import\` reads it`);
    expect(r.err).toContain('kind: CiliumClusterwideNetworkPolicy, metadata: {name: <name>}, specs: <the list>');
    expect(r.err).not.toContain('fix the manifest');
  });

  it('skips lines that are not JSON, says where, and exits 1', async () => {
    const r = await replay('--policies', examples, '--flows', await capture(['{not json', lines[0]!]));
    expect(r.code).toBe(1);
    expect(r.lines.map((l) => l.line)).toEqual([2]);
    expect(r.err).toMatch(/flows\.jsonl:1: not a JSON object .*line skipped/);
  });

  it('objects that are not Hubble events are skipped lines saying so, and no flow at all says what input is expected', async () => {
    const r = await replay('--policies', examples, '--flows', await capture(['{"flow":5}', '{"foo":1}']));
    expect(r.code).toBe(1);
    expect(r.err).toContain('flows.jsonl:1: "flow" is not an object; line skipped.');
    expect(r.err).toContain('flows.jsonl:2: not a Hubble event (no "flow" field; keys: foo); line skipped.');
    expect(r.err).toContain('no flow in the input: `verdict replay` reads `hubble observe -o json` output, one {"flow": ...} object per line');
    // Relay's other events are expected in a capture, and skipped quietly.
    const ok = await replay('--policies', examples, '--flows', await capture([JSON.stringify({ lost_events: { num_events_lost: '3' } }), lines[0]!]));
    expect(ok.code).toBe(0);
    expect(ok.err).not.toContain('skipped');
  });

  it('pretty-printed JSON or an array gives one error that says to use jq -c, not one per line', async () => {
    const real = JSON.parse(readFileSync(join(hubble, CAPTURES[0]!), 'utf8').split('\n')[0]!) as unknown;
    for (const text of [JSON.stringify(real, null, 2), JSON.stringify([real], null, 2), JSON.stringify([real])]) {
      const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-pretty-'));
      const p = join(dir, 'capture.json');
      await writeFile(p, text);
      const r = await replay('--policies', examples, '--flows', p);
      expect(r.code).toBe(1);
      expect(r.err).toContain('one JSON object per line');
      expect(r.err).toContain(`jq -c`);
      expect(r.err.split('\n').filter((l) => l.includes('line skipped')).length).toBeLessThanOrEqual(1);
    }
  });

  it('a port that is not a number is a skipped line naming the field, not port 0', async () => {
    const bad = flowJson({ src: frontend, dst: payments, port: 8443, reason: 133 }) as { flow: { l4: { TCP: Record<string, unknown> } } };
    bad.flow.l4.TCP.destination_port = 'https';
    const r = await replay('--policies', examples, '--flows', await capture([JSON.stringify(bad), lines[0]!]));
    expect(r.code).toBe(1);
    expect(r.lines.map((l) => l.line)).toEqual([2]);
    expect(r.err).toContain('flows.jsonl:1: flow.l4.TCP.destination_port: "https" is not a port number; line skipped.');
  });

  it('reports an unparsable policy by name and keeps the others', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-pol-'));
    await writeFile(
      join(dir, 'bad.yaml'),
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: bad\n  namespace: shop\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: "99999"}]\n',
    );
    const r = await replay('--policies', examples, dir, '--flows', await capture([lines[0]!]));
    expect(r.code).toBe(1);
    expect(r.err).toContain('CiliumNetworkPolicy/shop/bad: spec.ingress[0].toPorts[0].ports[0].port: 99999 is not a port number');
    expect(r.lines.map((l) => l.line)).toEqual([1]);
  });
});

describe('usage', () => {
  it('--help', async () => {
    const r = await replay('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: verdict replay --policies <file\|dir>\.\.\. --flows <file\|->/);
  });

  it.each([
    [[], /--policies is required/],
    [['--policies', 'x'], /--flows is required/],
    [['--policies', 'x', '--flows', 'y', '--bogus'], /verdict replay: Unknown option '--bogus'.*see `verdict replay --help`/],
  ])('%j exits 2', async (argv, re) => {
    const r = await replay(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(re);
  });

  it('a --policies path that does not exist is a usage error saying so, not a manifest to fix', async () => {
    const r = await replay('--policies', '/nonexistent/policies', '--flows', '/dev/null', examples, '/nonexistent/more.yaml');
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      'verdict replay: --policies /nonexistent/policies, policy path /nonexistent/more.yaml: these paths do not exist; give network policy manifests (YAML or JSON files, or directories of them)\n',
    );
    // A path after --policies' own is an argument of its own, and is named so.
    const bare = await replay('--policies', examples, '/nonexistent/more.yaml', '--flows', '/dev/null');
    expect(bare.err).toBe(
      'verdict replay: policy path /nonexistent/more.yaml: this path does not exist; give network policy manifests (YAML or JSON files, or directories of them)\n',
    );
  });

  it('a flows path that is a directory says so in plain text, not as a log line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-dir-'));
    const r = await replay('--policies', examples, '--flows', dir);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`verdict replay: cannot read flows from ${dir} (a directory); pass a \`hubble observe -o json\` capture file, or - for stdin\n`);
  });

  it('an --alert-namespace that is not a namespace name is a usage error', async () => {
    const r = await replay('--policies', examples, '--flows', '/dev/null', '--alert-namespace', 'Book Info');
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      'verdict replay: --alert-namespace "Book Info" is not a namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)\n',
    );
  });

  it('an --alert-namespace no loaded policy is in is named, with the namespaces that have policies', async () => {
    const r = await replay('--policies', join(examples, 'bookinfo'), '--flows', '/dev/null', '--alert-namespace', 'bookinf');
    expect(r.code).toBe(0);
    expect(r.err).toContain(
      'verdict replay: warning: --alert-namespace bookinf: no loaded policy is in this namespace, so none alerts for it (namespaces with policies: bookinfo)',
    );
  });

  it('a missing flows file says what to pass', async () => {
    const r = await replay('--policies', examples, '--flows', '/nonexistent/flows.jsonl');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read flows from \/nonexistent\/flows\.jsonl \(no such file\); pass a `hubble observe -o json` capture, or - for stdin/);
  });
});

/** The fields of a captured flow (hubble observe -o json) that say whether it opens a connection. */
interface CapturedFlow {
  Type?: string;
  l4?: { TCP?: { flags?: { SYN?: boolean; ACK?: boolean } } };
  l7?: { type?: string };
}

describe('verdict replay and the agent name who talked alike', () => {
  // The real capture's connection openings (SYNs and L7 requests), dropped: the capture
  // has no drops. Among them ratings calling productpage through the node's address,
  // where Hubble knows the sender's identity labels but not its pod.
  const now = Date.now();
  const dropped = readFileSync(join(hubble, CAPTURES[0]!), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { flow: CapturedFlow; time: string })
    .filter(({ flow: f }) => (f.l4?.TCP?.flags?.SYN && !f.l4.TCP.flags.ACK) || f.l7?.type === 'REQUEST')
    .map((o, i) => {
      const time = new Date(now - 60_000 + i).toISOString();
      const l7 = o.flow.Type === 'L7';
      return JSON.stringify({
        ...o,
        time,
        flow: { ...o.flow, time, verdict: 'DROPPED', ...(l7 ? {} : { drop_reason_desc: 'POLICY_DENIED', event_type: { type: 1, sub_type: 133 } }) },
      });
    });

  it('gives the alert titles of the agent, which name a pod-less sender by its namespace and app', async () => {
    const bookinfo = join(examples, 'bookinfo');
    const peer = new HubbleRelayPeer();
    const addr = await peer.listen('127.0.0.1:0');
    const db = openAgentDb(':memory:');
    const log = pino({ level: 'silent' });
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const alerts = new AlertAggregator(db, outbox, { log });
    const flows = dropped.map((l) => parseFlowLine(l)!);
    const saved = new FlowCursor(db, addr);
    saved.advance({ ...flows[0]!, time: { seconds: Math.floor((now - 61_000) / 1000), nanos: 0 } });
    saved.persist();
    peer.push(flows);
    const block = parseAgentConfig(
      `cilium:\n  hubble_relay_address: ${addr}\n  cluster_name: kind\n  dedup_window: 1m\n  kubernetes_policies: 'off'\n`,
      'config.yaml',
    ).value.cilium!;
    const abort = new AbortController();
    const run = createCiliumModule({ policyPaths: [bookinfo] }).run(block, { log, db, alerts, dataDir: tmpdir(), agentName: 'edge', files: [] }, abort.signal);
    let r: Awaited<ReturnType<typeof replay>>;
    try {
      r = await replay('--policies', bookinfo, '--flows', await capture(dropped));
      // Until the agent has stored (with its cursor) the last flow.
      const last = now - 60_000 + flows.length - 1;
      const at = () => (db.prepare('SELECT seconds * 1000 + nanos / 1000000 AS ms FROM hubble_cursor').get() as { ms: number } | undefined)?.ms ?? 0;
      await until(
        () => at() >= last || undefined,
        20_000,
        () => `the agent's cursor at the last flow (${last}; at ${at()})`,
      );
    } finally {
      abort.abort();
      await run;
      await peer.close();
    }
    alerts.flush(true);
    const agent = outbox.read(0, 100).map((row) => JSON.parse(row.payload.toString()) as AlertPayload);
    db.close();

    const titles = (list: { title: string; count: number }[]) => Object.fromEntries(list.map((a) => [a.title, a.count]));
    const fromReplay = new Map<string, number>();
    for (const l of r.lines) {
      const t = `${l.direction === 'ingress' ? 'Ingress' : 'Egress'} not allowed: ${l.source} -> ${l.destination}:${l.port}/${l.protocol}`;
      fromReplay.set(t, (fromReplay.get(t) ?? 0) + 1);
    }
    expect(titles(agent)).toEqual(Object.fromEntries(fromReplay));
    expect(titles(agent)).toMatchObject({ 'Ingress not allowed: bookinfo/app=ratings -> bookinfo/productpage-v1-6b746f74dc-9rcxx:9080/TCP': 9 });
  }, 30_000);
});
