import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAYMENTS_INGRESS } from '../helpers/policies.js';
import { ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';

// The walking skeleton end to end, each part a real process on loopback:
// Hubble Relay peer -> agent -> gRPC tunnel -> server -> SQLite -> feed API.

function config(relay: string, extra = ''): string {
  return `cilium:
  hubble_relay_address: ${relay}
  cluster_name: test
  policies:
    - glob: "policies/*.yaml"
  dedup_window: 100ms
  reconnect:
    initial_backoff: 100ms
    max_backoff: 1s
${extra}`;
}

let n = 0;
function flowLine(o: {
  src: string;
  dst: string;
  srcNs?: string;
  dstNs?: string;
  port: number;
  verdict: 'DROPPED' | 'FORWARDED';
  reason?: string;
  type?: number;
}): string {
  n++;
  const ep = (app: string, ns: string) => ({
    identity: 1000 + app.length,
    namespace: ns,
    pod_name: `${app}-${n}`,
    labels: [`k8s:app=${app}`, `k8s:io.kubernetes.pod.namespace=${ns}`],
  });
  return JSON.stringify({
    flow: {
      time: new Date().toISOString(),
      uuid: `e2e-${n}`,
      verdict: o.verdict,
      IP: { source: `10.0.0.${n % 250}`, destination: '10.0.1.13', ipVersion: 'IPv4' },
      l4: { TCP: { source_port: 40000 + n, destination_port: o.port, flags: { SYN: true } } },
      source: ep(o.src, o.srcNs ?? 'shop'),
      destination: ep(o.dst, o.dstNs ?? 'shop'),
      Type: 'L3_L4',
      node_name: 'kind-worker',
      traffic_direction: 'INGRESS',
      event_type: { type: o.type ?? (o.verdict === 'DROPPED' ? 1 : 4), sub_type: o.reason === 'POLICY_DENIED' ? 133 : 0 },
      ...(o.reason ? { drop_reason_desc: o.reason } : {}),
    },
    node_name: 'kind-worker',
    time: new Date().toISOString(),
  });
}

describe('alert pipeline (relay peer, agent, server as processes)', () => {
  const dir = tempDir();
  const project = new ConfigProject(join(dir, 'project'));
  let relay: VerdictProcess;
  let server: VerdictProcess;
  let agent: VerdictProcess;
  let feed = '';
  let feedToken = '';
  let grpcAddr = '';
  let agentObs = '';

  const alerts = async () => {
    const res = await fetch(`${feed}/api/v1/alerts`, { headers: { authorization: `Bearer ${feedToken}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { alerts: Record<string, unknown>[] }).alerts;
  };

  beforeAll(async () => {
    relay = spawnVerdict(['peer', 'hubble-relay', '--listen', '127.0.0.1:0', '--stdin'], 'relay');
    const relayAddr = (await relay.waitForStdout(/listening=(\S+)/))[1]!;
    project.commit({ '.gitlab/agents/edge/config.yaml': config(relayAddr), 'policies/payments.yaml': PAYMENTS_INGRESS }, 'initial');

    const serverData = join(dir, 'server');
    const token = verdictSync(['agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', serverData]).trim();
    expect(token).toMatch(/^vdt_agent_[\w-]{40,}$/);
    feedToken = verdictSync(['tokens', 'create', '--name', 'test', '--data-dir', serverData]).trim();
    writeFileSync(join(dir, 'token'), token);

    const [http, grpc] = [await freePort(), await freePort()];
    server = spawnVerdict(
      ['server', '--data-dir', serverData, '--http-addr', `127.0.0.1:${http}`, '--grpc-addr', `127.0.0.1:${grpc}`, '--config-poll-interval', '200ms'],
      'server',
    );
    await server.waitForLog((l) => l.msg === 'Verdict server started');
    feed = `http://127.0.0.1:${http}`;
    grpcAddr = `127.0.0.1:${grpc}`;

    agentObs = `http://127.0.0.1:${await freePort()}`;
    agent = spawnVerdict(
      [
        'agent',
        '--kas-address',
        `grpc://127.0.0.1:${grpc}`,
        '--token-file',
        join(dir, 'token'),
        '--data-dir',
        join(dir, 'agent'),
        '--observability-addr',
        agentObs.slice('http://'.length),
        '--reconnect-initial',
        '100ms',
        '--reconnect-max',
        '1s',
      ],
      'agent',
    );
    await agent.waitForLog((l) => l.msg === 'Connected to Hubble Relay');
  });

  afterAll(killAll);

  it('lists its commands in verdict --help, and the agent takes the flags of the original', () => {
    const help = verdictSync(['--help']);
    for (const cmd of ['demo', 'server', 'agent', 'agents']) expect(help).toMatch(new RegExp(`^  ${cmd} +\\S`, 'm'));
    const agentHelp = verdictSync(['agent', '--help']);
    for (const flag of ['--kas-address', '--token-file', '--data-dir']) expect(agentHelp).toContain(`  ${flag} `);
  });

  it('answers /healthz, /readyz and /metrics on both processes, and refuses the feed without a token', async () => {
    for (const base of [feed, agentObs]) {
      expect((await fetch(`${base}/healthz`)).status, `${base}/healthz`).toBe(200);
      expect((await fetch(`${base}/readyz`)).status, `${base}/readyz`).toBe(200); // the agent: once it has its configuration
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await metrics.text()).toMatch(/^# HELP /m);
    }
    expect(await (await fetch(`${agentObs}/metrics`)).text()).toMatch(/^verdict_agent_hubble_flows_total /m);
    expect(await (await fetch(`${feed}/metrics`)).text()).toMatch(/^verdict_server_agent_streams\{rpc="[^"]+"\} 1$/m);
    const res = await fetch(`${feed}/api/v1/alerts`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { message: string }).message).toMatch(/verdict tokens create/);
  });

  it('turns a drop explained by a labelled policy into an alert, and nothing else', async () => {
    relay.proc.stdin!.write(`${flowLine({ src: 'cart', dst: 'payments', port: 8443, verdict: 'FORWARDED' })}\n`);
    relay.proc.stdin!.write(`${flowLine({ src: 'frontend', dst: 'cart', port: 8080, verdict: 'DROPPED', reason: 'POLICY_DENIED' })}\n`);
    relay.proc.stdin!.write(`${flowLine({ src: 'frontend', dst: 'payments', port: 8443, verdict: 'DROPPED', reason: 'POLICY_DENIED' })}\n`);
    const list = await until(
      async () => {
        const a = await alerts();
        return a.length ? a : undefined;
      },
      15_000,
      'an alert in the feed',
    );
    // Let anything else that would wrongly alert arrive too.
    await new Promise((r) => setTimeout(r, 500));
    const all = await alerts();
    expect(all).toHaveLength(1);
    expect(list[0]).toMatchObject({
      source: 'cilium',
      severity: 'medium',
      namespace: 'shop',
      count: 1,
      policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }],
    });
    expect(String(list[0]!.title)).toContain('payments');
    expect(list[0]!.id).toBeTypeOf('number');
    expect(list[0]!.first_seen).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(list[0]!.last_seen).toMatch(/^\d{4}-\d\d-\d\dT/);
    // Stored in SQLite, in WAL mode (a property of the database file).
    const db = new Database(join(dir, 'server', 'server.db'), { readonly: true, fileMustExist: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
    }
  });

  it('refuses an agent with a bad token with Unauthenticated', async () => {
    writeFileSync(join(dir, 'bad-token'), 'vdt_agent_not-a-real-token');
    const bad = spawnVerdict(
      [
        'agent',
        '--kas-address',
        `grpc://${grpcAddr}`,
        '--token-file',
        join(dir, 'bad-token'),
        '--data-dir',
        join(dir, 'bad-agent'),
        '--observability-addr',
        '',
        '--reconnect-initial',
        '5s',
        '--reconnect-max',
        '5s',
      ],
      'bad-agent',
    );
    const line = await bad.waitForLog((l) => typeof l.error === 'string' && l.error.startsWith('Unauthenticated'));
    expect(line.error).toMatch(/unknown or revoked/);
    await bad.kill();
  });

  it('reports a malformed config.yaml and keeps the last good configuration running', async () => {
    const relayAddr = /listening=(\S+)/.exec(relay.stdout)![1]!;
    // YAML that does not parse: the error names the file and the line.
    project.commit({ '.gitlab/agents/edge/config.yaml': `${config(relayAddr)}  alert_namespaces: [db\n` }, 'unparsable');
    const yamlErr = await agent.waitForLog((l) => l.msg.includes('keeping the last good configuration'), 15_000, 'YAML error on the agent');
    expect(String(yamlErr.error)).toMatch(/\.gitlab\/agents\/edge\/config\.yaml:\d+: .*invalid YAML/);
    // A value that does not validate: the error names the file, the line and the path in the document.
    const commit = project.commit({ '.gitlab/agents/edge/config.yaml': config(relayAddr).replace('dedup_window: 100ms', 'dedup_window: soon') }, 'broken');
    const err = await agent.waitForLog(
      (l) => l.msg.includes('keeping the last good configuration') && String(l.error).includes('dedup_window'),
      15_000,
      'config error on the agent',
    );
    expect(String(err.error)).toContain('.gitlab/agents/edge/config.yaml:6: cilium.dedup_window: must be a duration');
    await server.waitForLog((l) => l.msg.startsWith('Config: invalid configuration') && l.commit_id === commit);
    // The Cilium module still runs on the previous configuration.
    relay.proc.stdin!.write(`${flowLine({ src: 'checkout', dst: 'payments', port: 8443, verdict: 'DROPPED', reason: 'POLICY_DENIED' })}\n`);
    await until(async () => ((await alerts()).length === 2 ? true : undefined), 15_000, 'a second alert');
  });

  it('delivers a new commit of the configuration project to the running agent', async () => {
    const relayAddr = /listening=(\S+)/.exec(relay.stdout)![1]!;
    const commit = project.commit({ '.gitlab/agents/edge/config.yaml': config(relayAddr, '  alert_namespaces: [db]\n') }, 'only db alerts');
    await server.waitForLog((l) => l.msg === 'Config: new commit' && l.commit_id === commit);
    await agent.waitForLog((l) => l.msg === 'Config: applying new configuration' && l.commit_id === commit, 15_000, 'new config on the agent');
    await agent.waitForLog((l) => l.msg === 'Restarting module: its configuration changed' && l.mod_name === 'cilium');
    await agent.waitForLog((l) => l.msg === 'Connected to Hubble Relay' && agent.logs.indexOf(l) > agent.logs.findIndex((x) => x.commit_id === commit));
    // Alerts from shop's policies are no longer this agent's to raise.
    relay.proc.stdin!.write(`${flowLine({ src: 'intruder', dst: 'payments', port: 8443, verdict: 'DROPPED', reason: 'POLICY_DENIED' })}\n`);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await alerts()).toHaveLength(2);
  });
});
