import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scenarioEvent, toFalcoJson } from '../../src/peers/falco/scenario.js';
import { freePort, killAll, spawnVerdict, tempDir, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';
import { prepareServer, ServerProc } from './harness.js';

// An agent (re)started while the server is unreachable (a node reboot, a
// rollout during an outage) runs the configuration the server last served,
// kept in its data directory: Falco's HTTP output, which never retries, finds
// the input open, and what it accepts reaches the feed once the server is back.
// A kept configuration the agent cannot read is ignored, saying so.

function startAgent(server: ServerProc, dir: string, obsPort: number): VerdictProcess {
  return spawnVerdict(
    [
      'agent',
      '--kas-address',
      server.kasAddress('grpc'),
      '--token-file',
      join(dir, 'token'),
      '--data-dir',
      join(dir, 'agent'),
      '--observability-addr',
      `127.0.0.1:${obsPort}`,
      '--reconnect-initial',
      '100ms',
      '--reconnect-max',
      '500ms',
    ],
    'agent',
  );
}

/** The status the agent's Falco HTTP input answers a POST of one event with; 0 when nothing answers (connection refused). */
async function postEvent(falcoPort: number, i: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${falcoPort}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: toFalcoJson(scenarioEvent(i)),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function readyz(obsPort: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${obsPort}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function setUp() {
  const dir = tempDir('verdict-kept-config-');
  const falcoPort = await freePort();
  const obsPort = await freePort();
  const { data } = prepareServer(dir, `falco:\n  http:\n    listen: 127.0.0.1:${falcoPort}\n  dedup_window: 0s\n`);
  const feedToken = verdictSync(['tokens', 'create', '--name', 'test', '--data-dir', data]).trim();
  const server = await ServerProc.start(data);
  // The first run gets the configuration from the server, and keeps it.
  const first = startAgent(server, dir, obsPort);
  await first.waitForLog((l) => l.msg === 'Listening for Falco events over HTTP', 20_000, 'the Falco input of the first run');
  expect(await postEvent(falcoPort, 0)).toBe(200);
  await first.kill('SIGTERM');
  await server.proc.kill('SIGTERM');
  const falcoAlerts = async () => {
    const res = await fetch(`http://127.0.0.1:${server.http}/api/v1/alerts`, { headers: { authorization: `Bearer ${feedToken}` } });
    return ((await res.json()) as { alerts: { source: string; id: string }[] }).alerts.filter((a) => a.source === 'falco');
  };
  return { dir, falcoPort, obsPort, server, falcoAlerts };
}

describe('an agent started while the server is unreachable', () => {
  afterAll(killAll);

  it('runs the configuration kept from the last one served: the Falco input accepts events, which reach the feed once the server is back', async () => {
    const { dir, falcoPort, obsPort, server, falcoAlerts } = await setUp();

    const agent = startAgent(server, dir, obsPort);
    const said = await agent.waitForLog(
      (l) => l.msg === 'Config: running the kept configuration (the last one the server served) until the server serves one',
      20_000,
      'the agent to run its kept configuration',
    );
    expect(said).toMatchObject({ level: 'warn', mod_name: 'config', agent_name: 'edge' });
    expect(String(said.commit_id)).toMatch(/^[0-9a-f]{40}$/);
    // Events Falco posts now are accepted (and spooled), not refused.
    expect(await until(async () => ((await postEvent(falcoPort, 1)) === 200 ? true : undefined), 10_000, 'the Falco input to accept an event')).toBe(true);
    const ready = await readyz(obsPort);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', configuration: 'kept', commit_id: said.commit_id });
    // The server is still down: the agent has not reached it.
    expect(agent.logs.some((l) => l.msg === 'Config: applying new configuration')).toBe(false);

    const before = agent.logs.filter((l) => l.msg === 'Starting module' && l.mod_name === 'falco').length;
    await server.start();
    await agent.waitForLog(
      (l) => l.msg === 'Config: the server served a configuration; it replaces the kept one (modules whose block is unchanged keep running)',
      20_000,
      'the served configuration to replace the kept one',
    );
    // Both events (the first run's and the one accepted while the server was down) are in the feed.
    const alerts = await until(
      async () => {
        const a = await falcoAlerts();
        return a.length >= 2 ? a : undefined;
      },
      20_000,
      'the Falco events in the feed',
    );
    expect(alerts).toHaveLength(2);
    // The same block: the Falco input was not restarted when the server served it.
    expect(agent.logs.filter((l) => l.msg === 'Starting module' && l.mod_name === 'falco').length).toBe(before);
    expect((await readyz(obsPort)).body).toEqual({ status: 'ready' });
  }, 90_000);

  it('ignores a kept configuration it cannot read, saying why, and waits for the server', async () => {
    const { dir, falcoPort, obsPort, server, falcoAlerts } = await setUp();
    const db = new Database(join(dir, 'agent', 'agent.db'));
    db.prepare('UPDATE kept_config SET document = \'{"config": {"falco"\'').run();
    db.close();

    const agent = startAgent(server, dir, obsPort);
    const said = await agent.waitForLog(
      (l) =>
        l.msg === 'Config: the configuration kept in the data directory cannot be used; ignoring it, no module runs until the server serves a configuration',
      20_000,
      'the warning about the damaged kept configuration',
    );
    expect(said).toMatchObject({ level: 'warn', mod_name: 'config' });
    expect(String(said.error)).toMatch(/^it is not valid JSON \(.*\); agent\.db was damaged or edited$/);
    await agent.waitForLog((l) => l.msg === 'Verdict agent started');
    expect(await readyz(obsPort)).toEqual({ status: 503, body: { status: 'waiting for configuration' } });
    expect(await postEvent(falcoPort, 1)).toBe(0);

    // The server serves the configuration, which is kept again.
    await server.start();
    await agent.waitForLog((l) => l.msg === 'Listening for Falco events over HTTP', 20_000, 'the Falco input');
    expect(await postEvent(falcoPort, 2)).toBe(200);
    await until(async () => ((await falcoAlerts()).length >= 2 ? true : undefined), 20_000, 'the Falco events in the feed');
    await agent.kill('SIGTERM');
    await server.proc.kill('SIGTERM');
    const again = startAgent(server, dir, obsPort);
    await again.waitForLog((l) => l.msg === 'Config: running the kept configuration (the last one the server served) until the server serves one');
    expect(await until(async () => ((await postEvent(falcoPort, 3)) === 200 ? true : undefined), 10_000, 'the Falco input to accept an event')).toBe(true);

    // A kept configuration in a format this release does not know (a newer one's) is ignored too.
    await again.kill('SIGTERM');
    const db2 = new Database(join(dir, 'agent', 'agent.db'));
    db2.prepare('UPDATE kept_config SET format = 99').run();
    db2.close();
    const newer = startAgent(server, dir, obsPort);
    const warned = await newer.waitForLog((l) => l.msg.startsWith('Config: the configuration kept in the data directory cannot be used'));
    expect(warned.error).toBe('it is stored in format 99, this agent reads format 1 (it was kept by another release)');
    await newer.waitForLog((l) => l.msg === 'Verdict agent started');
    expect((await readyz(obsPort)).status).toBe(503);
  }, 120_000);
});
