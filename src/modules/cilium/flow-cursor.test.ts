import { describe, expect, it } from 'vitest';
import type { Flow } from '../../gen/flow/flow.js';
import { openDatabase } from '../../shared/sqlite/open.js';
import { flow, pod } from './policy/testing.js';
import { FlowCursor } from './flow-cursor.js';

const T0 = 1_700_000_000;

function at(uuid: string, seconds: number, nanos = 0): Flow {
  const f = flow({ src: pod('shop', 'app=frontend', '10.0.0.1'), dst: pod('shop', 'app=payments', '10.0.0.2') });
  f.uuid = uuid;
  f.time = { seconds: T0 + seconds, nanos };
  return f;
}

describe('FlowCursor', () => {
  it('starts with new flows, then resumes at the newest flow time', () => {
    const c = new FlowCursor(openDatabase(':memory:'), 'relay:4245');
    expect(c.since).toBeUndefined();
    c.advance(at('a', 10, 500));
    c.advance(at('late', 9));
    expect(c.since).toEqual({ seconds: T0 + 10, nanos: 500 });
  });

  it('keeps a flow that arrives after newer ones (Relay only roughly sorts)', () => {
    const c = new FlowCursor(openDatabase(':memory:'), 'relay:4245');
    expect(c.advance(at('new', 10))).toBe(true);
    expect(c.advance(at('late', 8))).toBe(true);
    expect(c.advance(at('very-late', -60))).toBe(true);
  });

  it('skips the boundary flows a resumed stream sends again', () => {
    const c = new FlowCursor(openDatabase(':memory:'), 'relay:4245');
    for (const f of [at('a', 1), at('b', 4), at('c', 4)]) expect(c.advance(f)).toBe(true);
    const replay = [at('b', 4), at('c', 4), at('d', 4), at('e', 5)];
    expect(replay.map((f) => c.advance(f))).toEqual([false, false, true, true]);
  });

  it('after a restart resumes at the saved position and skips the flows seen at it', () => {
    const db = openDatabase(':memory:');
    const c = new FlowCursor(db, 'relay:4245');
    c.advance(at('a', 1));
    c.advance(at('b', 7, 9));
    c.advance(at('c', 7, 9));
    c.persist();
    const again = new FlowCursor(db, 'relay:4245');
    expect(again.since).toEqual({ seconds: T0 + 7, nanos: 9 });
    expect([at('b', 7, 9), at('c', 7, 9), at('d', 7, 9)].map((f) => again.advance(f))).toEqual([false, false, true]);
    expect(new FlowCursor(db, 'other:4245').since).toBeUndefined();
  });

  it('keeps the saved position once held, so a restart reads the flows after it again', () => {
    const db = openDatabase(':memory:');
    const c = new FlowCursor(db, 'relay:4245');
    c.advance(at('a', 1));
    c.persist();
    c.advance(at('b', 2));
    c.hold();
    c.persist();
    expect(new FlowCursor(db, 'relay:4245').since).toEqual({ seconds: T0 + 1, nanos: 0 });
  });
});
