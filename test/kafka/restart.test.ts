// A `verdict server` replica killed with SIGKILL and started again on its data
// dir, on a real broker (scripts/kafka.sh): the brokers keep the dead
// process's group members until kafka.session_timeout, so the new process's
// consumers wait that long to join. Meanwhile it must listen: /healthz 200
// (a liveness probe must not kill it), /readyz 503 saying it is joining, and
// agents' batches acknowledged (they go to Kafka).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { brokerPerFile } from '../helpers/kafka-broker.js';
import { TestPublisher } from '../../src/server/kafka/testing.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { ConfigProject, freePort, spawnVerdict, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';

const { Kafka, logLevel } = kafkajs;
const SESSION_TIMEOUT_MS = 10_000;
const JOINED = 'Kafka: this server is a replica on the shared alert log';

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-restart-'));
const broker = brokerPerFile(dir);

/** Status and body of a GET, or undefined while nothing listens. */
async function get(url: string): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

/** A server config in its own directory, on its own topics. */
async function server(name: string) {
  const prefix = `rs${randomUUID().slice(0, 8)}`;
  const dataDir = join(dir, name);
  const http = `127.0.0.1:${await freePort()}`;
  const grpc = `127.0.0.1:${await freePort()}`;
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    `data_dir: ${dataDir}
http_addr: ${http}
grpc_addr: ${grpc}
kafka:
  brokers: [${broker().bootstrap}]
  topic_prefix: ${prefix}
  export_topic: ""
  partitions: 2
  session_timeout: ${SESSION_TIMEOUT_MS / 1000}s
`,
  );
  return { prefix, dataDir, http, grpc, config };
}

describe('a replica restarted after SIGKILL', () => {
  it('serves /healthz 200, /readyz 503 (joining) and the agent API while its consumers wait to rejoin their groups, then becomes ready', async () => {
    const { dataDir, http, grpc, config } = await server('restarted');
    const project = join(dir, 'project');
    new ConfigProject(project).commit({ 'README.md': 'agents\n' });
    const token = verdictSync(['agents', 'register', 'edge', '--config-project', project, '--data-dir', dataDir]).trim();
    const feedToken = verdictSync(['tokens', 'create', '--name', 'ops', '--scope', 'read', '--data-dir', dataDir]).trim();

    const first = spawnVerdict(['server', '--config', config], 'server-1');
    await first.waitForLog((l) => l.msg === 'Verdict server started', 60_000, 'the first server to start');
    await until(async () => (await get(`http://${http}/readyz`))?.status === 200 || undefined, 30_000, 'the first server ready');
    await first.kill('SIGKILL');

    const second: VerdictProcess = spawnVerdict(['server', '--config', config], 'server-2');
    const healthz = await until(
      () => get(`http://${http}/healthz`),
      20_000,
      () => `/healthz to answer; stderr: ${second.stderr.slice(-2000)}`,
    );
    const readyz = await until(() => get(`http://${http}/readyz`), 5_000, '/readyz to answer');
    expect(healthz).toEqual({ status: 200, body: { status: 'ok' } });
    expect(readyz.status).toBe(503);
    expect(readyz.body.status).toBe('joining');
    expect(readyz.body.reason).toMatch(
      /^this replica is joining its Kafka consumer groups, then it catches up with the alert log; .*kafka\.session_timeout, 10 s/,
    );
    // The listeners answered before the consumers joined (the order, not a speed).
    expect(second.logs.some((l) => l.msg === JOINED)).toBe(false);

    // An agent's batch is acknowledged while the consumers join: it goes to Kafka.
    const fp = `restart-${randomUUID().slice(0, 8)}`;
    const pub = new TestPublisher(grpc, token);
    try {
      await pub.send([{ id: randomUUID(), payload: falcoPayload({ fp }) }], 10_000);
    } finally {
      pub.close();
    }
    // Still joining on a quiet machine; a slow one may have joined meanwhile.
    expect(['joining', 'catching_up', undefined]).toContain((await get(`http://${http}/readyz`))?.body.status);

    await until(async () => (await get(`http://${http}/readyz`))?.status === 200 || undefined, 60_000, 'the restarted server ready');
    expect((await get(`http://${http}/readyz`))?.body).toEqual({ status: 'ready' });
    expect(second.logs.some((l) => l.msg === JOINED)).toBe(true);
    expect(second.logs.some((l) => l.msg === 'Verdict server started')).toBe(true);
    const alerts = await until(
      async () => {
        const res = await fetch(`http://${http}/api/v1/alerts?limit=100`, { headers: { authorization: `Bearer ${feedToken}` } });
        const list = ((await res.json()) as { alerts: { fingerprint: string }[] }).alerts;
        return list.some((a) => a.fingerprint === fp) ? list : undefined;
      },
      20_000,
      'the alert sent while joining in the feed',
    );
    expect(alerts.filter((a) => a.fingerprint === fp)).toHaveLength(1);
    expect(await second.kill('SIGTERM')).toBe(0);
  }, 180_000);

  it('stops at once and cleanly on SIGTERM while its consumers wait to rejoin (a rolling update during the wait)', async () => {
    const { http, config } = await server('stopped');
    const first = spawnVerdict(['server', '--config', config], 'server-1');
    await until(async () => (await get(`http://${http}/readyz`))?.status === 200 || undefined, 60_000, 'the first server ready');
    await first.kill('SIGKILL');
    const second = spawnVerdict(['server', '--config', config], 'server-2');
    await until(async () => ((await get(`http://${http}/readyz`))?.body.status === 'joining' ? true : undefined), 20_000, '/readyz to say joining');
    expect(await second.kill('SIGTERM')).toBe(0);
    // Stopped before the brokers dropped the killed process's members, so before the join finished.
    expect(second.logs.some((l) => l.msg === JOINED)).toBe(false);
    expect(second.logs.some((l) => l.msg === 'Shutting down')).toBe(true);
    expect(second.logs.filter((l) => l.msg === 'verdict server failed' || l.level === 'error' || l.level === 'fatal')).toEqual([]);
    expect(await get(`http://${http}/healthz`)).toBeUndefined();
  }, 120_000);

  it('still fails to start, with what the brokers said, when they refuse the join that runs after the listeners opened', async () => {
    const { prefix, http, config } = await server('refused');
    const first = spawnVerdict(['server', '--config', config], 'server-1');
    await until(async () => (await get(`http://${http}/readyz`))?.status === 200 || undefined, 60_000, 'the first server ready (its topics created)');
    expect(await first.kill('SIGTERM')).toBe(0);
    // A member of the delivery group with another partition assigner: the brokers refuse the server's member.
    const kafka = new Kafka({ clientId: 'foreign', brokers: [broker().bootstrap], logLevel: logLevel.NOTHING });
    const foreign = kafka.consumer({ groupId: `${prefix}.delivery`, sessionTimeout: SESSION_TIMEOUT_MS });
    try {
      const joinedGroup = new Promise<void>((resolve) => foreign.on(foreign.events.GROUP_JOIN, () => resolve()));
      await foreign.connect();
      await foreign.subscribe({ topic: `${prefix}.log` });
      await foreign.run({ eachMessage: async () => undefined });
      await joinedGroup;
      const second = spawnVerdict(['server', '--config', config], 'server-2');
      const failed = await second.waitForLog((l) => l.msg === 'verdict server failed', 60_000, 'the start to fail');
      expect(String(failed.error)).toMatch(/protocols are incompatible/);
      expect(await second.exited).toBe(1);
      expect(second.logs.some((l) => l.msg === 'Verdict server started')).toBe(false);
      // It listened while it joined; the failed start closed the listeners.
      expect(second.logs.some((l) => /^Kafka: listening; joining the consumer groups/.test(l.msg))).toBe(true);
      expect(await get(`http://${http}/healthz`)).toBeUndefined();
    } finally {
      await foreign.disconnect();
    }
  }, 180_000);
});
