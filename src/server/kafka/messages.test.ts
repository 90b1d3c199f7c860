import { describe, expect, it } from 'vitest';
import { falcoPayload } from '../store/test-payloads.js';
import {
  alertUid,
  decodeLogEvent,
  encodeAlertEvent,
  encodeClaimsEvent,
  encodeStatusEvent,
  HEADER_REF,
  HEADER_TYPE,
  logKey,
  logRef,
  MAX_MESSAGE_BYTES,
  parseAlertUid,
} from './messages.js';
import { VerdictError } from '../../shared/errors.js';

describe('log messages', () => {
  it('round-trips agent events and status changes', () => {
    const payload = falcoPayload({ fp: 'abc' });
    const a = decodeLogEvent(Buffer.from(encodeAlertEvent('edge', 'ev-1', payload, 'r1', '2026-01-01T00:00:00.000Z')!));
    expect(a).toEqual({ type: 'alert', v: 1, agent: 'edge', id: 'ev-1', payload, at: '2026-01-01T00:00:00.000Z', replica: 'r1' });
    const s = decodeLogEvent(
      Buffer.from(encodeStatusEvent({ agent: 'edge', fingerprint: 'abc', alert: 'ev-1', status: 'resolved', actor: 'bob', at: 'now', replica: 'r2' })),
    );
    expect(s).toMatchObject({ type: 'status', agent: 'edge', fingerprint: 'abc', alert: 'ev-1', status: 'resolved', actor: 'bob' });
  });

  it('round-trips webhook claims, which name no alert change for the delivery group', () => {
    const claims = [{ integration: 'rx', alert: 'edge/abc/ev-1', event: 'triggered' }];
    const json = encodeClaimsEvent({ partition: 2, upto: '41', claims, at: 'now', replica: 'r1' });
    expect(decodeLogEvent(Buffer.from(json))).toEqual({ type: 'claims', v: 1, partition: 2, upto: '41', claims, at: 'now', replica: 'r1' });
    expect(logRef({ [HEADER_TYPE]: Buffer.from('claims'), [HEADER_REF]: Buffer.from('2/41') }, Buffer.from(json))).toBeUndefined();
    expect(logRef(undefined, Buffer.from(json))).toBeUndefined();
    expect(() => decodeLogEvent(Buffer.from(JSON.stringify({ type: 'claims', v: 1, claims: [{ integration: 'rx' }] })))).toThrow(/claims must be a list/);
  });

  it('refuses what a replica cannot project, saying why', () => {
    const bad = (v: unknown) => () => decodeLogEvent(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
    expect(bad('not json')).toThrow(VerdictError);
    expect(bad({ type: 'alert', v: 2, agent: 'edge' })).toThrow(/version 2 is not 1; is a newer Verdict/);
    expect(bad({ type: 'alert', v: 1, agent: 'edge', id: 'x', payload: { source: 'nope' } })).toThrow(/source must be cilium or falco/);
    expect(bad({ type: 'status', v: 1, agent: 'edge', fingerprint: 'f', alert: 'e', status: 'closed' })).toThrow(/status "closed" is not one of/);
    expect(bad({ type: 'mystery', v: 1, agent: 'edge' })).toThrow(/unknown message type "mystery"/);
    expect(() => decodeLogEvent(null)).toThrow(/empty/);
  });

  it('cuts samples, then drops them, to fit an event into a Kafka message', () => {
    const huge = { blob: 'x'.repeat(200 * 1024) };
    const p = { ...falcoPayload(), samples: [huge, huge, huge, huge, huge] };
    const json = encodeAlertEvent('edge', 'ev-2', p, 'r1')!;
    expect(json.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    const samples = (decodeLogEvent(Buffer.from(json)) as { payload: { samples: { truncated?: boolean }[] } }).payload.samples;
    expect(samples).toHaveLength(5);
    expect(samples.every((s) => s.truncated)).toBe(true);
    expect(encodeAlertEvent('edge', 'ev-3', { ...falcoPayload(), description: 'y'.repeat(MAX_MESSAGE_BYTES) }, 'r1')).toBeUndefined();
  });

  it('measures the Kafka message size in bytes, not characters', () => {
    // 5 samples of 100k euro signs: 500k characters, 1.5 MB of UTF-8, which the broker refuses.
    const wide = '\u20ac'.repeat(100 * 1024);
    const p = { ...falcoPayload(), samples: [wide, wide, wide, wide, wide] };
    const json = encodeAlertEvent('edge', 'ev-4', p, 'r1')!;
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect((decodeLogEvent(Buffer.from(json)) as { payload: { samples: unknown[] } }).payload.samples).toHaveLength(5);
    expect(encodeAlertEvent('edge', 'ev-5', { ...falcoPayload(), description: '\u20ac'.repeat(MAX_MESSAGE_BYTES / 2) }, 'r1')).toBeUndefined();
  });

  it('names alerts alike on every replica and parses the name back', () => {
    expect(logKey('edge', 'f00')).toBe('edge/f00');
    const uid = alertUid('edge', 'a/b', '0b7e6d3c-1111-4222-8333-944445555666');
    expect(parseAlertUid(uid)).toEqual({ agent: 'edge', fingerprint: 'a/b', firstEvent: '0b7e6d3c-1111-4222-8333-944445555666' });
    expect(parseAlertUid('nonsense')).toBeUndefined();
  });
});
