import { afterEach, describe, expect, it, vi } from 'vitest';
import { StreamRegistry } from '../../src/server/tunnel/grpc-service.js';

// The server keeps what an agent runs for a while after its configuration
// stream closed, so a reconnect after a blip finds it again. That is for a
// blip: an agent deleted, or gone to another replica for good, must not hold
// its entry for the server's lifetime, and one back after longer is treated as
// one the server does not know (it serves from the registered project, or
// holds until it sends a configuration). The clock is faked: an hour is not
// waited for.

const agent = (name: string) => ({ id: 1, name, created_at: '2026-12-07T00:00:00.000Z' });

/** An agent sent a configuration from `project` at `commit`, whose configuration stream then closed. */
function servedThenLeft(r: StreamRegistry, name: string, project: string, commit: string): void {
  const untrack = r.addConfigStream(name, project, () => {});
  r.servedFrom(agent(name), project, commit);
  untrack();
}

afterEach(() => vi.useRealTimers());

describe('an agent that left', () => {
  it('is found again when it comes back running the commit it was sent, soon after', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const r = new StreamRegistry();
    servedThenLeft(r, 'edge', '/p1', 'c1');
    vi.advanceTimersByTime(60_000);
    r.configStreamOpened(agent('edge'), 'c1');
    expect(r.servedConfig(agent('edge'))).toEqual({ project: '/p1', commit: 'c1' });
  });

  it('is forgotten after an hour', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const r = new StreamRegistry();
    servedThenLeft(r, 'edge', '/p1', 'c1');
    vi.advanceTimersByTime(3600_000 + 1);
    r.configStreamOpened(agent('edge'), 'c1');
    expect(r.servedConfig(agent('edge'))).toBeUndefined();
  });
});
