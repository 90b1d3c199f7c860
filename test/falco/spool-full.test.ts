import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { scenarioEvent, toFalcoJson } from '../../src/peers/falco/scenario.js';
import { freePort, killAll, tempDir, until } from '../helpers/processes.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { prepareServer, ServerProc, spawnAgent } from '../tunnel/harness.js';

// Backpressure instead of loss: a real agent with a small --spool-max-bytes
// whose server cannot be reached. Falco events posted to its HTTP input fill
// the spool; from then on the input answers 503 (the sender keeps the event)
// instead of 200 for an alert the spool would drop. Once the server is
// reachable again, every event answered 200 reaches the server as an alert.

vi.setConfig({ testTimeout: 120_000 });

const SPOOL_MAX_BYTES = 40_000;

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: string;
}

async function post(port: number, body: string): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${port}/falco`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, retryAfter: res.headers.get('retry-after') ?? undefined, body: await res.text() };
}

/** Occurrences per pod in the server's store. */
function serverCounts(serverData: string): Map<string, number> {
  const db = new Database(join(serverData, 'server.db'), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const counts = new Map<string, number>();
    for (const r of db.prepare("SELECT t.labels, a.count FROM alerts a JOIN alert_text t ON t.id = a.id WHERE a.source = 'falco'").all() as {
      labels: string;
      count: number;
    }[]) {
      const pod = (JSON.parse(r.labels) as { pod?: string }).pod ?? '';
      counts.set(pod, (counts.get(pod) ?? 0) + r.count);
    }
    return counts;
  } finally {
    db.close();
  }
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** One Falcosidekick event of its own pod (its own alert). */
function event(i: number): string {
  const ev = scenarioEvent(i, new Date(), { uuid: true });
  ev.output_fields['k8s.pod.name'] = `pod-${i}`;
  ev.output_fields['ka.target.name'] = `pod-${i}`;
  return toFalcoJson(ev);
}

describe('Falco HTTP input when the agent spool is full', () => {
  let relay: TcpRelay | undefined;
  afterEach(async () => {
    await killAll();
    await relay?.close();
  });

  it('answers 503 with Retry-After while the spool is full, and every event answered 200 reaches the server once it is back', async () => {
    const dir = tempDir('verdict-falco-spool-full-');
    const falcoPort = await freePort();
    const { data, tokenFile } = prepareServer(dir, `falco:\n  http:\n    listen: 127.0.0.1:${falcoPort}\n  dedup_window: 1h\n`);
    const server = await ServerProc.start(data);
    relay = await startTcpRelay(server.grpc);
    const obs = await freePort();
    const agent = spawnAgent(server.kasAddress('grpc', relay.port), tokenFile, join(dir, 'agent'), [
      '--spool-max-bytes',
      String(SPOOL_MAX_BYTES),
      '--observability-addr',
      `127.0.0.1:${obs}`,
    ]);
    await agent.waitForLog((l) => l.msg === 'Listening for Falco events over HTTP', 30_000, 'the Falco HTTP input');

    // The server becomes unreachable: nothing the agent spools is acknowledged.
    relay.cut();
    const accepted: number[] = [];
    const refused: Answer[] = [];
    let i = 0;
    // Until the spool is full and a few events in a row were refused.
    while (refused.length < 5 && i < 3_000) {
      const a = await post(falcoPort, event(i));
      if (a.status === 200) {
        expect(JSON.parse(a.body)).toEqual({ status: 'queued' });
        expect(refused, `event ${i} answered 200 after a refusal while the spool is still full`).toHaveLength(0);
        accepted.push(i);
      } else {
        expect(a.status, a.body).toBe(503);
        refused.push(a);
      }
      i++;
    }
    expect(refused).toHaveLength(5);
    expect(accepted.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.retryAfter).toBe('10');
      expect((JSON.parse(r.body) as { error: string }).error).toMatch(
        /alert spool is full: the server has not acknowledged the alerts queued in it; check the agent's connection to the server, or raise --spool-max-bytes/,
      );
    }
    // Still refused a while later: the spool stays full while the server is away.
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await post(falcoPort, event(i++))).status).toBe(503);
    const paused = agent.logs.filter((l) => l.msg.startsWith('Alert spool is full: the Falco inputs hold new events'));
    expect(paused, 'one log line per episode, not one per refused request').toHaveLength(1);
    expect(paused[0]!.level).toBe('warn');
    expect(await metric(obs, 'verdict_agent_spool_full')).toBe(1);

    // The server is reachable again: the spool drains, the input takes events again.
    relay.restore();
    const resumed = await agent.waitForLog((l) => l.msg.startsWith('Alert spool has room again'), 60_000, 'the Falco inputs to resume');
    expect(resumed.refused_http).toBeGreaterThanOrEqual(6);
    const late = i++;
    const a = await post(falcoPort, event(late));
    expect(a.status, a.body).toBe(200);
    accepted.push(late);

    const want = new Map(accepted.map((k) => [`pod-${k}`, 1]));
    await until(
      () => {
        const got = serverCounts(data);
        return [...want.keys()].every((pod) => got.get(pod) === 1) ? true : undefined;
      },
      60_000,
      () => {
        const got = serverCounts(data);
        const missing = [...want.keys()].filter((pod) => got.get(pod) !== 1);
        return `every event answered 200 at the server as an alert (missing ${missing.length} of ${want.size}: ${missing.slice(0, 10).join(', ')})`;
      },
    );
    // Nothing refused reached the server (its sender was told to retry), nothing was counted twice.
    const got = serverCounts(data);
    for (const [pod, n] of got) expect(want.get(pod), `${pod} at the server`).toBe(n);
    expect(await metric(obs, 'verdict_agent_spool_dropped_total')).toBe(0);
    expect(agent.logs.filter((l) => l.msg.startsWith('Alert spool is full')).length).toBe(1);
  });
});
