import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, tempDir, until } from '../helpers/processes.js';
import { prepareServer, ServerProc, spawnAgent, SpoolWriter, storeCounts, type Transport } from './harness.js';

// A server replica that shuts down cleanly (SIGTERM) ends the agent's calls with UNAVAILABLE "the server is
// shutting down" and closes WebSockets with 1001 Going Away: that is a server going away, logged at info, not an
// error the operator has to look into.

afterEach(killAll);

describe.each([
  ['grpc', 'server unavailable at ADDRESS: the server is shutting down'],
  ['ws', 'the server closed the WebSocket as it shut down (1001 the server is shutting down)'],
] as [Transport, string][])('the agent over %s when the server shuts down cleanly', (transport, reason) => {
  it('logs the end of its alert stream at info, not as an error, and sends what it spooled meanwhile once the server is back', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const address = server.kasAddress(transport);
    const want = reason.replace('ADDRESS', address);
    const agent = spawnAgent(address, tokenFile, join(dir, 'agent'), ['--reconnect-initial', '200ms', '--reconnect-max', '1s']);
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
    expect(ended.reason).toBe(want);
    const config = await agent.waitForLog(
      (l) => l.msg === 'Config: the server ended the configuration stream as it shut down; reconnecting, the configuration stays',
      20_000,
      'the agent to log the end of its configuration stream',
    );
    expect([config.level, config.reason]).toEqual(['info', want]);
    // Connection refused while the server is down stays an error; the shutdown itself is not one.
    expect(agent.logs.filter((l) => l.msg.startsWith('Alert stream to the server failed') && l.error === want)).toEqual([]);
    expect(agent.logs.filter((l) => l.msg === 'Config: failed to get configuration from the server' && l.error === want)).toEqual([]);
    w.add(10);
    await server.start();
    await until(() => (storeCounts(data).events >= 20 ? true : undefined), 30_000, 'the alerts spooled while the server was down');
    w.close();
  }, 90_000);
});

describe('the agent over ws when the server is killed', () => {
  it('says the open WebSocket was cut, not that it closed before its handshake', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress('ws'), tokenFile, join(dir, 'agent'), ['--reconnect-initial', '200ms', '--reconnect-max', '1s']);
    const w = await SpoolWriter.open(join(dir, 'agent'));
    w.add(5);
    await until(() => (storeCounts(data).events >= 5 ? true : undefined), 20_000, 'the first alerts in the store');
    await server.proc.kill('SIGKILL');
    const failed = await agent.waitForLog((l) => l.msg.startsWith('Alert stream to the server failed'), 20_000, 'the agent to notice');
    expect(failed.level).toBe('error');
    expect(failed.error).toMatch(/^the WebSocket to ws:\/\/localhost:\d+\/-\/kubernetes-agent\/ was cut without a close frame: the server stopped/);
    w.close();
  }, 60_000);
});
