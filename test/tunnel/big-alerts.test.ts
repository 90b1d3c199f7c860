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
// for a Falco output the server stores whole, is dropped with an error and a
// counter; and every alert after them still reaches the server. A cut alert
// is warned about once, however often a refused stream makes the agent send
// it again.

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

/** The alert holding event `eventId`, as the feed shows it (GET /api/v1/alerts/:id). */
async function feedAlert(
  server: ServerProc,
  token: string,
  eventId: string,
): Promise<{ title: string; description: string; details: { falco: { output: string; output_fields: Record<string, string> } }; samples: unknown[] }> {
  const db = new Database(join(server.data, 'server.db'), { readonly: true, fileMustExist: true });
  let alertId: number;
  try {
    alertId = (db.prepare('SELECT alert_id FROM alert_events WHERE event_id = ?').get(eventId) as { alert_id: number }).alert_id;
  } finally {
    db.close();
  }
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

  it('are all delivered in batches under the limit, cut as the server stores them when too big alone, except one that cannot fit, and later alerts still flow', async () => {
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
    // 11 MiB in the Falco output alone, which the server stores whole: can never be sent.
    const hopeless = falcoAlert(300, { output: 1024, falcoOutput: 11 * MiB, samples: 0 });
    for (const a of [heavySamples, longDescription, hopeless]) expect(a.length).toBeGreaterThan(10 * MiB);
    const ids = spool(agentDir, [heavySamples, longDescription, hopeless, ...big]);
    const [heavyId, longId, hopelessId] = [ids[0]!, ids[1]!, ids[2]!];
    const deliverable = ids.filter((id) => id !== hopelessId);
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
    expect(deliverable.filter((id) => !stored.has(id))).toEqual([]);
    expect(stored.has(hopelessId)).toBe(false);

    const drop = agent.logs.filter((l) => l.msg.startsWith('Dropped an alert larger than a gRPC message'));
    expect(drop).toEqual([expect.objectContaining({ level: 'error', alert_id: hopelessId, title: 'Big Falco event 300' })]);
    expect(drop[0]!.msg).toMatch(/the alerts after it are sent as usual.*shorten it at the source/);
    expect(agent.logs.filter((l) => l.msg.startsWith('Sending an alert larger than a gRPC message'))).toEqual([
      expect.objectContaining({ level: 'warn', alert_id: heavyId, title: 'Big Falco event 100', cut: ['sample previews'] }),
      expect.objectContaining({ level: 'warn', alert_id: longId, title: 'Big Falco event 200', cut: ['description'] }),
    ]);
    expect(agent.logs.find((l) => l.alert_id === longId)!.msg).toMatch(
      /loses nothing the server stores\. To have it sent as it is, shorten its big field at the source/,
    );

    // The feed shows them as the server stores any alert: the description cut, the details whole.
    const long = await feedAlert(server, feedToken, longId);
    const text = `big event 200 ${'x'.repeat(4 * MiB)}`;
    expect(long.title).toBe('Big Falco event 200');
    expect(long.description).toBe(text.slice(0, 4000));
    expect(long.details.falco.output).toBe(text);
    expect(long.details.falco.output_fields['proc.cmdline']).toBe(text);
    const heavy = await feedAlert(server, feedToken, heavyId);
    expect(heavy.samples).toHaveLength(5);
    expect(heavy.samples[0]).toMatchObject({ truncated: true, bytes: expect.any(Number), preview: expect.stringMatching(/^\{"output":"big event 100 /) });
    expect(agent.logs.filter((l) => /send limit|rate limited|message size limit/.test(String(l.error ?? '')))).toEqual([]);
    expect(await metric(obs, 'verdict_agent_alerts_too_large_total')).toBe(1);
    expect(await metric(obs, 'verdict_agent_spool_alerts')).toBe(0);

    // A small alert afterwards is delivered as ever.
    w.add(1);
    await until(() => (storeCounts(data).ids.has(w.ids[0]!) ? true : undefined), 20_000, 'the small alert sent afterwards in the store');
    w.close();
  });
});
