import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ProjectPoller } from '../../src/server/config/project-poller.js';
import { parseYamlConfig } from '../../src/shared/config/schema.js';
import { SERVER_DEFAULTS, serverConfigSchema } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { AGENT_DEFAULT_BACKOFF } from '../../src/shared/retry/backoff.js';
import { ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, type LogLine } from '../helpers/processes.js';
import { spawnAgent } from './harness.js';

// The defaults operators of the original expect, and that they can be changed:
// configuration polled every 20 s; reconnects backed off from 10 s to 5 min
// with full jitter.

const silent = createRootLogger({ level: 'silent' });

describe('configuration poll interval', () => {
  it('defaults to 20 s and is configurable', () => {
    expect(SERVER_DEFAULTS.config_poll_interval).toBe(20_000);
    expect(parseYamlConfig('data_dir: /tmp/x\n', 'server.yaml', serverConfigSchema).value.config_poll_interval).toBe(20_000);
    expect(parseYamlConfig('config_poll_interval: 2s\n', 'server.yaml', serverConfigSchema).value.config_poll_interval).toBe(2000);
  });

  it('drives how soon a new commit is noticed', async () => {
    const project = new ConfigProject(join(tempDir(), 'project'));
    project.commit({ 'a.yaml': 'a: 1\n' });
    const quick = new ProjectPoller(project.dir, 100, silent);
    const slow = new ProjectPoller(project.dir, 20_000, silent);
    await quick.current();
    await slow.current();
    const seen = { quick: '', slow: '' };
    quick.on('commit', (c) => (seen.quick = c));
    slow.on('commit', (c) => (seen.slow = c));
    const releases = [quick.acquire(), slow.acquire()];
    const second = project.commit({ 'a.yaml': 'a: 2\n' });
    // Well inside the slow one's 20 s: had it polled, it would have seen the commit too.
    await until(() => seen.quick === second || undefined, 10_000, 'the 100 ms poller to see the new commit');
    for (const r of releases) r();
    expect(seen).toEqual({ quick: second, slow: '' });
  });
});

describe('agent reconnect backoff', () => {
  afterAll(killAll);

  it('is 10 s to 5 min with full jitter by default', () => {
    expect(AGENT_DEFAULT_BACKOFF).toMatchObject({ initialMs: 10_000, maxMs: 300_000, factor: 2, jitter: true });
  });

  /** retry_in_ms of the agent's first n failures against an address where nothing listens. */
  async function retries(configured: boolean, n: number): Promise<number[]> {
    const dir = tempDir();
    writeFileSync(join(dir, 'token'), 'vdt_agent_x');
    const kas = `grpc://127.0.0.1:${await freePort()}`;
    const agent = configured
      ? spawnAgent(kas, join(dir, 'token'), join(dir, 'agent')) // --reconnect-initial 100ms --reconnect-max 500ms
      : spawnVerdict(
          ['agent', '--kas-address', kas, '--token-file', join(dir, 'token'), '--data-dir', join(dir, 'agent'), '--observability-addr', ''],
          'agent',
        );
    const failed = (l: LogLine) => l.msg.startsWith('Alert stream to the server failed');
    await until(() => agent.logs.filter(failed).length >= n || undefined, 20_000, `${n} failed connection attempts`);
    await agent.kill('SIGKILL');
    return agent.logs.filter(failed).map((l) => l.retry_in_ms as number);
  }

  it('starts between 1 s and 10 s, jittered, when no bounds are given', async () => {
    const [d] = await retries(false, 1);
    expect(d).toBeGreaterThanOrEqual(1000);
    expect(d).toBeLessThan(10_000); // full jitter: a random part of the 10 s, never all of it
  });

  it('follows --reconnect-initial and --reconnect-max', async () => {
    const delays = await retries(true, 6);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(10);
      expect(d).toBeLessThanOrEqual(500);
    }
    expect(new Set(delays).size).toBeGreaterThan(1); // jittered
  });
});
