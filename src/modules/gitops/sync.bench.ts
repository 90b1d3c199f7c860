import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { kubeConnection } from '../../agent/kubernetes/connection.js';
import { type BenchKube, startBenchKube } from '../../bench/kube.js';
import { processCpuMs } from '../../bench/proc.js';
import * as inventoryMod from './inventory.js';
import * as apiMod from './kube/api.js';
import * as discoveryMod from './kube/discovery.js';
import * as syncMod from './sync.js';
import type { SyncSettings } from './sync.js';

// A sync of 1,000 objects (ten files of 100 ConfigMaps) into a real API server
// (scripts/kube.sh), first apply and an unchanged re-apply, against `kubectl
// apply --server-side` of the same files, on the same server in the same run.
// Targets: a first apply not slower than kubectl's, an unchanged
// re-apply under 5 s.
//
// The machine is shared and CPU-bound (etcd runs without fsync), so one
// timing says little: each round applies into fresh namespaces, the order of
// the contenders rotates between rounds (the first writes after start-up are
// the slowest), medians are reported, and so is CPU per object of each
// process: the client (Verdict's process, or kubectl's), kube-apiserver, etcd.
//
// VERDICT_BENCH_GITOPS_BASELINE=<checkout> adds that checkout's build as a
// third contender, e.g. the commit before a change:
//   git worktree add /tmp/old-gitops <rev> && (cd /tmp/old-gitops && ln -s /work/main/node_modules && npx tsc -p tsconfig.build.json)
// VERDICT_BENCH_ROUNDS (default 3) sets the rounds.

const OBJECTS = 1000;
const PER_FILE = 100;
const ROUNDS = Number(process.env.VERDICT_BENCH_ROUNDS ?? 3);

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

/** CPU (ms) of the processes a run uses; children: kubectl, counted once it has exited. */
function cpu(kube: BenchKube): { client: number; children: number; apiserver: number; etcd: number } {
  const u = process.cpuUsage();
  // cutime and cstime: the 14th and 15th fields after the command name.
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  const tick = 1000 / Number(process.env.VERDICT_BENCH_CLK_TCK ?? 100);
  return {
    client: (u.user + u.system) / 1000,
    children: (Number(f[13]) + Number(f[14])) * tick,
    apiserver: processCpuMs(kube.pids.apiserver),
    etcd: processCpuMs(kube.pids.etcd),
  };
}

interface Sample {
  wallMs: number;
  clientMs: number;
  apiserverMs: number;
  etcdMs: number;
}

async function measure(kube: BenchKube, fn: () => Promise<unknown>): Promise<Sample> {
  const c0 = cpu(kube);
  const t = performance.now();
  await fn();
  const wallMs = performance.now() - t;
  const c1 = cpu(kube);
  return {
    wallMs,
    clientMs: c1.client - c0.client + (c1.children - c0.children),
    apiserverMs: c1.apiserver - c0.apiserver,
    etcdMs: c1.etcd - c0.etcd,
  };
}

interface Contender {
  name: string;
  /** Applies the files into a namespace of its own; called twice per round (first apply, re-apply). */
  round(i: number): () => Promise<void>;
}

type Impl = { sync: typeof syncMod; api: typeof apiMod; discovery: typeof discoveryMod; inventory: typeof inventoryMod };

async function loadBaseline(dir: string): Promise<Impl> {
  const m = (p: string) => import(pathToFileURL(join(resolve(dir), 'dist/modules/gitops', p)).href);
  return { sync: await m('sync.js'), api: await m('kube/api.js'), discovery: await m('kube/discovery.js'), inventory: await m('inventory.js') };
}

function verdict(
  name: string,
  impl: Impl,
  kube: BenchKube,
  files: ReturnType<typeof manifests>,
  k: (...a: string[]) => Promise<unknown>,
): Contender & { close(): void } {
  // The agent's own connection (kubeconfig, credentials read per request), as in production.
  const api = new impl.api.KubeApi(kubeConnection({ kubeconfig: kube.kubeconfig }));
  const tag = name.replace(/[^a-z0-9]+/g, '');
  return {
    name,
    round(i) {
      const ns = `${tag}-${i}`;
      const settings: SyncSettings = {
        defaultNamespace: ns,
        dryRun: 'none',
        prune: true,
        pruneTimeoutMs: 60_000,
        propagation: 'background',
        inventoryPolicy: 'must_match',
        reconcileTimeoutMs: 60_000,
      };
      // As the agent's worker does: what it applied is remembered between syncs of a project.
      const lastApplied = new Map<string, { hash: string; resourceVersion: string }>();
      let created = false;
      return async () => {
        if (!created) await k('create', 'namespace', ns);
        const r = await impl.sync.synchronize(files, 'bench', settings, {
          api,
          discovery: new impl.discovery.Discovery(api),
          inventory: impl.inventory.inventoryRef('bench', ns, ns),
          lastApplied,
        });
        const want = created ? r.unchanged : r.changed;
        if (want !== OBJECTS || r.failed) throw new Error(`${name}: ${created ? 'unchanged' : 'changed'} ${want} of ${OBJECTS}, failed ${r.failed}`);
        created = true;
      };
    },
    close: () => api.close(),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export default async function bench(): Promise<void> {
  const kube = startBenchKube('verdict-bench-gitops-');
  if (!kube) return;
  const closers: (() => void)[] = [];
  try {
    const k = (...args: string[]) => kube.kubectl(args);
    const files = manifests();
    const dir = join(kube.stateDir, 'manifests');
    mkdirSync(dir);
    for (const f of files) writeFileSync(join(dir, f.source.split('/')[1]!), f.data);
    // kubectl's discovery cache filled outside the timings, as a user's would be.
    await k('api-resources', '-o', 'name');

    const contenders: Contender[] = [];
    const current = verdict('verdict', { sync: syncMod, api: apiMod, discovery: discoveryMod, inventory: inventoryMod }, kube, files, k);
    closers.push(current.close);
    contenders.push(current);
    const baselineDir = process.env.VERDICT_BENCH_GITOPS_BASELINE;
    if (baselineDir) {
      const b = verdict('verdict baseline', await loadBaseline(baselineDir), kube, files, k);
      closers.push(b.close);
      contenders.push(b);
    }
    contenders.push({
      name: 'kubectl',
      round(i) {
        const ns = `kubectl-${i}`;
        let created = false;
        return async () => {
          if (!created) await k('create', 'namespace', ns);
          created = true;
          await k('apply', '--server-side', '--field-manager=bench', '-n', ns, '-f', dir);
        };
      },
    });

    const samples = new Map(contenders.map((c) => [c.name, { first: [] as Sample[], again: [] as Sample[] }]));
    console.log(
      `${OBJECTS} ConfigMaps in ${files.length} files, ${ROUNDS} rounds, contenders in rotating order; CPU per object: client / kube-apiserver / etcd`,
    );
    console.log('| round | contender | first apply | CPU/object | re-apply | CPU/object |\n|---|---|---|---|---|---|');
    const perObj = (s: Sample) => `${(s.clientMs / OBJECTS).toFixed(2)} / ${(s.apiserverMs / OBJECTS).toFixed(2)} / ${(s.etcdMs / OBJECTS).toFixed(2)} ms`;
    for (let i = 0; i < ROUNDS; i++) {
      const order = contenders.map((_, j) => contenders[(i + j) % contenders.length]!);
      for (const c of order) {
        const apply = c.round(i);
        // The namespace is created inside the first call: its cost is the same for all and small.
        const first = await measure(kube, apply);
        const again = await measure(kube, apply);
        samples.get(c.name)!.first.push(first);
        samples.get(c.name)!.again.push(again);
        console.log(
          `| ${i + 1} | ${c.name} | ${(first.wallMs / 1000).toFixed(2)} s | ${perObj(first)} | ${(again.wallMs / 1000).toFixed(2)} s | ${perObj(again)} |`,
        );
      }
    }
    const med = (xs: Sample[]): Sample => ({
      wallMs: median(xs.map((x) => x.wallMs)),
      clientMs: median(xs.map((x) => x.clientMs)),
      apiserverMs: median(xs.map((x) => x.apiserverMs)),
      etcdMs: median(xs.map((x) => x.etcdMs)),
    });
    console.log('\nmedians\n| contender | first apply | CPU/object | re-apply | CPU/object |\n|---|---|---|---|---|');
    for (const c of contenders) {
      const s = samples.get(c.name)!;
      const f = med(s.first);
      const a = med(s.again);
      console.log(`| ${c.name} | ${(f.wallMs / 1000).toFixed(2)} s | ${perObj(f)} | ${(a.wallMs / 1000).toFixed(2)} s | ${perObj(a)} |`);
    }
    const v = samples.get('verdict')!;
    const kc = samples.get('kubectl')!;
    const vf = med(v.first).wallMs;
    const kf = med(kc.first).wallMs;
    const va = med(v.again).wallMs;
    console.log(
      `first apply not slower than kubectl (medians): ${vf <= kf ? 'yes' : 'NO'} (${(vf / 1000).toFixed(2)} s vs ${(kf / 1000).toFixed(2)} s); unchanged re-apply under 5 s: ${va < 5000 ? 'yes' : 'NO'}`,
    );
  } finally {
    for (const c of closers) c();
    kube.stop();
  }
}
