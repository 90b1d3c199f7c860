import { describe, expect, it } from 'vitest';
// First import of this file: the registry must load on its own, though its modules' server parts import the agent-config loader, which reads the registry.
import { serverModules } from './modules.js';
import { parseAgentConfig } from './config/agent-config.js';

describe('server module registry', () => {
  it('loads when imported before anything else, and config.yaml knows the modules it names', () => {
    expect(serverModules.map((m) => m.name)).toEqual(expect.arrayContaining(['cilium', 'falco', 'gitops', 'ci_access']));
    expect(Object.keys(parseAgentConfig('gitops: {}\nci_access: {}\n', 'config.yaml').value).sort()).toEqual(['ci_access', 'gitops']);
  });
});
