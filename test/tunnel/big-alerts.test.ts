import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freePort, killAll, tempDir, until, verdictSync } from '../helpers/processes.js';
import { prepareServer, ServerProc, spawnAgent, SpoolWriter, storeCounts, type Transport } from './harness.js';

// Alerts of megabytes, with real server and agent processes: together they
// are far over the 10 MiB a gRPC message may carry, so the agent must cut its
// batches by bytes; an alert too big even alone is sent cut as the server
// stores it (its description, its samples to previews); one too big even so,
// for a Falco output the server stores whole, is sent with that output cut to
// a preview that says how much was cut; and every alert after them still
// reaches the server. A cut alert is warned about once, however often a
// refused stream makes the agent send it again. A Falco event posted to the
// agent's Falco input with a 12 MB output field reaches the server cut alike.

vi.setConfig({ testTimeout: 120_000 });

const MiB = 1024 * 1024;

function falcoAlert(i: number, opts: { output: number; sample?: number; samples?: number; falcoOutput?: number }): Buffer {
  const now = new Date().toISOString();
  const output = `big event ${i} ${'x'.repeat(opts.output)}`;
  const falcoOutput = opts.falcoOutput === undefined ? output : `big event ${i} ${'z'.repeat(opts.falcoOutput)}`;
  return Buffer.from(
    JSON.stringify({
      schema: 'verdict.alert/v1',
      source: 'falco',
      fingerprint: `big-${i}`,
      severity: 'high',
      title: `Big Falco event ${i}`,
      description: output,
      cluster: 'test',
      namespace: 'qa',
      count: 1,
      first_seen: now,
      last_seen: now,
      policies: [],
      rule: 'QA big',
      labels: { pod: `p-${i}` },
      falco: {
        rule: 'QA big',
        priority: 'Error',
        source: 'syscall',
        hostname: 'node-qa',
        output: falcoOutput,
        tags: [],
        output_fields: { 'proc.cmdline': output },
      },
      samples: Array.from({ length: opts.samples ?? 1 }, (_, k) => ({ output, n: k, pad: 'y'.repeat(opts.sample ?? 0) })),
    }),
  );
}

/** Writes the payloads into the agent's spool in one transaction, oldest first, as the alert stage would; returns their ids. */
function spool(agentDir: string, payloads: Buffer[]): string[] {
  const db = new Database(join(agentDir, 'agent.db'));
  try {
    db.pragma('busy_timeout = 5000');
    const insert = db.prepare('INSERT INTO outbox (id, payload, bytes, created_at) VALUES (?, ?, ?, ?)');
    const ids = payloads.map(() => randomUUID());
    db.transaction(() => {
      for (const [k, p] of payloads.entries()) insert.run(ids[k], p, p.length, Date.now());
    })();
    return ids;
  } finally {
    db.close();
  }
}

/** The id of the alert holding event `eventId`, or of the alert of rule `rule`; undefined when the store has none. */
function alertIdOf(serverData: string, of: { eventId: string } | { rule: string }): number | undefined {
  const db = new Database(join(serverData, 'server.db'), { readonly: true, fileMustExist: true });
  try {
    const row =
      'eventId' in of
        ? db.prepare('SELECT alert_id AS id FROM alert_events WHERE event_id = ?').get(of.eventId)
        : db.prepare('SELECT id FROM alerts WHERE rule = ?').get(of.rule);
    return (row as { id: number } | undefined)?.id;
  } finally {
    db.close();
  }
}

/** The alert holding event `eventId` (or alert `alertId`), as the feed shows it (GET /api/v1/alerts/:id). */
async function feedAlert(
  server: ServerProc,
  token: string,
  eventId: string,
  alertId = alertIdOf(server.data, { eventId })!,
): Promise<{ title: string; description: string; details: { falco: { output: string; output_fields: Record<string, string> } }; samples: unknown[] }> {
  const res = await fetch(`http://127.0.0.1:${server.http}/api/v1/alerts/${alertId}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { alert: Awaited<ReturnType<typeof feedAlert>> }).alert;
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

describe.each(['grpc', 'ws'] as Transport[])('alerts over the gRPC message size, over %s', (transport) => {
  afterEach(killAll);

  it('are all delivered in batches under the limit, cut when too big alone (as the server stores them, then their details), and later alerts still flow', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const feedToken = verdictSync(['tokens', 'create', '--name', 'qa', '--data-dir', data]).trim();
    const server = await ServerProc.start(data);
    // The server refuses the agent's token until the agent has sent the alerts a few times:
    // an alert sent cut is warned about once, however often it is sent again.
    const token = readFileSync(tokenFile, 'utf8');
    writeFileSync(tokenFile, 'vdt_agent_not_a_valid_token');
    const agentDir = join(dir, 'agent');
    const obs = await freePort();
    const agent = spawnAgent(server.kasAddress(transport), tokenFile, agentDir, ['--observability-addr', `127.0.0.1:${obs}`]);
    const w = await SpoolWriter.open(agentDir);

    // 40 alerts of about 1.2 MB (the description, the Falco output and a sample each
    // carry a 400 KB field): 48 MB, where one batch of them all was 5 times the limit.
    const big = Array.from({ length: 40 }, (_, i) => falcoAlert(i, { output: 400 * 1024 }));
    // 11 MiB, nearly all of it in its 5 samples (all the server keeps): sent with the samples cut to previews.
    const heavySamples = falcoAlert(100, { output: 1024, sample: 2.2 * MiB, samples: 5 });
    // 12 MiB without any sample, 4 MiB each in the description, the Falco output and an
    // output field: sent with the description cut to what the server stores (4000 characters).
    const longDescription = falcoAlert(200, { output: 4 * MiB, samples: 0 });
    // 11 MiB in the Falco output alone, which the server stores whole: sent with the output cut to a preview.
    const hugeOutput = falcoAlert(300, { output: 1024, falcoOutput: 11 * MiB, samples: 0 });
    for (const a of [heavySamples, longDescription, hugeOutput]) expect(a.length).toBeGreaterThan(10 * MiB);
    const ids = spool(agentDir, [heavySamples, longDescription, hugeOutput, ...big]);
    const [heavyId, longId, hugeOutputId] = [ids[0]!, ids[1]!, ids[2]!];
    const failures = () => agent.logs.filter((l) => l.msg.startsWith('Alert stream to the server failed')).length;
    const before = failures();
    await until(() => (failures() >= before + 3 ? true : undefined), 20_000, 'the agent to fail to send the spool three times');
    writeFileSync(tokenFile, token);

    await until(
      () => (w.spooled() === 0 ? true : undefined),
      60_000,
      () => `the agent to empty its spool (${w.spooled()} left)`,
    );
    const stored = storeCounts(data).ids;
    expect(ids.filter((id) => !stored.has(id))).toEqual([]);

    expect(agent.logs.filter((l) => l.msg.startsWith('Dropped an alert larger than a gRPC message'))).toEqual([]);
    expect(agent.logs.filter((l) => l.msg.startsWith('Sending an alert larger than a gRPC message'))).toEqual([
      expect.objectContaining({ level: 'warn', alert_id: heavyId, title: 'Big Falco event 100', cut: ['sample previews'] }),
      expect.objectContaining({ level: 'warn', alert_id: longId, title: 'Big Falco event 200', cut: ['description'] }),
      expect.objectContaining({
        level: 'warn',
        alert_id: hugeOutputId,
        title: 'Big Falco event 300',
        cut: ['detail previews'],
        cut_details: ['falco.output'],
        cut_details_count: 1,
      }),
    ]);
    expect(agent.logs.find((l) => l.alert_id === hugeOutputId)!.msg).toMatch(/loses part of its details \(falco\.output; each marked where it was cut\)/);
    expect(agent.logs.find((l) => l.alert_id === longId)!.msg).toMatch(
      /loses nothing the server stores\. To have it sent as it is, shorten its big field at the source/,
    );

    // The feed shows them as the server stores any alert: the description cut, the details whole.
    const long = await feedAlert(server, feedToken, longId);
    const text = `big event 200 ${'x'.repeat(4 * MiB)}`;
    expect(long.title).toBe('Big Falco event 200');
    const textBytes = Buffer.byteLength(text);
    expect(long.description).toBe(`${text.slice(0, 3969)}…[cut ${textBytes - 3969} of ${textBytes} bytes]`);
    expect(long.details.falco.output).toBe(text);
    expect(long.details.falco.output_fields['proc.cmdline']).toBe(text);
    // The Falco output it could not send whole: its start, and how much was cut.
    const huge = await feedAlert(server, feedToken, hugeOutputId);
    const hugeBytes = Buffer.byteLength(`big event 300 ${'z'.repeat(11 * MiB)}`);
    expect(huge.details.falco.output).toBe(`big event 300 ${'z'.repeat(2048 - 14)}…[cut ${hugeBytes - 2048} of ${hugeBytes} bytes]`);
    expect(huge.details.falco.output_fields['proc.cmdline']).toBe(`big event 300 ${'x'.repeat(1024)}`);
    const heavy = await feedAlert(server, feedToken, heavyId);
    expect(heavy.samples).toHaveLength(5);
    expect(heavy.samples[0]).toMatchObject({ truncated: true, bytes: expect.any(Number), preview: expect.stringMatching(/^\{"output":"big event 100 /) });
    // The refused token it starts with may hit the server's limit on failed authentications on a
    // loaded machine; that limit is not what this test is about.
    const limited = (l: Record<string, unknown>) => /send limit|rate limited|message size limit/.test(String(l.error ?? ''));
    expect(agent.logs.filter((l) => limited(l) && !/failed agent authentications/.test(String(l.error)))).toEqual([]);
    expect(await metric(obs, 'verdict_agent_alerts_too_large_total')).toBe(0);
    // Once per alert that lost samples or details (the huge output), however often it was sent; the other two lost nothing the server keeps.
    expect(await metric(obs, 'verdict_agent_alerts_cut_total')).toBe(1);
    expect(await metric(obs, 'verdict_agent_spool_alerts')).toBe(0);

    // A small alert afterwards is delivered as ever.
    w.add(1);
    await until(() => (storeCounts(data).ids.has(w.ids[0]!) ? true : undefined), 20_000, 'the small alert sent afterwards in the store');
    w.close();
  });
});

describe('a Falco event with a 12 MB output field, posted to the agent', () => {
  afterEach(killAll);

  it('reaches the server with that field cut to its start and how much was cut, the rest whole, and the agent warns once', async () => {
    const dir = tempDir();
    const falcoPort = await freePort();
    const config = `falco:\n  http:\n    listen: 127.0.0.1:${falcoPort}\n    max_body_bytes: ${32 * MiB}\n  dedup_window: 0s\n`;
    const { data, tokenFile } = prepareServer(dir, config);
    const feedToken = verdictSync(['tokens', 'create', '--name', 'qa', '--data-dir', data]).trim();
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress('grpc'), tokenFile, join(dir, 'agent'));
    const cmdline = `/bin/sh -c ${'a'.repeat(12_000_000)}`;
    const event = {
      rule: 'QA huge output field',
      priority: 'Warning',
      time: new Date().toISOString(),
      output: 'A huge command line (proc.name=sh)',
      hostname: 'node-qa',
      source: 'syscall',
      tags: ['qa'],
      output_fields: { 'proc.cmdline': cmdline, 'proc.name': 'sh', 'evt.num': 42 },
    };
    const body = JSON.stringify(event);
    const status = await until(
      () =>
        fetch(`http://127.0.0.1:${falcoPort}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(
          (r) => r.status,
          () => undefined,
        ),
      30_000,
      "the agent's Falco input to answer",
    );
    expect(status).toBe(200);

    const alertId = await until(() => alertIdOf(data, { rule: event.rule }), 60_000, 'the alert in the server store');
    const a = await feedAlert(server, feedToken, '', alertId);
    const bytes = Buffer.byteLength(cmdline);
    expect(a.details.falco.output_fields).toEqual({
      'proc.cmdline': `${cmdline.slice(0, 2048)}…[cut ${bytes - 2048} of ${bytes} bytes]`,
      'proc.name': 'sh',
      'evt.num': 42,
    });
    expect(a.details.falco.output).toBe(event.output);
    expect(a.title).toMatch(/^QA huge output field/);
    const warned = agent.logs.filter((l) => l.msg.startsWith('Sending an alert larger than a gRPC message'));
    expect(warned).toEqual([
      expect.objectContaining({
        level: 'warn',
        cut: ['sample previews', 'detail previews'],
        cut_details: ['falco.output_fields.proc.cmdline'],
        cut_details_count: 1,
      }),
    ]);
    expect(agent.logs.filter((l) => l.level === 'error')).toEqual([]);
  });
});
