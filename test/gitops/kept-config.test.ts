import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/server.js';
import { startServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { type ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, type VerdictProcess } from '../helpers/processes.js';
import { apiOf, manifestProject, namespaceYaml, serverSettings, startGitopsServer, untilSync } from './harness.js';

// GitOps does not start from the configuration the agent kept (module.ts
// startsFromKept): an agent restarted while the server is unreachable applies
// and prunes nothing, and once the server is back it synchronises the same
// commit again without deleting or re-creating anything. With the server
// reachable and config.yaml changed while the agent was down, GitOps never
// runs the kept block: the server would answer it for the configuration it
// served last, not the kept one. Real server, real API server.

const dir = tempDir('verdict-gitops-kept-');
const log = createRootLogger({ level: 'warn' });
let kube: Kube;
let server: RunningServer | undefined;
let app: ConfigProject;
let configProject: ConfigProject;
let proc: VerdictProcess | undefined;
let reader = '';
let ports: { grpc_addr: string; http_addr: string };
const tokenFile = join(dir, 'agent-token');

beforeAll(async () => {
  kube = await startKube();
  app = manifestProject(dir, 'group/app');
  ports = { grpc_addr: `127.0.0.1:${await freePort()}`, http_addr: `127.0.0.1:${await freePort()}` };
  const started = await startGitopsServer(dir, log, {
    agentConfig: [
      'gitops:',
      '  manifest_projects:',
      '    - id: group/app',
      '      default_namespace: kept',
      '      paths: [{glob: "manifests/**/*.yaml"}]',
      '',
    ].join('\n'),
    settings: ports,
  });
  server = started.server;
  configProject = started.config;
  writeFileSync(tokenFile, `${started.token}\n`);
  reader = server.tokens.create('kept-test', 'read').token;
}, 300_000);

afterAll(async () => {
  await killAll();
  await server?.close();
  await kube?.stop();
});

const agent = (): VerdictProcess =>
  spawnVerdict(
    [
      'agent',
      `--kas-address=grpc://${ports.grpc_addr}`,
      `--token-file=${tokenFile}`,
      `--data-dir=${join(dir, 'agent')}`,
      `--kubeconfig=${kube.kubeconfig}`,
      '--observability-addr=',
      '--reconnect-initial=100ms',
      '--reconnect-max=500ms',
    ],
    'agent',
  );

const cms = (names: string[]) => names.map((n) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${n}\n  labels: {batch: kept}\n`).join('---\n');

/** The test's ConfigMaps in the namespace, name to uid. */
async function live(): Promise<Map<string, string>> {
  const r = await kube.kubectl(['get', 'configmaps', '-n', 'kept', '-l', 'batch', '-o', 'json'], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return new Map((JSON.parse(r.stdout) as { items: { metadata: { name: string; uid: string } }[] }).items.map((i) => [i.metadata.name, i.metadata.uid]));
}

const keptMsg = 'Config: running the kept configuration (the last one the server served) until the server serves one';
const servedMsg = 'Config: the server served a configuration; it replaces the kept one (modules whose block is unchanged keep running)';
/** Index in `proc`'s logs of the first line `match` takes; -1 when none. */
const at = (p: VerdictProcess, match: (l: { msg: string; mod_name?: unknown }) => boolean) => p.logs.findIndex(match);

describe('GitOps and the kept configuration', () => {
  it('does not start from it while the server is unreachable, then synchronises the same commit again without deleting anything', async () => {
    const commit = app.commit({ 'manifests/ns.yaml': namespaceYaml('kept'), 'manifests/cms.yaml': cms(['a', 'b', 'c']) });
    proc = agent();
    const project = () => apiOf(server!, reader).project('group/app');
    await untilSync(project, commit, true, 90_000, 'the first sync');
    const before = await live();
    expect([...before.keys()].sort()).toEqual(['a', 'b', 'c']);
    await proc.kill('SIGTERM');
    await server!.close();
    server = undefined;

    proc = agent();
    await proc.waitForLog((l) => l.msg === keptMsg, 20_000, 'the kept configuration');
    await proc.waitForLog((l) => l.msg === 'Verdict agent started', 20_000, 'the agent started');
    // Given time to start, were it to: GitOps is not started from the kept configuration.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(at(proc, (l) => l.msg === 'Starting module' && l.mod_name === 'gitops')).toBe(-1);
    expect(await live()).toEqual(before);

    server = await startServer(serverSettings(dir, ports), log);
    await proc.waitForLog((l) => l.msg === servedMsg, 20_000, 'the served configuration');
    const synced = await proc.waitForLog((l) => l.msg === 'Objects synchronized' && l.commit_id === commit, 120_000, 'the sync once the server is back');
    expect(synced.pruned).toBe(0);
    // Not deleted and created again: every object keeps its uid.
    expect(await live()).toEqual(before);
    await until(async () => ((await project())?.commit_id === commit ? true : undefined), 20_000, 'the sync status');
  }, 400_000);

  it('with the server reachable and config.yaml changed while the agent was down, never runs the kept block', async () => {
    await proc!.kill('SIGTERM');
    // While the agent is down: the entry now manages other paths of the project.
    const next = app.commit({ 'next/ns.yaml': namespaceYaml('kept'), 'next/cms.yaml': cms(['d']) });
    configProject.commit({
      '.gitlab/agents/edge/config.yaml': [
        'gitops:',
        '  manifest_projects:',
        '    - id: group/app',
        '      default_namespace: kept',
        '      paths: [{glob: "next/**/*.yaml"}]',
        '',
      ].join('\n'),
    });

    proc = agent();
    await proc.waitForLog((l) => l.msg === keptMsg, 20_000, 'the kept configuration');
    // The new entry is applied (d) and what only the old one managed pruned.
    await until(async () => ((await live()).has('d') && (await live()).size === 1 ? true : undefined), 120_000, 'the sync of the new paths');
    // GitOps started from served configurations only: none before the first the server served.
    const firstServed = at(proc, (l) => l.msg === 'Config: applying new configuration');
    expect(firstServed).toBeGreaterThanOrEqual(0);
    expect(at(proc, (l) => l.msg === 'Starting module' && l.mod_name === 'gitops')).toBeGreaterThan(firstServed);
    expect(proc.logs.some((l) => l.msg === 'Objects synchronized' && l.commit_id === next)).toBe(true);
  }, 300_000);
});
