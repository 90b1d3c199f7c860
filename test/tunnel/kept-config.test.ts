import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
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

function startAgent(server: ServerProc, dir: string, obsPort: number, kasAddress = server.kasAddress('grpc')): VerdictProcess {
  return spawnVerdict(
    [
      'agent',
      '--kas-address',
      kasAddress,
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
  return { dir, data, falcoPort, obsPort, server, falcoAlerts };
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
    expect(warned.error).toBe('it is stored in format 99, this agent reads format 2 (it was kept by another release)');
    await newer.waitForLog((l) => l.msg === 'Verdict agent started');
    expect((await readyz(obsPort)).status).toBe(503);
  }, 120_000);

  it("is tied to the server and the token it was served for: another agent's token or another --kas-address does not run it", async () => {
    const { dir, falcoPort, obsPort, server } = await setUp();
    const ignored = 'Config: the configuration kept in the data directory cannot be used; ignoring it, no module runs until the server serves a configuration';
    // The data directory reused by another agent: another token.
    const token = join(dir, 'token');
    const own = readFileSync(token, 'utf8');
    writeFileSync(token, 'vdt_agent_another_agents_token\n');
    const other = startAgent(server, dir, obsPort);
    const said = await other.waitForLog((l) => l.msg === ignored, 20_000, 'the kept configuration ignored for another token');
    expect(said.error).toBe(
      "it was served for another agent token (the data directory was another agent's, or the token was rotated: the first configuration served for the new token is kept in its place)",
    );
    await other.waitForLog((l) => l.msg === 'Verdict agent started');
    expect(await readyz(obsPort)).toEqual({ status: 503, body: { status: 'waiting for configuration' } });
    expect(await postEvent(falcoPort, 1)).toBe(0);
    await other.kill('SIGTERM');

    // The same token, another server.
    writeFileSync(token, own);
    const elsewhere = `grpc://127.0.0.1:${await freePort()}`;
    const moved = startAgent(server, dir, obsPort, elsewhere);
    const movedSaid = await moved.waitForLog((l) => l.msg === ignored, 20_000, 'the kept configuration ignored for another server');
    expect(movedSaid.error).toBe(
      `it was served by ${server.kasAddress('grpc')}, this agent connects to ${elsewhere} (--kas-address changed, or the data directory was another agent's)`,
    );
    expect(await postEvent(falcoPort, 2)).toBe(0);
    await moved.kill('SIGTERM');

    // Back to its own token and server: the kept configuration runs again.
    const again = startAgent(server, dir, obsPort);
    await again.waitForLog((l) => l.msg === 'Config: running the kept configuration (the last one the server served) until the server serves one');
    expect(await until(async () => ((await postEvent(falcoPort, 3)) === 200 ? true : undefined), 10_000, 'the Falco input to accept an event')).toBe(true);
  }, 120_000);

  it('says how old the kept configuration is, warns past 7 days, and is not ready once the server refuses its token', async () => {
    const { dir, data, falcoPort, obsPort, server } = await setUp();
    const tenDaysAgo = new Date(Date.now() - 10 * 24 * 3600_000).toISOString();
    const db = new Database(join(dir, 'agent', 'agent.db'));
    db.prepare('UPDATE kept_config SET kept_at = ?').run(tenDaysAgo);
    db.close();
    // The agent's token revoked meanwhile (a Secret left with the old token after a rotation).
    const id = verdictSync(['agents', 'tokens', 'list', 'edge', '--data-dir', data]).split('\t')[0]!;
    verdictSync(['agents', 'tokens', 'revoke', 'edge', id, '--data-dir', data]);

    const agent = startAgent(server, dir, obsPort);
    const running = await agent.waitForLog(
      (l) => l.msg === 'Config: running the kept configuration (the last one the server served) until the server serves one',
    );
    expect(running.kept_at).toBe(tenDaysAgo);
    expect(Number(running.age_s)).toBeGreaterThanOrEqual(10 * 24 * 3600);
    const stale = await agent.waitForLog((l) => l.msg.startsWith('Config: the kept configuration is more than 7 days old'));
    expect(stale).toMatchObject({ level: 'warn', age_days: 10 });
    expect(await until(async () => ((await postEvent(falcoPort, 1)) === 200 ? true : undefined), 10_000, 'the Falco input to accept an event')).toBe(true);
    expect((await readyz(obsPort)).status).toBe(200);

    await server.start();
    const refusedLine = await agent.waitForLog(
      (l) => l.msg === 'Config: failed to get configuration from the server',
      20_000,
      'the server to refuse the token',
    );
    const refused = await until(
      async () => {
        const r = await readyz(obsPort);
        return r.status === 503 ? r : undefined;
      },
      10_000,
      '/readyz to say the token is refused',
    );
    expect(refused.body.status).toBe('token refused');
    expect(String(refused.body.reason)).toMatch(
      /^the server refuses the agent token \(Unauthenticated: .+\): no configuration can be served and spooled alerts cannot be sent until the token in --token-file is one the server accepts; the modules keep running, spooling alerts$/,
    );
    // The inputs keep accepting (and spooling) events.
    expect(await postEvent(falcoPort, 2)).toBe(200);
    // And it stays so across the stream's reconnects, which the server keeps refusing.
    await agent.waitForLog((l) => l.msg === 'Config: failed to get configuration from the server' && l !== refusedLine, 20_000, 'another refusal');
    expect((await readyz(obsPort)).status).toBe(503);
  }, 120_000);

  it('stays ready, saying the token is refused, when an agent running on a served configuration has its token refused', async () => {
    const { dir, data, falcoPort, obsPort, server } = await setUp();
    await server.start();
    const agent = startAgent(server, dir, obsPort);
    await until(
      async () => {
        const r = await readyz(obsPort);
        return r.status === 200 && r.body.configuration === undefined ? r : undefined;
      },
      20_000,
      'the served configuration',
    );
    const id = verdictSync(['agents', 'tokens', 'list', 'edge', '--data-dir', data]).split('\t')[0]!;
    verdictSync(['agents', 'tokens', 'revoke', 'edge', id, '--data-dir', data]);
    // The restarted server refuses the token when the agent reconnects.
    await server.proc.kill('SIGTERM');
    await server.start();
    await agent.waitForLog((l) => l.msg === 'Config: failed to get configuration from the server', 20_000, 'the server to refuse the token');
    const r = await until(
      async () => {
        const x = await readyz(obsPort);
        return x.body.token_refused ? x : undefined;
      },
      10_000,
      '/readyz to say the token is refused',
    );
    // Taken out of the Service in front of Falco's HTTP input, its node's events would be lost instead of spooled.
    expect(r).toMatchObject({ status: 200, body: { status: 'ready', token_refused: true } });
    expect(await postEvent(falcoPort, 1)).toBe(200);
  }, 120_000);
});
