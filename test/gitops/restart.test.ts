import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { type ConfigProject, killAll, tempDir, until, type VerdictProcess } from '../helpers/processes.js';
import { apiOf, inventoryKeys, manifestProject, namespaceYaml, spawnAgent, startGitopsServer, untilSync } from './harness.js';

// A `verdict agent` process killed (SIGKILL) in the middle of a sync of many
// objects, then started again on the same data dir: the next sync finishes the
// commit, and the cluster ends as the commit says. Nothing lost (every object
// there), nothing duplicated or re-created (objects that existed keep their
// uid), no spurious prune (only what left the commit is deleted), and the
// inventory holds exactly the commit's objects. Real server, real API server.

// Enough that the sync is still applying when the test sees the first of them (a first apply of 1,000 takes seconds here).
const NEW = 1000;
const dir = tempDir('verdict-gitops-restart-');
let kube: Kube;
let server: RunningServer;
let app: ConfigProject;
let reader = '';
const tokenFile = join(dir, 'agent-token');

beforeAll(async () => {
  kube = await startKube();
  app = manifestProject(dir, 'group/app');
  const started = await startGitopsServer(dir, createRootLogger({ level: 'warn' }), {
    agentConfig: [
      'gitops:',
      '  manifest_projects:',
      '    - id: group/app',
      '      default_namespace: restart',
      '      paths: [{glob: "manifests/**/*.yaml"}]',
      '',
    ].join('\n'),
  });
  server = started.server;
  writeFileSync(tokenFile, `${started.token}\n`);
  reader = server.tokens.create('restart-test', 'read').token;
}, 300_000);

afterAll(async () => {
  await killAll();
  await server?.close();
  await kube?.stop();
});

const agent = (): VerdictProcess => spawnAgent(server, kube, tokenFile, join(dir, 'agent'));

const cms = (prefix: string, from: number, to: number) =>
  Array.from(
    { length: to - from },
    (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${prefix}-${from + i}\n  labels: {batch: ${prefix}}\ndata:\n  v: "${from + i}"\n`,
  ).join('---\n');

const project = () => apiOf(server, reader).project('group/app');

const synced = (commit: string, timeoutMs: number) => untilSync(project, commit, true, timeoutMs, `commit ${commit} synchronized`);

interface Live {
  metadata: { name: string; uid: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

/** The ConfigMaps of the test's batches in the namespace (not the inventory, not kube-root-ca.crt), by name. */
async function live(): Promise<Map<string, Live>> {
  const r = await kube.kubectl(['get', 'configmaps', '-n', 'restart', '-l', 'batch', '-o', 'json'], { timeoutMs: 60_000 });
  if (r.code !== 0) return new Map();
  return new Map((JSON.parse(r.stdout) as { items: Live[] }).items.map((i) => [i.metadata.name, i]));
}

const inventory = () => inventoryKeys(kube, 'restart', 'inventory-edge-group-app');

const keys = (names: string[]) => names.map((n) => `restart_${n}__ConfigMap`);
const range = (prefix: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${prefix}-${from + i}`);

describe('GitOps: the agent restarted mid-sync', () => {
  it('finishes the commit after a SIGKILL: nothing lost, duplicated or wrongly pruned; the inventory exact', async () => {
    // Commit 1, synced: the namespace and ten ConfigMaps.
    const first = app.commit({ 'manifests/ns.yaml': namespaceYaml('restart'), 'manifests/old.yaml': cms('old', 0, 10) });
    let proc = agent();
    await synced(first, 90_000);
    const before = await live();
    expect([...before.keys()].sort()).toEqual(range('old', 0, 10).sort());

    // Commit 2: old-0..4 leave, old-5..9 change, NEW ConfigMaps arrive; slow enough to be killed halfway.
    const second = app.commit({ 'manifests/old.yaml': cms('old', 5, 10).replaceAll('v: "', 'v: "2-'), 'manifests/new.yaml': cms('new', 0, NEW) });
    await until(
      async () => {
        const n = [...(await live()).keys()].filter((k) => k.startsWith('new-')).length;
        return n >= 20 ? n : undefined;
      },
      120_000,
      'the second sync under way',
    );
    await proc.kill('SIGKILL');
    const atKill = await live();
    const newAtKill = [...atKill.keys()].filter((k) => k.startsWith('new-'));
    expect(newAtKill.length, 'the sync finished before the kill: make it slower (more objects)').toBeLessThan(NEW);
    expect((await project())?.commit_id).toBe(first);
    // Written before the apply began: the objects of both commits, so none the kill left behind is unknown to the inventory.
    expect(await inventory()).toEqual(['_restart__Namespace', ...keys([...range('old', 0, 10), ...range('new', 0, NEW)])].sort());

    // The same agent again, same data dir: it syncs the commit from the start.
    proc = agent();
    const done = await synced(second, 180_000);
    expect(done).toMatchObject({ applied: 1 + 5 + NEW, pruned: 5, failed: 0 });
    expect(proc.logs.some((l) => l.msg === 'Objects synchronized' && l.commit_id === second && l.pruned === 5)).toBe(true);

    const after = await live();
    const want = [...range('old', 5, 10), ...range('new', 0, NEW)];
    expect([...after.keys()].sort()).toEqual(want.sort());
    for (const [name, o] of after) {
      expect(o.metadata.annotations?.['config.k8s.io/owning-inventory'], name).toBe('edge-group-app');
      expect(o.data?.v, name).toBe(name.startsWith('old-') ? `2-${name.slice(4)}` : name.slice(4));
    }
    // Not deleted and created again: what existed keeps its uid (old ones from commit 1, new ones from before the kill).
    for (const name of range('old', 5, 10)) expect(after.get(name)?.metadata.uid, name).toBe(before.get(name)?.metadata.uid);
    for (const name of newAtKill) expect(after.get(name)?.metadata.uid, name).toBe(atKill.get(name)?.metadata.uid);
    expect(await inventory()).toEqual(['_restart__Namespace', ...keys(want)].sort());
  }, 600_000);
});
