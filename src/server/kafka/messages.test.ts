import { describe, expect, it } from 'vitest';
import { falcoPayload } from '../store/test-payloads.js';
import {
  alertUid,
  checkEntry,
  decodeLogEvent,
  encodeAlertEvent,
  encodeClaimsEvent,
  encodeEntry,
  type Entry,
  encodeEventsMessage,
  encodeStatusEvent,
  HEADER_REF,
  HEADER_TYPE,
  logKey,
  logRefs,
  MAX_MESSAGE_BYTES,
  parseAlertUid,
} from './messages.js';
import { VerdictError } from '../../shared/errors.js';

/** An entry's JSON, as encodeEventsMessage writes it. */
const entryJson = (e: Entry) => e.pieces.join('');

describe('log messages', () => {
  it('round-trips agent events and status changes', () => {
    const payload = falcoPayload({ fp: 'abc' });
    const a = decodeLogEvent(Buffer.from(encodeAlertEvent('edge', 'ev-1', payload, 'r1', '2026-01-01T00:00:00.000Z')!.json));
    expect(a).toEqual({ type: 'alert', v: 1, agent: 'edge', id: 'ev-1', payload, at: '2026-01-01T00:00:00.000Z', replica: 'r1' });
    const s = decodeLogEvent(
      Buffer.from(encodeStatusEvent({ agent: 'edge', fingerprint: 'abc', alert: 'ev-1', status: 'resolved', actor: 'bob', at: 'now', replica: 'r2' })),
    );
    expect(s).toMatchObject({ type: 'status', agent: 'edge', fingerprint: 'abc', alert: 'ev-1', status: 'resolved', actor: 'bob' });
  });

  it('round-trips an agent batch as one events message, naming its events in the headers or the value', () => {
    const a = falcoPayload({ fp: 'abc' });
    const b = falcoPayload({ fp: 'def' });
    const value = encodeEventsMessage('edge', '2026-01-01T00:00:00.000Z', 'r1', [encodeEntry('ev-1', a)!, encodeEntry('ev-2', b)!]);
    expect(decodeLogEvent(value)).toEqual({
      type: 'events',
      v: 1,
      agent: 'edge',
      at: '2026-01-01T00:00:00.000Z',
      replica: 'r1',
      events: [
        { id: 'ev-1', payload: a },
        { id: 'ev-2', payload: b },
      ],
    });
    const refs = [
      { type: 'alert', ref: 'ev-1' },
      { type: 'alert', ref: 'ev-2' },
    ];
    expect(logRefs({ [HEADER_TYPE]: Buffer.from('events'), [HEADER_REF]: Buffer.from('ev-1,ev-2') }, value)).toEqual(refs);
    expect(logRefs(undefined, value)).toEqual(refs);
    expect(checkEntry({ id: 'ev-3', payload: { source: 'nope' } })).toMatch(/source must be cilium or falco or gitops/);
    expect(checkEntry({ payload: a })).toMatch(/event id is missing/);
    expect(() => decodeLogEvent(Buffer.from(JSON.stringify({ type: 'events', v: 1, agent: 'edge', events: 'x' })))).toThrow(/events must be a list/);
  });

  it('round-trips webhook claims, which name no alert change for the delivery group', () => {
    const claims = [{ integration: 'rx', alert: 'edge/abc/ev-1', event: 'triggered' }];
    const json = encodeClaimsEvent({ partition: 2, upto: '41', claims, at: 'now', replica: 'r1' });
    expect(decodeLogEvent(Buffer.from(json))).toEqual({ type: 'claims', v: 1, partition: 2, upto: '41', claims, at: 'now', replica: 'r1' });
    expect(logRefs({ [HEADER_TYPE]: Buffer.from('claims'), [HEADER_REF]: Buffer.from('2/41') }, Buffer.from(json))).toEqual([]);
    expect(logRefs(undefined, Buffer.from(json))).toEqual([]);
    expect(() => decodeLogEvent(Buffer.from(JSON.stringify({ type: 'claims', v: 1, claims: [{ integration: 'rx' }] })))).toThrow(/claims must be a list/);
  });

  it('refuses what a replica cannot project, saying why', () => {
    const bad = (v: unknown) => () => decodeLogEvent(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
    expect(bad('not json')).toThrow(VerdictError);
    expect(bad({ type: 'alert', v: 2, agent: 'edge' })).toThrow(/version 2 is not 1; is a newer Verdict/);
    expect(bad({ type: 'alert', v: 1, agent: 'edge', id: 'x', payload: { source: 'nope' } })).toThrow(/source must be cilium or falco or gitops/);
    expect(bad({ type: 'status', v: 1, agent: 'edge', fingerprint: 'f', alert: 'e', status: 'closed' })).toThrow(/status "closed" is not one of/);
    expect(bad({ type: 'mystery', v: 1, agent: 'edge' })).toThrow(/unknown message type "mystery"/);
    expect(() => decodeLogEvent(null)).toThrow(/empty/);
  });

  it('cuts samples, then drops them, to fit an event into a Kafka message', () => {
    const huge = { blob: 'x'.repeat(200 * 1024) };
    const p = { ...falcoPayload(), samples: [huge, huge, huge, huge, huge] };
    const json = encodeAlertEvent('edge', 'ev-2', p, 'r1')!.json;
    expect(json.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    const samples = (decodeLogEvent(Buffer.from(json)) as { payload: { samples: { truncated?: boolean }[] } }).payload.samples;
    expect(samples).toHaveLength(5);
    expect(samples.every((s) => s.truncated)).toBe(true);
    expect(encodeAlertEvent('edge', 'ev-3', { ...falcoPayload(), rule: 'y'.repeat(MAX_MESSAGE_BYTES) }, 'r1')).toBeUndefined();
    // An events message's entry is cut alike, and says what it kept.
    const entry = encodeEntry('ev-2', p)!;
    expect(entry.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(entry.payload.samples.every((s) => (s as { truncated?: boolean }).truncated)).toBe(true);
    expect(JSON.parse(entryJson(entry))).toEqual({ id: 'ev-2', payload: entry.payload });
  });

  it("cuts an event's details when it is too big even with its samples cut, keeping the samples, and says what it cut", () => {
    // A Falco event with a 12 MB output field, which the agent sends whole (it fits a gRPC message).
    const base = falcoPayload();
    const big = 'x'.repeat(12_000_000);
    const p = { ...base, falco: { ...base.falco!, output_fields: { ...base.falco!.output_fields, 'proc.cmdline': big } }, samples: [{ n: 1 }] };
    const single = encodeAlertEvent('edge', 'ev-9', p, 'r1')!;
    expect(Buffer.byteLength(single.json)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(single.cut).toEqual({ steps: ['detail previews'], details: ['falco.output_fields.proc.cmdline'] });
    const logged = (decodeLogEvent(Buffer.from(single.json)) as unknown as { payload: typeof p }).payload;
    expect(logged.samples).toEqual([{ n: 1 }]);
    expect(logged.falco.output_fields).toEqual({
      ...base.falco!.output_fields,
      'proc.cmdline': expect.stringMatching(/^x{2048}…\[cut 11997952 of 12000000 bytes\]$/),
    });
    const entry = encodeEntry('ev-9', p, JSON.stringify(p))!;
    expect(entry.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(entry.cut).toEqual(single.cut);
    expect(JSON.parse(entryJson(entry))).toEqual({ id: 'ev-9', payload: entry.payload });
    expect(entry.payload.falco!.output_fields).toEqual(logged.falco.output_fields);
    // An event that fits says nothing was cut.
    expect(encodeEntry('ev-10', base, JSON.stringify(base))!.cut).toBeUndefined();
    expect(encodeAlertEvent('edge', 'ev-10', base, 'r1')!.cut).toBeUndefined();
  });

  it('measures the Kafka message size in bytes, not characters', () => {
    // 5 samples of 100k euro signs: 500k characters, 1.5 MB of UTF-8, which the broker refuses.
    const wide = '\u20ac'.repeat(100 * 1024);
    const p = { ...falcoPayload(), samples: [wide, wide, wide, wide, wide] };
    const json = encodeAlertEvent('edge', 'ev-4', p, 'r1')!.json;
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect((decodeLogEvent(Buffer.from(json)) as { payload: { samples: unknown[] } }).payload.samples).toHaveLength(5);
    expect(encodeAlertEvent('edge', 'ev-5', { ...falcoPayload(), rule: '\u20ac'.repeat(MAX_MESSAGE_BYTES / 2) }, 'r1')).toBeUndefined();
  });

  it("writes the agent's payload text as it came, and cuts it like an object when it is too big", () => {
    const p = falcoPayload();
    const text = ` ${JSON.stringify(p, null, 1)} `;
    const entry = encodeEntry('ev-6', p, text)!;
    expect(entryJson(entry)).toContain(text);
    expect(entry.payload).toBe(p);
    // What every other replica parses from the log is the payload this replica projects.
    expect(JSON.parse(entryJson(entry))).toEqual({ id: 'ev-6', payload: p });
    expect(checkEntry(JSON.parse(entryJson(entry)))).toBeUndefined();
    const huge = 'x'.repeat(300 * 1024);
    const big = { ...falcoPayload(), samples: [huge, huge, huge, huge, huge] };
    const cut = encodeEntry('ev-7', big, JSON.stringify(big))!;
    expect(cut.bytes).toBe(Buffer.byteLength(entryJson(cut)));
    expect(cut.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(JSON.parse(entryJson(cut))).toEqual({ id: 'ev-7', payload: cut.payload });
    expect(cut.payload.samples.every((s) => (s as { truncated?: boolean }).truncated)).toBe(true);
  });

  it('writes an events message as the UTF-8 of its JSON, byte for byte, whatever the characters', () => {
    // Euro signs (3 bytes), an emoji (a surrogate pair, 4 bytes) and a lone surrogate (written as U+FFFD, 3 bytes).
    const p = { ...falcoPayload({ fp: 'f\u20ac' }), description: 'caf\u00e9 \u20ac \u{1f600} \ud800 end' };
    const entries = [encodeEntry('ev-8', p, JSON.stringify(p))!, encodeEntry('ev-\u20ac', falcoPayload())!];
    for (const e of entries) expect(e.bytes).toBe(Buffer.byteLength(entryJson(e)));
    const value = encodeEventsMessage('\u00e9dge', 'now', 'r1', entries);
    const text = `{"type":"events","v":1,"agent":"\u00e9dge","at":"now","replica":"r1","events":[${entries.map(entryJson).join(',')}]}`;
    expect(value.equals(Buffer.from(text))).toBe(true);
    expect(encodeEventsMessage('edge', 'now', 'r1', []).toString()).toBe('{"type":"events","v":1,"agent":"edge","at":"now","replica":"r1","events":[]}');
    expect((decodeLogEvent(value) as { events: unknown[] }).events).toHaveLength(2);
  });

  it('names alerts alike on every replica and parses the name back', () => {
    expect(logKey('edge', 'f00')).toBe('edge/f00');
    const uid = alertUid('edge', 'a/b', '0b7e6d3c-1111-4222-8333-944445555666');
    expect(parseAlertUid(uid)).toEqual({ agent: 'edge', fingerprint: 'a/b', firstEvent: '0b7e6d3c-1111-4222-8333-944445555666' });
    expect(parseAlertUid('nonsense')).toBeUndefined();
  });
});
