import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, tempDir, until } from '../helpers/processes.js';
import { prepareServer, ServerProc, spawnAgent, SpoolWriter, storeCounts } from './harness.js';

// A server replica that shuts down cleanly (SIGTERM) cuts the agent's streams at the end of its grace
// period, which the agent sees as CANCELLED "Call cancelled": that is a server going away, logged at
// info, not an error the operator has to look into.

afterEach(killAll);

describe('the agent when the server shuts down cleanly', () => {
  it('logs the end of its alert stream at info, not as an error, and sends what it spooled meanwhile once the server is back', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress('grpc'), tokenFile, join(dir, 'agent'), ['--reconnect-initial', '200ms', '--reconnect-max', '1s']);
    const w = await SpoolWriter.open(join(dir, 'agent'));
    w.add(10);
    await until(() => (storeCounts(data).events >= 10 ? true : undefined), 20_000, 'the first alerts in the store');
    expect(await server.proc.kill('SIGTERM')).toBe(0);
    const ended = await agent.waitForLog(
      (l) => l.msg === 'The server ended the alert stream as it shut down; reconnecting, alerts stay in the spool',
      20_000,
      'the agent to log the end of its alert stream',
    );
    expect(ended.level).toBe('info');
    expect(ended.reason).toBe('Call cancelled');
    // Connection refused while the server is down stays an error; the shutdown itself is not one.
    expect(agent.logs.filter((l) => l.msg.startsWith('Alert stream to the server failed') && l.error === 'Call cancelled')).toEqual([]);
    w.add(10);
    await server.start();
    await until(() => (storeCounts(data).events >= 20 ? true : undefined), 30_000, 'the alerts spooled while the server was down');
    w.close();
  }, 90_000);
});
