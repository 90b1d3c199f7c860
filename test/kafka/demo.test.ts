// `verdict demo --kafka <bootstrap>` on a real broker (scripts/kafka.sh): the demo's
// alerts go through the alert log, the export topic carries them for SIEMs, and a
// second demo with the same --kafka and another --data-dir joins as a second replica
// with an agent of its own (demo-2): its printed Falco input and config.yaml are its own.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { brokerPerFile } from '../helpers/kafka-broker.js';
import { freePort, spawnVerdict, until, type VerdictProcess } from '../helpers/processes.js';

const { Kafka, logLevel } = kafkajs;

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-demo-'));
const broker = brokerPerFile(dir);

interface Demo {
  proc: VerdictProcess;
  http: string;
  token: string;
}

async function demo(name: string): Promise<Demo> {
  const dataDir = join(dir, name);
  const http = `127.0.0.1:${await freePort()}`;
  const proc = spawnVerdict(['demo', '--kafka', broker().bootstrap, '--data-dir', dataDir, '--http-addr', http, '--interval', '200'], name);
  await proc.waitForStdout(/Verdict demo is running/, 90_000);
  return { proc, http, token: readFileSync(join(dataDir, 'feed-token'), 'utf8').trim() };
}

async function alerts(d: Demo, query = ''): Promise<{ title: string; agent: string }[]> {
  const res = await fetch(`http://${d.http}/api/v1/alerts?limit=1000${query}`, { headers: { authorization: `Bearer ${d.token}` } });
  return ((await res.json()) as { alerts: { title: string; agent: string }[] }).alerts;
}

async function titles(d: Demo): Promise<string[]> {
  return (await alerts(d)).map((a) => a.title);
}

/** Messages of a topic from its beginning, read until `enough` says so. */
async function read(
  topic: string,
  enough: (m: { key: string; value: string; type?: string }[]) => boolean,
): Promise<{ key: string; value: string; type?: string }[]> {
  const consumer = new Kafka({ clientId: 'demo-test', brokers: [broker().bootstrap], logLevel: logLevel.NOTHING }).consumer({
    groupId: `demo-test-${randomUUID()}`,
  });
  const got: { key: string; value: string; type?: string }[] = [];
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const type = message.headers?.['verdict-type']?.toString();
        got.push({ key: message.key?.toString() ?? '', value: message.value?.toString() ?? '', ...(type ? { type } : {}) });
      },
    });
    await until(() => (enough(got) ? true : undefined), 30_000, `messages on ${topic}`);
    return got;
  } finally {
    await consumer.disconnect();
  }
}

describe('verdict demo --kafka', () => {
  it("keeps the demo's alert log in Kafka, exports it, and lets a second demo join as a replica", async () => {
    const one = await demo('demo-1');
    expect(one.proc.stdout).toContain(`kafka:       ${broker().bootstrap}: alert log verdict.log, export verdict.alerts`);
    const first = await until(
      async () => {
        const t = await titles(one);
        return t.some((x) => x.startsWith('Terminal shell in container')) && t.length >= 3 ? t : undefined;
      },
      60_000,
      'cilium and falco alerts on the first demo',
    );

    // The alerts went through the log (agent events), and each is exported as JSON keyed by its id.
    // Agent batches are `events` messages: one per batch and partition, each listing its events.
    const eventsIn = (m: { value: string; type?: string }[]) =>
      m.filter((x) => x.type === 'events').reduce((n, x) => n + (JSON.parse(x.value) as { events: unknown[] }).events.length, 0);
    const log = await read('verdict.log', (m) => eventsIn(m) >= first.length);
    expect(log.filter((m) => m.type === 'events').every((m) => (JSON.parse(m.value) as { agent: string }).agent === 'demo')).toBe(true);
    const exported = await read('verdict.alerts', (m) => first.every((t) => m.some((x) => (JSON.parse(x.value) as { title: string }).title === t)));
    for (const m of exported) {
      const v = JSON.parse(m.value) as { schema: string; id: string; agent: string };
      expect(v.schema).toBe('verdict.alert/v1');
      expect(m.key).toBe(v.id);
      expect(v.id).toMatch(/^demo\/.+\/[0-9a-f-]{36}$/);
    }

    // A second demo on the same Kafka with its own data dir: a second replica whose feed
    // has everything the first one stored, through the log.
    const two = await demo('demo-2');
    await until(
      async () => {
        const t = new Set(await titles(two));
        return first.every((x) => t.has(x)) ? true : undefined;
      },
      60_000,
      "the first demo's alerts on the second",
    );
    expect(two.proc.logs.some((l) => l.msg === 'Kafka: this server is a replica on the shared alert log')).toBe(true);

    // The second demo runs its own agent, configured from its own data dir, and listens on the Falco input it prints.
    expect(one.proc.stdout).toMatch(/^ {2}agent: {7}demo {2}\(its own config\.yaml and Falco input/m);
    expect(two.proc.stdout).toMatch(/^ {2}agent: {7}demo-2 {2}\(its own config\.yaml and Falco input/m);
    expect(two.proc.stdout).toContain(`config:      ${join(dir, 'demo-2')}/config-project/.gitlab/agents/demo-2/config.yaml`);
    const falco = /^ {2}Falco input: (\S+)/m.exec(two.proc.stdout)![1]!;
    expect(falco).not.toBe(/^ {2}Falco input: (\S+)/m.exec(one.proc.stdout)![1]!);
    const rule = `Second demo test rule ${randomUUID()}`;
    const event = { output: `${rule} fired`, priority: 'Warning', rule, time: new Date().toISOString(), hostname: 'demo-two', output_fields: {} };
    await until(
      async () =>
        (await fetch(falco, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event) }).catch(() => undefined))?.ok ||
        undefined,
      60_000,
      "the second demo's Falco input taking an event",
    );
    // Through the shared log: on the first demo's feed too, raised by the second demo's agent.
    for (const d of [two, one]) {
      const got = await until(
        async () => (await alerts(d, '&agent=demo-2')).find((a) => a.title.startsWith(rule)),
        60_000,
        `the event on ${d.proc.name}'s feed`,
      );
      expect(got.agent).toBe('demo-2');
    }
    expect(two.proc.logs.filter((l) => String(l.error ?? '').includes('cannot listen for Falco events'))).toEqual([]);

    await two.proc.kill('SIGTERM');
    await one.proc.kill('SIGTERM');
    expect(await two.proc.exited).toBe(0);
    expect(await one.proc.exited).toBe(0);
  }, 240_000);
});
