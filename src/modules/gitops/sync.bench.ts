import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBenchKube } from '../../bench/kube.js';
import { inventoryRef } from './inventory.js';
import { KubeApi } from './kube/api.js';
import { Discovery } from './kube/discovery.js';
import { type SyncSettings, synchronize } from './sync.js';

// A sync of 1,000 objects (ten files of 100 ConfigMaps) into a real API server
// (scripts/kube.sh), first apply and an unchanged re-apply, against `kubectl
// apply --server-side` of the same files into another namespace of the same
// server, in the same run. Targets (issue 15): not slower than kubectl, and
// the unchanged re-apply under 5 s.

const OBJECTS = 1000;
const PER_FILE = 100;

function manifests(): { source: string; data: Buffer }[] {
  const files: { source: string; data: Buffer }[] = [];
  for (let f = 0; f < OBJECTS / PER_FILE; f++) {
    const docs: string[] = [];
    for (let i = 0; i < PER_FILE; i++) {
      const n = f * PER_FILE + i;
      docs.push(
        `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${n}\n  labels: {app: bench, shard: "s${f}"}\ndata:\n  index: "${n}"\n  payload: "${'x'.repeat(200)}"\n`,
      );
    }
    files.push({ source: `manifests/f${f}.yaml`, data: Buffer.from(docs.join('---\n')) });
  }
  return files;
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [performance.now() - t, r];
}

export default async function bench(): Promise<void> {
  const kube = startBenchKube('verdict-bench-gitops-');
  if (!kube) return;
  const { stateDir: state } = kube;
  const api = new KubeApi({
    server: kube.server,
    requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.token}` } }),
  });
  try {
    const k = (...args: string[]) => kube.kubectl(args);
    await k('create', 'namespace', 'bench-verdict');
    await k('create', 'namespace', 'bench-kubectl');
    const files = manifests();
    const dir = join(state, 'manifests');
    mkdirSync(dir);
    for (const f of files) writeFileSync(join(dir, f.source.split('/')[1]!), f.data);

    const settings: SyncSettings = {
      defaultNamespace: 'bench-verdict',
      dryRun: 'none',
      prune: true,
      pruneTimeoutMs: 60_000,
      propagation: 'background',
      inventoryPolicy: 'must_match',
      reconcileTimeoutMs: 60_000,
    };
    // As the agent's worker does: what it applied is remembered between syncs of a project.
    const lastApplied = new Map<string, { hash: string; resourceVersion: string }>();
    const sync = () =>
      synchronize(files, 'bench', settings, { api, discovery: new Discovery(api), inventory: inventoryRef('bench', 'bench', 'bench-verdict'), lastApplied });
    const [first, r1] = await time(sync);
    const [again, r2] = await time(sync);
    if (r1.changed !== OBJECTS || r2.unchanged !== OBJECTS)
      throw new Error(`unexpected results: first changed ${r1.changed}, re-apply unchanged ${r2.unchanged}`);
    const apply = () => k('apply', '--server-side', '--field-manager=bench', '-n', 'bench-kubectl', '-f', dir);
    const [kFirst] = await time(apply);
    const [kAgain] = await time(apply);
    const row = (what: string, ms: number, base: number) =>
      console.log(`| ${what} | ${(ms / 1000).toFixed(2)} s | ${(base / 1000).toFixed(2)} s | ${(base / ms).toFixed(1)}x |`);
    console.log(`${OBJECTS} ConfigMaps in ${files.length} files; Verdict sync (plan, apply, wait, inventory) vs kubectl apply --server-side, same API server`);
    console.log('| run | verdict | kubectl | speed-up |\n|---|---|---|---|');
    row('first apply', first, kFirst);
    row('unchanged re-apply', again, kAgain);
    console.log(`unchanged re-apply under 5 s: ${again < 5000 ? 'yes' : 'NO'}; not slower than kubectl: ${first <= kFirst && again <= kAgain ? 'yes' : 'NO'}`);
  } finally {
    api.close();
    kube.stop();
  }
}
