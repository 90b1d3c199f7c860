import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flowJson, pod, reserved, world } from '../modules/cilium/policy/testing.js';
import { run } from './replay.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const hubble = resolve(repoRoot, '../shared/fixtures/hubble');
const examples = resolve(repoRoot, 'policies');

async function replay(...argv: string[]): Promise<{ code: number; out: string; err: string; lines: Record<string, unknown>[] }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((out += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((err += String(c)), true));
  try {
    const code = await run(argv);
    return { code, out, err, lines: out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>) };
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
    // ingress, and productpage reaching details/reviews through addresses Hubble
    // reports as world is refused at its egress.
    const summary = new Map<string, number>();
    for (const l of r.lines) {
      const k = `${l.direction} ${(l.policies as { name: string }[]).map((p) => p.name).join()} ${l.verdict}`;
      summary.set(k, (summary.get(k) ?? 0) + 1);
    }
    expect(Object.fromEntries(summary)).toEqual({ 'ingress productpage-ingress FORWARDED': 32, 'egress productpage-egress FORWARDED': 14 });
    for (const other of CAPTURES.slice(1)) {
      const o = await replay('--simulate', '--policies', examples, '--flows', join(hubble, other));
      expect(o.out, other).toBe('');
    }
  });
});

describe('verdict replay on drops', () => {
  async function capture(lines: string[]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-'));
    const p = join(dir, 'flows.jsonl');
    await writeFile(p, `${lines.join('\n')}\n`);
    return p;
  }
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
    expect(r.lines[0]).toMatchObject({ source: `shop/${frontend.pod}`, destination: `shop/${payments.pod}`, protocol: 'TCP', port: 8443, drop_reason: 'POLICY_DENIED' });
    expect(r.lines[2]).toMatchObject({ http: 'DELETE http://cart:8080/api/cart', l7: true });
    expect(r.lines[0]!.policies).toEqual([{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }]);
    // A clusterwide policy has the namespace "".
    expect(r.lines[1]!.policies).toEqual([{ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'deny-cloud-metadata' }]);
    for (const l of r.lines) expect(Object.keys(l).slice(0, 5)).toEqual(['line', 'time', 'direction', 'reason', 'policies']);
  });

  it('--simulate: kubelet probes from the node pass (Cilium allow-localhost), unless --no-allow-localhost', async () => {
    const probe = JSON.stringify(flowJson({ src: reserved('host', 1, '10.0.0.1'), dst: payments, port: 8443, verdict: 'FORWARDED' }));
    const p = await capture([probe]);
    expect((await replay('--simulate', '--policies', examples, '--flows', p)).lines).toEqual([]);
    const strict = await replay('--simulate', '--no-allow-localhost', '--policies', examples, '--flows', p);
    expect(strict.lines.map((l) => [l.line, l.direction, l.reason, l.verdict, (l.policies as { name: string }[]).map((x) => x.name)])).toEqual([[1, 'ingress', 'POLICY_DENIED', 'FORWARDED', ['payments-ingress']]]);
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

  it('skips lines that are not JSON, says where, and exits 1', async () => {
    const r = await replay('--policies', examples, '--flows', await capture(['{not json', lines[0]!]));
    expect(r.code).toBe(1);
    expect(r.lines.map((l) => l.line)).toEqual([2]);
    expect(r.err).toMatch(/flows\.jsonl:1: not a JSON object .*line skipped/);
  });

  it('reports an unparsable policy by name and keeps the others', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-replay-pol-'));
    await writeFile(join(dir, 'bad.yaml'), 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: bad\n  namespace: shop\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: "99999"}]\n');
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

  it('a missing flows file says what to pass', async () => {
    const r = await replay('--policies', examples, '--flows', '/nonexistent/flows.jsonl');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read flows from \/nonexistent\/flows\.jsonl \(no such file\); pass a `hubble observe -o json` capture, or - for stdin/);
  });
});
