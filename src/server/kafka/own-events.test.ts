import { describe, expect, it } from 'vitest';
import { falcoPayload } from '../store/test-payloads.js';
import { OwnEvents } from './own-events.js';

describe('OwnEvents', () => {
  const events = [{ id: 'ev-1', payload: falcoPayload({ fp: 'abc' }), receivedAt: 1 }];

  it('gives a message back once, and only when the log holds the same bytes', () => {
    const own = new OwnEvents();
    own.keep('ev-1', Buffer.from('{"a":1}'), 'edge', events);
    expect(own.take('ev-1', Buffer.from('{"a":1}'))).toEqual({ value: Buffer.from('{"a":1}'), agent: 'edge', events });
    expect(own.take('ev-1', Buffer.from('{"a":1}'))).toBeUndefined();
    // A resent batch has the same ids but another value (its time): it is parsed from the log.
    own.keep('ev-1', Buffer.from('{"a":2}'), 'edge', events);
    expect(own.take('ev-1', Buffer.from('{"a":1}'))).toBeUndefined();
    expect(own.take('ev-1', Buffer.from('{"a":2}'))).toBeUndefined();
  });

  it('forgets what was not produced, and the oldest past its size', () => {
    const own = new OwnEvents();
    own.keep('x', Buffer.from('x'), 'edge', events);
    own.drop('x');
    expect(own.take('x', Buffer.from('x'))).toBeUndefined();
    const big = Buffer.alloc(9 * 1024 * 1024);
    own.keep('first', big, 'edge', events);
    own.keep('second', big, 'edge', events);
    expect(own.take('first', big)).toBeUndefined();
    expect(own.take('second', big)?.events).toBe(events);
  });
});
