import { describe, expect, it } from 'vitest';
import { freePort } from '../../../test/helpers/processes.js';
import { startFalcoGrpcPeer } from './falco-grpc-peer.js';

describe('Falco gRPC peer', () => {
  // grpc-js sets SO_REUSEPORT unless told not to: two peers bound one port and the kernel split the agent's calls between them.
  it('refuses an address another peer listens on', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const first = await startFalcoGrpcPeer({ address });
    try {
      await expect(startFalcoGrpcPeer({ address })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
