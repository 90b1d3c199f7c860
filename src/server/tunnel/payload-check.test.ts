import { describe, expect, it } from 'vitest';
import { ciliumPayload, falcoPayload } from '../store/test-payloads.js';
import { AGENT_SOURCES, checkPayload, LOG_SOURCES } from './payload-check.js';

// The sources an agent may send are those whose module's agent part sends
// them (alertSource.fromAgent in the server registry): alerts the server
// raises itself stay out of an agent's reach.

describe('checkPayload', () => {
  it("takes the agents' Cilium and Falco alerts and refuses a GitOps one from an agent, which the Kafka log carries", () => {
    expect(AGENT_SOURCES).toEqual(['cilium', 'falco']);
    expect(checkPayload(ciliumPayload())).toBeUndefined();
    expect(checkPayload(falcoPayload())).toBeUndefined();
    const gitops = { ...ciliumPayload(), source: 'gitops' };
    expect(checkPayload(gitops)).toBe('source must be cilium or falco, got "gitops"');
    expect(checkPayload(gitops, LOG_SOURCES)).toBeUndefined();
  });
});
