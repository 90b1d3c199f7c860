import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { killAll, tempDir, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';
import { startTcpRelay } from '../helpers/tcp-relay.js';
import { AGENT, prepareServer, ServerProc, spawnAgent, SpoolWriter, storeCounts, type Transport } from './harness.js';

// Delivery under faults, with real processes: alerts keep arriving in the
// agent's spool while the server is killed, the agent is killed, connections
// are cut and the token is revoked; at the end every alert is in the store
// exactly once (each event id once, and the alerts' counts add up to the
// number produced, so no event was counted twice).

// Each step below has its own deadline with a message that says what did not
// happen; the test's timeout must not cut them short on a loaded machine.
vi.setConfig({ testTimeout: 150_000 });

const TOTAL = 6000;
const CHUNK = 300;
const EVERY_MS = 100;

/** Writes TOTAL alerts in chunks, like a steady source, while the test does its damage. */
async function produce(w: SpoolWriter): Promise<void> {
  while (w.ids.length < TOTAL) {
    w.add(Math.min(CHUNK, TOTAL - w.ids.length));
    await new Promise((r) => setTimeout(r, EVERY_MS));
  }
}

async function midStream(serverData: string, w: SpoolWriter): Promise<void> {
  await until(
    () => {
      const n = storeCounts(serverData).events;
      return n > 0 && w.ids.length < TOTAL ? true : undefined;
    },
    20_000,
    'the first alerts in the store while more are being produced',
  );
}

async function expectExactlyOnce(serverData: string, w: SpoolWriter): Promise<void> {
  await until(() => (storeCounts(serverData).events >= TOTAL ? true : undefined), 60_000, `all ${TOTAL} alerts in the store`);
  await until(() => (w.spooled() === 0 ? true : undefined), 20_000, 'the agent to empty its spool after the acknowledgements');
  const c = storeCounts(serverData);
  expect(w.ids.length).toBe(TOTAL);
  expect(w.ids.filter((id) => !c.ids.has(id))).toEqual([]);
  expect(c.events).toBe(TOTAL);
  expect(c.total).toBe(TOTAL);
}

const failed = (agent: VerdictProcess) => agent.logs.filter((l) => l.msg.startsWith('Alert stream to the server failed')).length;

describe.each(['grpc', 'ws'] as Transport[])('no alert lost or doubled over %s', (transport) => {
  afterEach(killAll);

  it('when the server is killed (-9) mid-stream and restarted', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress(transport), tokenFile, join(dir, 'agent'));
    const w = await SpoolWriter.open(join(dir, 'agent'));
    const producing = produce(w);
    await midStream(data, w);
    await server.proc.kill('SIGKILL');
    await agent.waitForLog((l) => l.msg.startsWith('Alert stream to the server failed'), 10_000, 'the agent to notice');
    await new Promise((r) => setTimeout(r, 700)); // alerts keep arriving while the server is down
    expect(w.spooled()).toBeGreaterThan(0);
    await server.start();
    await producing;
    await expectExactlyOnce(data, w);
    w.close();
  });

  it('when the agent is killed (-9) mid-stream and restarted', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agentDir = join(dir, 'agent');
    const agent = spawnAgent(server.kasAddress(transport), tokenFile, agentDir);
    const w = await SpoolWriter.open(agentDir);
    const producing = produce(w);
    await midStream(data, w);
    await agent.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    const again = spawnAgent(server.kasAddress(transport), tokenFile, agentDir);
    await again.waitForLog((l) => l.msg === 'Verdict agent started');
    await producing;
    await expectExactlyOnce(data, w);
    w.close();
  });

  it('when its connections are cut', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const proxy = await startTcpRelay(transport === 'grpc' ? server.grpc : server.http);
    const agent = spawnAgent(server.kasAddress(transport, proxy.port), tokenFile, join(dir, 'agent'));
    const w = await SpoolWriter.open(join(dir, 'agent'));
    const producing = produce(w);
    await midStream(data, w);
    for (let i = 0; i < 3; i++) {
      await until(() => (proxy.open > 0 ? true : undefined), 10_000, 'the agent to reconnect');
      const before = failed(agent);
      proxy.reset();
      await until(() => (failed(agent) > before ? true : undefined), 10_000, 'the agent to notice the cut');
      await new Promise((r) => setTimeout(r, 400));
    }
    await producing;
    await expectExactlyOnce(data, w);
    w.close();
    await proxy.close();
  });

  it('when its token is revoked while streaming, until it gets a new one', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress(transport), tokenFile, join(dir, 'agent'));
    const w = await SpoolWriter.open(join(dir, 'agent'));
    const producing = produce(w);
    await midStream(data, w);

    const tokens = JSON.parse(verdictSync(['agents', 'tokens', 'list', AGENT, '--json', '--data-dir', data])) as { id: number }[];
    expect(verdictSync(['agents', 'tokens', 'revoke', AGENT, String(tokens[0]!.id), '--data-dir', data])).toMatch(/^revoked token/);
    // The running server notices the CLI's revocation and closes the open streams...
    await server.proc.waitForLog((l) => l.msg === 'Agent token revoked: closed its open streams', 5000, 'the server to drop the streams');
    // ...and the agent's next calls fail with Unauthenticated, logged as the original did.
    const line = await agent.waitForLog((l) => typeof l.error === 'string' && l.error.startsWith('Unauthenticated:'), 10_000, 'Unauthenticated on the agent');
    expect(line.error).toMatch(/revoked/);
    const storedAtRevocation = storeCounts(data).events;
    await new Promise((r) => setTimeout(r, 1000));
    expect(storeCounts(data).events).toBe(storedAtRevocation); // nothing gets in with a revoked token

    // Rotation without a restart: the agent re-reads --token-file when it reconnects.
    const fresh = verdictSync(['agents', 'tokens', 'create', AGENT, '--token-name', 'rotated', '--data-dir', data]).trim();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(tokenFile, fresh);
    await agent.waitForLog((l) => l.msg === 'The agent token in --token-file changed; using the new one', 10_000);
    await producing;
    await expectExactlyOnce(data, w);
    w.close();
  });
});
