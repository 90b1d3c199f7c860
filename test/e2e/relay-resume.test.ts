import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Verdict } from '../../src/gen/flow/flow.js';
import { HubbleRelayPeer } from '../../src/peers/hubble-relay/relay-peer.js';
import { ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, verdictSync, type LogLine, type VerdictProcess } from '../helpers/processes.js';
import { PAYMENTS_INGRESS, paymentsDrop } from '../helpers/policies.js';

// What the agent asks Hubble Relay for, and how it resumes. Server and agent are
// real processes; the Relay peer runs in the test so it can show the requests it
// got and drop its streams like a restarting Relay. The policy comes from a local
// directory (agent flag --policies), not from the configuration project.

// Small bounds in config.yaml: with the defaults (10 s -> 5 min) no retry here would be this short.
const INITIAL_MS = 150;
const MAX_MS = 400;

function config(relay: string): string {
  return `cilium:
  hubble_relay_address: ${relay}
  cluster_name: test
  dedup_window: 50ms
  reconnect:
    initial_backoff: ${INITIAL_MS}ms
    max_backoff: ${MAX_MS}ms
`;
}

let n = 0;
const sent: ReturnType<typeof drop>[] = [];
/** A dropped flow into payments from its own source pod, so each one is its own alert. */
function drop(at: Date) {
  n++;
  return paymentsDrop(n, { at, uuid: `resume-${n}` });
}

describe('agent and Hubble Relay: whitelist, resume with since, backoff bounds', () => {
  const dir = tempDir('verdict-resume-');
  const project = new ConfigProject(join(dir, 'project'));
  let relay = new HubbleRelayPeer();
  let relayAddr = '';
  let server: VerdictProcess;
  let agent: VerdictProcess;
  let feed = '';
  let feedToken = '';
  let grpcAddr = '';
  const base = Date.now() - 60_000;

  const startAgent = () =>
    spawnVerdict(
      [
        'agent',
        '--kas-address',
        `grpc://${grpcAddr}`,
        '--token-file',
        join(dir, 'token'),
        '--data-dir',
        join(dir, 'agent'),
        '--policies',
        join(dir, 'policies'),
        '--observability-addr',
        '',
        '--reconnect-initial',
        '100ms',
        '--reconnect-max',
        '1s',
      ],
      'agent',
    );
  const alerts = async () => {
    const res = await fetch(`${feed}/api/v1/alerts?limit=100`, { headers: { authorization: `Bearer ${feedToken}` } });
    return ((await res.json()) as { alerts: { title: string; count: number }[] }).alerts;
  };
  const alertFor = async (pod: string) => (await alerts()).find((a) => a.title.includes(`shop/${pod} ->`));

  beforeAll(async () => {
    relayAddr = await relay.listen('127.0.0.1:0');
    project.commit({ '.gitlab/agents/edge/config.yaml': config(relayAddr) });
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'payments.yaml'), PAYMENTS_INGRESS);
    const serverData = join(dir, 'server');
    writeFileSync(join(dir, 'token'), verdictSync(['agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', serverData]).trim());
    feedToken = verdictSync(['tokens', 'create', '--name', 'test', '--data-dir', serverData]).trim();
    const [http, grpc] = [await freePort(), await freePort()];
    server = spawnVerdict(['server', '--data-dir', serverData, '--http-addr', `127.0.0.1:${http}`, '--grpc-addr', `127.0.0.1:${grpc}`], 'server');
    await server.waitForLog((l) => l.msg === 'Verdict server started');
    grpcAddr = `127.0.0.1:${grpc}`;
    feed = `http://127.0.0.1:${http}`;
    agent = startAgent();
    await until(() => relay.followerCount === 1 || undefined, 20_000, 'the agent following the relay');
  });

  afterAll(async () => {
    await killAll();
    await relay.close();
  });

  it('follows only dropped flows of event types drop (1), policy verdict (5) and L7 (129)', () => {
    const req = relay.requests[0]!;
    expect(req.follow).toBe(true);
    expect(req.since).toBeUndefined(); // a new agent starts with new flows
    expect(req.blacklist).toEqual([]);
    expect(req.whitelist).toHaveLength(1);
    expect(req.whitelist[0]!.verdict).toEqual([Verdict.DROPPED]);
    expect(req.whitelist[0]!.event_type.map((e) => [e.type, e.match_sub_type])).toEqual([
      [1, false],
      [5, false],
      [129, false],
    ]);
  });

  it('resumes after a disconnect with since = the last flow time and drops the repeated boundary flow', async () => {
    const a = drop(new Date(base + 1000));
    const b = drop(new Date(base + 2000)); // the boundary: Relay sends it again for since = its time
    sent.push(a, b);
    relay.push([a, b]);
    await until(async () => ((await alertFor('frontend-2'))?.count === 1 ? true : undefined), 15_000, 'alerts for both flows');

    relay.disconnectAll();
    const failed = await agent.waitForLog((l) => l.msg.startsWith('Hubble Relay stream failed'), 10_000, 'the relay disconnect on the agent');
    expect(failed.retry_in_ms).toBeLessThanOrEqual(MAX_MS);
    await until(() => (relay.requests.length === 2 && relay.followerCount === 1) || undefined, 10_000, 'the agent resuming');
    expect(relay.requests[1]!.since).toEqual(b.time);
    expect(relay.requests[1]!.whitelist).toEqual(relay.requests[0]!.whitelist);

    const c = drop(new Date(base + 3000));
    sent.push(c);
    relay.push([c]);
    await until(async () => ((await alertFor('frontend-3')) ? true : undefined), 15_000, 'the alert after the resume');
    await new Promise((r) => setTimeout(r, 300)); // room for a wrongly counted repeat to arrive
    const list = await alerts();
    expect(list).toHaveLength(3);
    expect(list.map((x) => x.count)).toEqual([1, 1, 1]);
  });

  it('backs off within the configured bounds while the relay is down, then resumes where it was', async () => {
    const before = agent.logs.length;
    await relay.close();
    const failures = () => agent.logs.slice(before).filter((l) => l.msg.startsWith('Hubble Relay stream failed'));
    await until(() => failures().length >= 4 || undefined, 15_000, 'four failed reconnects');
    const delays = failures().map((l: LogLine) => l.retry_in_ms as number);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(INITIAL_MS / 10);
      expect(d).toBeLessThanOrEqual(MAX_MS);
    }

    // Relay comes back on the same address, its ring still holding the flows sent before.
    relay = new HubbleRelayPeer();
    await relay.listen(relayAddr);
    relay.push(sent);
    await until(() => relay.followerCount === 1 || undefined, 10_000, 'the agent back on the restarted relay');
    expect(relay.requests[0]!.since).toEqual({ seconds: Math.floor((base + 3000) / 1000), nanos: ((base + 3000) % 1000) * 1e6 });
    const d = drop(new Date(base + 4000));
    sent.push(d);
    relay.push([d]);
    await until(async () => ((await alertFor('frontend-4')) ? true : undefined), 15_000, 'the alert after the relay restart');
    await new Promise((r) => setTimeout(r, 300));
    expect((await alerts()).map((x) => x.count)).toEqual([1, 1, 1, 1]);
  });

  it('resumes from its saved position after the agent itself restarts', async () => {
    await agent.kill('SIGTERM');
    relay.push([drop(new Date(base + 5000))]); // seen while the agent was down
    agent = startAgent();
    await until(() => (relay.requests.length === 2 && relay.followerCount === 1) || undefined, 20_000, 'the restarted agent following the relay');
    expect(relay.requests[1]!.since).toEqual({ seconds: Math.floor((base + 4000) / 1000), nanos: ((base + 4000) % 1000) * 1e6 });
    await until(async () => ((await alertFor('frontend-5')) ? true : undefined), 15_000, 'the alert for the flow seen while the agent was down');
    await new Promise((r) => setTimeout(r, 300));
    expect((await alerts()).map((x) => x.count)).toEqual([1, 1, 1, 1, 1]);
  });
});
