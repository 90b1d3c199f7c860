import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseAgentConfig } from '../../src/shared/config/agent-config.js';
import { parseYamlConfig } from '../../src/shared/config/schema.js';
import { serverConfigSchema } from '../../src/shared/config/server-config.js';
import { REPO, verdictSync } from '../helpers/processes.js';

// deploy/ must parse and agree with the CLI: every flag a manifest passes must
// be one the command's --help lists, and embedded config files must validate.

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: { template?: { spec: { containers: { name: string; args?: string[] }[]; serviceAccountName?: string } } };
  data?: Record<string, string>;
  rules?: { verbs: string[] }[];
}

function load(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) expect(d.errors, `${file}: ${d.errors.map((e) => e.message).join('; ')}`).toEqual([]);
  return docs.map((d) => d.toJS() as K8sObject).filter(Boolean);
}

const manifests = ['deploy/agent/agent.yaml', 'deploy/server/server.yaml'];

describe('deploy manifests', () => {
  const helpCache = new Map<string, string>();
  const help = (cmd: string) => {
    if (!helpCache.has(cmd)) helpCache.set(cmd, verdictSync([cmd, '--help']));
    return helpCache.get(cmd)!;
  };

  it.each(manifests)('%s parses and passes only flags the CLI knows', (file) => {
    const objs = load(join(REPO, file));
    const deployments = objs.filter((o) => o.kind === 'Deployment');
    expect(deployments.length).toBeGreaterThan(0);
    for (const d of deployments) {
      for (const c of d.spec!.template!.spec.containers) {
        const [cmd, ...args] = c.args ?? [];
        expect(['agent', 'server']).toContain(cmd);
        for (const a of args) {
          const flag = /^(--[a-z-]+)/.exec(a)?.[1];
          expect(flag, `${file}: ${a}`).toBeDefined();
          expect(help(cmd!), `${file}: ${flag} is not a flag of verdict ${cmd}`).toContain(`${flag} `);
        }
      }
    }
  });

  it('runs the agent with the flags operators of the original know', () => {
    const objs = load(join(REPO, 'deploy/agent/agent.yaml'));
    const args = objs.find((o) => o.kind === 'Deployment')!.spec!.template!.spec.containers[0]!.args!;
    expect(args.some((a) => a.startsWith('--kas-address=grpc'))).toBe(true);
    expect(args.some((a) => a.startsWith('--token-file='))).toBe(true);
    expect(objs.map((o) => o.kind)).toEqual(expect.arrayContaining(['Namespace', 'ServiceAccount', 'Secret', 'ClusterRole', 'ClusterRoleBinding', 'Deployment']));
    // RBAC: reading network policies only.
    const role = objs.find((o) => o.kind === 'ClusterRole')!;
    expect(new Set(role.rules!.flatMap((r) => r.verbs))).toEqual(new Set(['get', 'list', 'watch']));
  });

  it('embeds a server config that validates', () => {
    const cm = load(join(REPO, 'deploy/server/server.yaml')).find((o) => o.kind === 'ConfigMap')!;
    expect(parseYamlConfig(cm.data!['server.yaml']!, 'server.yaml', serverConfigSchema).value.grpc_addr).toBe('0.0.0.0:8150');
  });

  it('ships example configs that validate', () => {
    const dir = join(REPO, 'deploy/examples');
    expect(readdirSync(dir).sort()).toEqual(['agent-config.yaml', 'server.yaml']);
    expect(parseAgentConfig(readFileSync(join(dir, 'agent-config.yaml'), 'utf8'), 'agent-config.yaml').warnings).toEqual([]);
    parseYamlConfig(readFileSync(join(dir, 'server.yaml'), 'utf8'), 'server.yaml', serverConfigSchema);
  });
});
