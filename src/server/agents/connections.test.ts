import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { AgentCall } from '../module.js';
import { AgentConnections } from './connections.js';

const call = (version: string) => {
  const metadata = new grpc.Metadata();
  metadata.set('verdict-version', version);
  return { metadata } as unknown as AgentCall;
};

describe('AgentConnections', () => {
  it('is connected while a call is open, since the first; not connected since the last ended', async () => {
    const c = new AgentConnections((id) => (id === 1 ? 'edge' : undefined));
    expect(c.status('edge')).toBeUndefined();
    const endA = c.add(1, call('0.1.0'));
    const since = c.status('edge')!.since;
    await new Promise((r) => setTimeout(r, 5));
    const endB = c.add(1, call('0.1.1'));
    expect(c.status('edge')).toEqual({ connected: true, since, version: '0.1.1' });
    endA();
    endA();
    expect(c.status('edge')!.connected).toBe(true);
    endB();
    const after = c.status('edge')!;
    expect(after.connected).toBe(false);
    expect(after.since > since).toBe(true);
    expect(c.tokenIds()).toEqual([]);
  });
});
