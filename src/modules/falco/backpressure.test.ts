import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { falcoConfig, runGrpcInput, store, tmp, type Store } from '../../../test/falco/helpers.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { loadFalcoDefaults } from './defaults.js';
import { falcoEvents } from './events.js';
import { startFalcoGrpcPeer } from '../../peers/falco/falco-grpc-peer.js';
import { startFalcoHttpInput } from './http.js';
import { readInboxDir } from './inbox.js';
import { parseFalcoJson } from './parse.js';
import { JsonlFollower } from './jsonl-file.js';
import { FalcoSink } from './sink.js';
import { readJsonlStream } from './stdin.js';
import { FalcoAlertBuilder } from './to-alert.js';

// A full agent spool (the server has not acknowledged what it holds) holds
// Falco's events where they are, instead of dropping their alerts: the HTTP
// inbox keeps what it answered 200 for, the file offset stays before the lines
// not written, stdin stops being read. Once the spool has room (the server
// acknowledged), they all become alerts.

const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
/** Bytes of one alert of event(): the spool holds about this many before it is full. */
const ONE = Buffer.byteLength(JSON.stringify(builder.toAlert(parseFalcoJson(event(0)))));

let seq = 0;
/** An event of a pod of its own: its own alert, told apart by its pod. */
function event(n = seq++): string {
  const ev = scenarioEvent(0);
  ev.output_fields['k8s.pod.name'] = `pod-${n}`;
  ev.output_fields['ka.target.name'] = `pod-${n}`;
  return toFalcoJson(ev);
}

function spooledPods(s: Store): string[] {
  return s.outbox.read(0, 1e6).map((r) => (JSON.parse(r.payload.toString()) as AlertPayload).labels.pod!);
}

async function fileOutcomes(outcome: string): Promise<number> {
  return (await falcoEvents.get()).values.find((v) => v.labels.input === 'file' && v.labels.outcome === outcome)?.value ?? 0;
}

/** What the server does when it acknowledges everything spooled: the spool has room. */
function acknowledgeAll(s: Store): string[] {
  const pods = spooledPods(s);
  s.outbox.remove(s.outbox.read(0, 1e6));
  return pods;
}

/** Fills the spool with alerts of another source, dropping what does not fit as Cilium's do. */
function fill(s: Store): void {
  const a = builder.toAlert(parseFalcoJson(event(9_999)));
  for (let i = 0; i < 100 && !s.outbox.full; i++) s.outbox.add([{ ...a, source: 'cilium', fingerprint: `other-${i}` }]);
  expect(s.outbox.full).toBe(true);
}

/** A storage retry backoff far longer than any wait below: what is stored after a full spool had room was woken by the room. */
const NO_BACKOFF_RETRY_MS = 600_000;

describe('Falco inputs when the agent spool is full', () => {
  it('HTTP: events answered 200 stay in the inbox while the spool refuses their alerts, new ones get 503, and all flow once it has room', async () => {
    const dir = tmp();
    const s = store(join(dir, 'data'), ONE * 10);
    const { log, logs } = capturingLogger();
    // A dedup window: the answered events wait staged for the commit, as they do by default; the commits below are forced.
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: 60_000, builder, log, persistIntervalMs: 60_000 });
    const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1 << 20, builder, sink, log });
    const post = async (body: string) => {
      const res = await fetch(`http://127.0.0.1:${input.port}/`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { status?: string; error?: string } };
    };
    try {
      seq = 0;
      const answered = await Promise.all([event(), event(), event()].map(post));
      expect(answered.map((a) => a.status)).toEqual([200, 200, 200]);
      // Before their commit, the spool fills up with another source's alerts.
      fill(s);
      await sink.settle();
      // Not dropped, not written: still in the inbox, its consumed position before them.
      expect(sink.unwritten).toBe(3);
      expect(logs.filter((l) => l.msg.startsWith('Alert spool is full: the Falco inputs hold')).map((l) => l.input)).toEqual(['http']);
      const state = s.db.prepare('SELECT gen, offset FROM falco_inbox_state').get() as { gen: number; offset: number } | undefined;
      expect(
        readInboxDir(join(dir, 'data'), state).map(
          (b) => (JSON.parse(b.toString()) as { output_fields: Record<string, string> }).output_fields['k8s.pod.name'],
        ),
      ).toEqual(['pod-0', 'pod-1', 'pod-2']);
      expect(spooledPods(s).filter((p) => p.startsWith('pod-') && p !== 'pod-9999')).toEqual([]);

      const refused = await post(event());
      expect(refused.status).toBe(503);
      expect(refused.retryAfter).toBe('10');
      expect(refused.body.error).toMatch(
        /alert spool is full: the server has not acknowledged.*raise --spool-max-bytes; the event was not accepted: send it again later/,
      );
      expect((await post(event())).status).toBe(503);
      expect(logs.filter((l) => l.msg.startsWith('Alert spool is full')).length).toBe(1);

      // The server acknowledges: the events of the inbox become alerts, and new events are taken.
      acknowledgeAll(s);
      await sink.settle();
      expect(sink.unwritten).toBe(0);
      expect(spooledPods(s)).toEqual(['pod-0', 'pod-1', 'pod-2']);
      const resumed = logs.find((l) => l.msg.startsWith('Alert spool has room again'));
      expect(resumed).toMatchObject({ level: 'info', refused_http: 2 });
      expect((await post(event())).status).toBe(200);
      await sink.settle();
      expect(spooledPods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-5']);
    } finally {
      await input.close();
      await sink.close();
    }
  });

  it('file: the offset stays before the lines whose alerts were refused, and they are read again once there is room', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    const s = store(join(dir, 'data'), ONE * 4);
    const { log, logs } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const f = new JsonlFollower({ path, startAt: 'beginning', pollIntervalMs: 20, db: s.db, sink, builder, log, signal: new AbortController().signal });
    const offset = () => (s.db.prepare('SELECT offset FROM falco_file_positions').get() as { offset: number }).offset;
    seq = 0;
    const first = `${event()}\n${event()}\n${event()}\n${event()}\n${event()}\n`;
    writeFileSync(path, first);
    await f.step();
    // Taken whole (the spool was not full yet), and now it is.
    expect(spooledPods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4']);
    expect(s.outbox.full).toBe(true);
    const invalid = await fileOutcomes('invalid');
    // A line that is not an event among them: counted and logged once, not at each read.
    const more = `${event()}\nnot json\n${event()}\n`;
    appendFileSync(path, more);
    await expect(f.step()).rejects.toThrow(/alert spool is full/);
    expect(offset()).toBe(Buffer.byteLength(first));
    expect(spooledPods(s)).toHaveLength(5);
    expect(logs.filter((l) => l.msg.startsWith('Alert spool is full: the Falco inputs hold')).map((l) => l.input)).toEqual(['file']);

    expect(acknowledgeAll(s)).toHaveLength(5);
    await f.step();
    expect(spooledPods(s)).toEqual(['pod-5', 'pod-6']);
    expect(offset()).toBe(Buffer.byteLength(first) + Buffer.byteLength(more));
    expect(await fileOutcomes('invalid')).toBe(invalid + 1);
    expect(logs.filter((l) => l.msg.startsWith('Skipped a line that is not a Falco JSON event'))).toHaveLength(1);
    await sink.close();
  });

  it('file: a file rotated in and out again while the spool is full is read once there is room also when the input restarted meanwhile', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    const s = store(join(dir, 'data'), ONE * 4);
    const { log } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const follower = (signal: AbortSignal) => new JsonlFollower({ path, startAt: 'beginning', pollIntervalMs: 20, db: s.db, sink, builder, log, signal });
    let abort = new AbortController();
    const f = follower(abort.signal);
    const noted = () => (f as unknown as { rotatedWhileFull: string[] }).rotatedWhileFull.length;
    seq = 0;
    writeFileSync(path, `${event()}\n${event()}\n${event()}\n${event()}\n${event()}\n`);
    let done = f.run();
    try {
      await until(() => s.outbox.full, 5_000, 'the spool to fill');
      renameSync(path, `${path}.1`);
      writeFileSync(path, `${event()}\n${event()}\n`);
      await until(() => noted() === 1, 5_000, 'the first rotation to be noted');
      renameSync(`${path}.1`, `${path}.2`);
      renameSync(path, `${path}.1`);
      writeFileSync(path, `${event()}\n`);
      await until(() => noted() === 2, 5_000, 'the second rotation to be noted');
      // The module restarts (a config.yaml change) before the server acknowledges anything.
      abort.abort();
      await done;
      abort = new AbortController();
      done = follower(abort.signal).run();
      acknowledgeAll(s);
      await until(() => s.outbox.size === 3, 5_000, 'the lines of both new files');
      expect(spooledPods(s)).toEqual(['pod-5', 'pod-6', 'pod-7']);
    } finally {
      abort.abort();
      await done;
      await sink.close();
    }
  });

  it('file: a file rotated in and out again while the spool is full is read once there is room, after the one before it', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    const s = store(join(dir, 'data'), ONE * 4);
    const { log } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const abort = new AbortController();
    const f = new JsonlFollower({ path, startAt: 'beginning', pollIntervalMs: 20, db: s.db, sink, builder, log, signal: abort.signal });
    const noted = () => (f as unknown as { rotatedWhileFull: string[] }).rotatedWhileFull.length;
    seq = 0;
    writeFileSync(path, `${event()}\n${event()}\n${event()}\n${event()}\n${event()}\n`);
    const done = f.run();
    try {
      await until(() => s.outbox.full, 5_000, 'the spool to fill');
      // logrotate twice (rename + create) before the server acknowledges anything.
      renameSync(path, `${path}.1`);
      writeFileSync(path, `${event()}\n${event()}\n`);
      await until(() => noted() === 1, 5_000, 'the first rotation to be noted');
      renameSync(`${path}.1`, `${path}.2`);
      renameSync(path, `${path}.1`);
      writeFileSync(path, `${event()}\n`);
      await until(() => noted() === 2, 5_000, 'the second rotation to be noted');
      expect(spooledPods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4']);
      acknowledgeAll(s);
      await until(() => s.outbox.size === 3, 5_000, 'the lines of both new files');
      expect(spooledPods(s)).toEqual(['pod-5', 'pod-6', 'pod-7']);
    } finally {
      abort.abort();
      await done;
      await sink.close();
    }
  });

  it('stdin: reading pauses while the spool is full and every line read becomes an alert once there is room', async () => {
    const s = store(':memory:', ONE * 3);
    const { log } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const stream = new PassThrough();
    const abort = new AbortController();
    const done = readJsonlStream({ stream, sink, builder, log, signal: abort.signal, retryInitialMs: NO_BACKOFF_RETRY_MS });
    seq = 0;
    stream.write(`${event()}\n${event()}\n${event()}\n`);
    await until(() => s.outbox.full, 5_000, 'the spool to fill');
    stream.write(`${event()}\n${event()}\n`);
    await until(() => stream.isPaused(), 5_000, 'stdin to pause');
    const last = `${event()}\n`;
    stream.write(last);
    // Left in the pipe, unread.
    expect(stream.readableLength).toBe(Buffer.byteLength(last));
    expect(spooledPods(s)).toEqual(['pod-0', 'pod-1', 'pod-2']);

    // Stored once the spool has room, not after a retry backoff.
    expect(acknowledgeAll(s)).toHaveLength(3);
    await until(() => s.outbox.size === 3, 5_000, 'the held lines to be stored');
    expect(spooledPods(s)).toEqual(['pod-3', 'pod-4', 'pod-5']);
    abort.abort();
    await done;
    await sink.close();
  });

  it('stdin: lines read while the spool is full are left in the stream when the input restarts, and the next reader stores them', async () => {
    const s = store(':memory:', ONE * 3);
    const { log, logs } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const stream = new PassThrough();
    const first = new AbortController();
    const done = readJsonlStream({ stream, sink, builder, log, signal: first.signal, retryInitialMs: NO_BACKOFF_RETRY_MS });
    seq = 0;
    stream.write(`${event()}\n${event()}\n${event()}\n`);
    await until(() => s.outbox.full, 5_000, 'the spool to fill');
    // Two whole lines waiting for room with one that is not an event between them, and the start of a third.
    const [a, b, third] = [event(), event(), event()];
    const invalid = (await falcoEvents.get()).values.find((v) => v.labels.input === 'stdin' && v.labels.outcome === 'invalid')?.value ?? 0;
    stream.write(`${a}\nnot an event\n${b}\n${third.slice(0, 20)}`);
    await until(() => stream.isPaused(), 5_000, 'stdin to pause');
    // The module restarts (a config.yaml change) during the outage.
    first.abort();
    await done;
    expect(logs.filter((l) => l.level === 'error')).toEqual([]);
    expect(logs.find((l) => l.msg.startsWith('Falco input stopping with events read but not stored yet'))).toMatchObject({ events: 2 });
    const next = new AbortController();
    const again = readJsonlStream({ stream, sink, builder, log, signal: next.signal, retryInitialMs: NO_BACKOFF_RETRY_MS });
    stream.write(`${third.slice(20)}\n`);
    expect(acknowledgeAll(s)).toEqual(['pod-0', 'pod-1', 'pod-2']);
    await until(() => s.outbox.size === 3, 5_000, 'the lines read before the restart to be stored');
    expect(spooledPods(s)).toEqual(['pod-3', 'pod-4', 'pod-5']);
    next.abort();
    await again;
    await sink.close();
    // The line handed back is skipped by the next reader only: counted and logged once.
    expect(logs.filter((l) => l.msg.startsWith('Skipped a line that is not a Falco JSON event'))).toHaveLength(1);
    expect((await falcoEvents.get()).values.find((v) => v.labels.input === 'stdin' && v.labels.outcome === 'invalid')?.value).toBe(invalid + 1);
  });

  it('gRPC (no acknowledgement in the protocol): events received while the spool is full wait in memory and are stored once there is room', async () => {
    const peer = await startFalcoGrpcPeer();
    const s = store(':memory:', ONE * 3);
    const { log, logs } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log });
    const abort = new AbortController();
    const done = runGrpcInput({ address: peer.address, sink, builder, log, signal: abort.signal, retryInitialMs: NO_BACKOFF_RETRY_MS });
    const rules = () => s.outbox.read(0, 100).map((r) => (JSON.parse(r.payload.toString()) as AlertPayload).rule);
    try {
      fill(s);
      const filled = s.outbox.size;
      peer.push(scenarioEvent(0), scenarioEvent(1), scenarioEvent(2));
      await until(() => logs.some((l) => l.msg.startsWith('Alert spool is full: the Falco inputs hold')), 5_000, 'the refusal');
      expect(s.outbox.size).toBe(filled);
      // The spool being full is not a storage failure: no error per retry.
      expect(logs.filter((l) => l.level === 'error')).toEqual([]);
      // Stored once the spool has room, not after a retry backoff.
      acknowledgeAll(s);
      await until(() => s.outbox.size === 3, 5_000, 'the held events to be stored');
      expect(rules().sort()).toEqual(['Detect outbound connections to common miner pool ports', 'Terminal shell in container', 'Write below etc']);
    } finally {
      abort.abort();
      await done;
      await peer.close();
      await sink.close();
    }
  });
});
