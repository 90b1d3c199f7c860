import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/server.js';
import { startServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { type ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, type VerdictProcess } from '../helpers/processes.js';
import { apiOf, manifestProject, namespaceYaml, serverSettings, startGitopsServer, untilSync } from './harness.js';

// GitOps started from the configuration the agent kept (it restarted while the
// server was unreachable): with no manifests from the server it applies and
// prunes nothing, and once the server is back it synchronises the same commit
// again without deleting or re-creating anything. Real server, real API server.

const dir = tempDir('verdict-gitops-kept-');
const log = createRootLogger({ level: 'warn' });
let kube: Kube;
let server: RunningServer | undefined;
let app: ConfigProject;
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

describe('GitOps from the kept configuration while the server is unreachable', () => {
  it('applies and prunes nothing without the server, then synchronises the same commit again without deleting anything', async () => {
    const commit = app.commit({ 'manifests/ns.yaml': namespaceYaml('kept'), 'manifests/cms.yaml': cms(['a', 'b', 'c']) });
    let proc = agent();
    const project = () => apiOf(server!, reader).project('group/app');
    await untilSync(project, commit, true, 90_000, 'the first sync');
    const before = await live();
    expect([...before.keys()].sort()).toEqual(['a', 'b', 'c']);
    await proc.kill('SIGTERM');
    await server!.close();
    server = undefined;

    proc = agent();
    await proc.waitForLog(
      (l) => l.msg === 'Config: running the kept configuration (the last one the server served) until the server serves one',
      20_000,
      'the kept configuration',
    );
    await proc.waitForLog((l) => l.msg === 'Starting module' && l.mod_name === 'gitops', 20_000, 'GitOps started from it');
    // It asked the server for manifests and got none: nothing was synchronised, nothing left the cluster.
    await proc.waitForLog((l) => l.msg === 'GitOps: failed to get objects to synchronize', 30_000, 'the objects stream to fail');
    expect(proc.logs.filter((l) => /^(Synchronizing objects|Objects synchronized|Pruning)/.test(l.msg))).toEqual([]);
    expect(await live()).toEqual(before);

    server = await startServer(serverSettings(dir, ports), log);
    await proc.waitForLog((l) => l.msg.startsWith('Config: the server served a configuration; it replaces the kept one'), 20_000, 'the served configuration');
    const synced = await proc.waitForLog((l) => l.msg === 'Objects synchronized' && l.commit_id === commit, 120_000, 'the sync once the server is back');
    expect(synced.pruned).toBe(0);
    // Not deleted and created again: every object keeps its uid.
    expect(await live()).toEqual(before);
    await until(async () => ((await project())?.commit_id === commit ? true : undefined), 20_000, 'the sync status');
  }, 400_000);
});
