import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// First import of this file: the registry must load on its own, though its modules' server parts import the agent-config loader, which reads the registry.
import { serverModules } from './modules.js';
import { parseAgentConfig } from './config/agent-config.js';
import { ALERT_SOURCES } from '../shared/alert/payload.js';

describe('server module registry', () => {
  it('loads when imported before anything else, and config.yaml knows the modules it names', () => {
    expect(serverModules.map((m) => m.name)).toEqual(expect.arrayContaining(['cilium', 'falco', 'gitops', 'ci_access']));
    expect(Object.keys(parseAgentConfig('gitops: {}\nci_access: {}\n', 'config.yaml').value).sort()).toEqual(['ci_access', 'gitops']);
  });

  it('has one module declaring each alert source, with the names webhooks give its alerts', () => {
    const declared = serverModules.flatMap((m) => (m.alertSource ? [m.alertSource.source] : []));
    expect(declared.sort()).toEqual([...ALERT_SOURCES].sort());
    for (const m of serverModules) if (m.alertSource) expect(m.alertSource.monitoringTool).toMatch(/^Verdict \(.+\)$/);
  });

  it('is the only way the server core reaches a module, and the core imports nothing from the CLI', () => {
    const core = dirname(fileURLToPath(import.meta.url));
    const src = dirname(core);
    const crossings: string[] = [];
    for (const f of readdirSync(core, { recursive: true, encoding: 'utf8' })) {
      if (!/\.ts$/.test(f) || /\.(test|bench)\.ts$/.test(f)) continue;
      const text = readFileSync(join(core, f), 'utf8');
      for (const [, spec] of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
        const to = relative(src, resolve(core, dirname(f), spec!));
        if (to.startsWith('cli/') || (to.startsWith('modules/') && f !== 'modules.ts')) crossings.push(`${f} -> ${to}`);
      }
    }
    expect(crossings).toEqual([]);
  });
});
