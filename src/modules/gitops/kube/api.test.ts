import { Agent } from 'node:https';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Kube, startKube } from '../../../../test/helpers/kube.js';
import { kubeConnection } from '../../../agent/kubernetes/connection.js';
import { KubeApi } from './api.js';

// The agent's real connection (a kubeconfig read by the client library) to a
// real API server: requests share keep-alive TLS connections. The library
// hands a new https.Agent out with each request's options; a sync of 1,000
// objects paid 1,000 TLS handshakes when it was used.

let kube: Kube;

beforeAll(async () => {
  kube = await startKube();
}, 300_000);

afterAll(async () => {
  await kube?.stop();
});

describe('KubeApi over the agent connection', () => {
  it('reuses its TLS connections across requests', async () => {
    const api = new KubeApi(kubeConnection({ kubeconfig: kube.kubeconfig }));
    const opened = vi.spyOn(Agent.prototype, 'createConnection');
    try {
      for (let round = 0; round < 5; round++)
        await Promise.all(Array.from({ length: 4 }, () => api.request({ method: 'GET', path: '/api/v1/namespaces/default' })));
      // 20 requests, at most 4 at a time.
      expect(opened.mock.calls.length).toBeLessThanOrEqual(4);
    } finally {
      opened.mockRestore();
      api.close();
    }
  });
});
