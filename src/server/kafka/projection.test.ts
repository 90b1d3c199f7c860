import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { kafkaConfigForBootstrap } from '../../shared/config/kafka-config.js';
import { pino } from 'pino';
import { AlertStore, type IncomingEvent } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { falcoPayload } from '../store/test-payloads.js';
import { migrateKafka } from './db.js';
import { OwnEvents } from './own-events.js';
import { Projection } from './projection.js';

// What a replica does with its own messages once the brokers acknowledge
// them. No broker is needed: the consumer (start()) is not started, so the
// log never gives anything back and only the acknowledgements apply.
function setup() {
  const db = openServerDb(':memory:');
  migrateKafka(db);
  const store = new AlertStore(db);
  const own = new OwnEvents();
  const projection = new Projection({
    kafka: undefined as unknown as Kafka,
    cfg: kafkaConfigForBootstrap('127.0.0.1:9'),
    db,
    store,
    topic: 'log',
    groupId: 'g',
    log: pino({ level: 'silent' }),
    partitions: 2,
    own,
  });
  let n = 0;
  /** An `events` message of one event, kept as the sink keeps it before producing it. */
  const message = (fp: string) => {
    const ref = `ev-${++n}`;
    const events: IncomingEvent[] = [{ id: ref, payload: falcoPayload({ fp }), receivedAt: Date.now() }];
    const value = Buffer.from(ref);
    own.keep(ref, value, 'edge', events);
    return { ref, value };
  };
  return { db, store, own, projection, message };
}

describe('Projection of its own acknowledged messages', () => {
  it('applies them in offset order when each is the next of its partition, and forgets them', () => {
    const { store, own, projection, message } = setup();
    const a = message('fp-a');
    const b = message('fp-a');
    const c = message('fp-c');
    // Acknowledged out of order within a partition: applied in log order all the same.
    own.appended([
      { ...b, partition: 0, offset: 1 },
      { ...a, partition: 0, offset: 0 },
      { ...c, partition: 1, offset: 0 },
    ]);
    expect(projection.position(0)).toBe(2);
    expect(projection.position(1)).toBe(1);
    const alerts = store.list({ limit: 10 }).alerts;
    expect(alerts.map((x) => [x.fingerprint, x.count]).sort()).toEqual([
      ['fp-a', 2],
      ['fp-c', 1],
    ]);
    // Taken: the log's copy, when read, is not projected from memory again.
    expect(own.take(a.ref, a.value)).toBeUndefined();
    expect(own.take(c.ref, c.value)).toBeUndefined();
  });

  it('leaves a message with unprojected messages before it to the log, kept for when it is read back', () => {
    const { store, own, projection, message } = setup();
    const a = message('fp-a');
    // Offset 0 is another replica's message, not projected yet.
    own.appended([{ ...a, partition: 0, offset: 1 }]);
    expect(projection.position(0)).toBe(0);
    expect(store.list({ limit: 10 }).alerts).toEqual([]);
    expect(own.take(a.ref, a.value)?.events.map((e) => e.id)).toEqual([a.ref]);
  });

  it("does not apply a resend's events at the offset of the first send (the same events, another value)", () => {
    const { store, own, projection } = setup();
    // The agent sent a batch again while its first send waited for Kafka: both are in the log, with other `at`s.
    const events = (at: number): IncomingEvent[] => [{ id: 'ev-r', payload: falcoPayload({ fp: 'fp-r' }), receivedAt: at }];
    const first = Buffer.from('first');
    const resend = Buffer.from('resend');
    own.keep('ev-r', first, 'edge', events(1));
    own.keep('ev-r', resend, 'edge', events(2));
    own.appended([{ ref: 'ev-r', value: first, partition: 0, offset: 0 }]);
    // Offset 0 holds the first send: it is read from the log, as every replica reads it.
    expect(projection.position(0)).toBe(0);
    expect(store.list({ limit: 10 }).alerts).toEqual([]);
    expect(own.take('ev-r', resend)?.events[0]?.receivedAt).toBe(2);
  });

  it('applies nothing while its projection is held (tests watching a replica that is behind)', () => {
    const { db, store } = setup();
    const own = new OwnEvents();
    new Projection({
      kafka: undefined as unknown as Kafka,
      cfg: kafkaConfigForBootstrap('127.0.0.1:9'),
      db,
      store,
      topic: 'log2',
      groupId: 'g2',
      log: pino({ level: 'silent' }),
      hold: new Promise(() => undefined),
      own,
    });
    const value = Buffer.from('x');
    own.keep('ev-x', value, 'edge', [{ id: 'ev-x', payload: falcoPayload({ fp: 'x' }) }]);
    own.appended([{ ref: 'ev-x', value, partition: 0, offset: 0 }]);
    expect(store.list({ limit: 10 }).alerts).toEqual([]);
  });
});
