// The Cilium module's Kubernetes policy watch (PolicyWatcher feeding the
// policy engine) against a real kube-apiserver from scripts/kube.sh, with the
// project's CRDs (deploy/crds/) and the agent's RBAC (deploy/agent/agent.yaml).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import {
  AGENT_YAML,
  apply,
  attributed,
  ccnp,
  cnp,
  installCrds,
  knp,
  must,
  namespace,
  toDb,
  toMetadata,
  toWeb,
  until,
  watch,
  type Watched,
} from './policies.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let kube: Kube;
const running: Watched[] = [];
const started = (w: Watched) => {
  running.push(w);
  return w;
};

beforeAll(async () => {
  kube = await startKube();
  await apply(kube, namespace('shop'), namespace('db'), namespace('other'));
}, 300_000);

afterAll(async () => {
  for (const w of running) await w.stop();
  await kube?.stop();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

// Scratch files of this file's tests, removed after them.
const scratch = mkdtempSync(join(tmpdir(), 'verdict-kube-test-'));
const tmp = () => mkdtempSync(join(scratch, 'case-'));

/** A kubeconfig for the test server whose user reads its bearer token from tokenFile. */
function tokenFileKubeconfig(tokenFile: string): string {
  const file = join(tmp(), 'kubeconfig');
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'sa',
      clusters: [{ name: 'test', cluster: { server: kube.server, 'certificate-authority': kube.caFile } }],
      users: [{ name: 'sa', user: { tokenFile } }],
      contexts: [{ name: 'sa', context: { cluster: 'test', user: 'sa' } }],
    }),
  );
  return file;
}

async function serviceAccountToken(ns: string, name: string): Promise<string> {
  await must(kube, ['create', 'serviceaccount', name, '-n', ns, '--dry-run=client', '-o', 'json']).then((o) => must(kube, ['apply', '-f', '-'], o));
  return (await must(kube, ['create', 'token', name, '-n', ns, '--duration=1h'])).trim();
}

describe('policy watch against a real API server', () => {
  it('a missing CRD (no Cilium) does not hold back NetworkPolicies, is warned of once per kind and looked for again quietly; once the CRDs are installed their policies arrive', async () => {
    await apply(kube, knp('db-closed', 'db', 'db'));
    const w = started(watch(kube.kubeconfig, { missingKindRecheckMs: 1000 }));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.blame(toDb)).toEqual(['db/db-closed']);
    // Several rechecks of both Cilium kinds, at debug.
    const rechecks = (kind: string) => w.logs.filter((l) => l.level === 'debug' && l.msg.startsWith(`${kind} is still not served`)).length;
    await until(
      () => (rechecks('CiliumNetworkPolicy') >= 3 && rechecks('CiliumClusterwideNetworkPolicy') >= 3) || undefined,
      'three quiet rechecks of each kind',
    );
    const warned = w.logs.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.msg);
    const advice = (kind: string) =>
      `${kind} is not served by this API server (CRD not installed); Kubernetes NetworkPolicies are still followed. For ${kind} policies install Cilium, whose operator installs its CRDs, or apply the CRD from https://github.com/cilium/cilium/tree/main/pkg/k8s/apis/cilium.io/client/crds/v2; checking again every 1 s without logging until it appears`;
    expect(warned.sort()).toEqual([advice('CiliumClusterwideNetworkPolicy'), advice('CiliumNetworkPolicy')]);
    await installCrds(kube);
    await apply(kube, cnp('web-80', 'shop', 'web', ['80']));
    // The watcher looks for the CRD again within its (test-short) recheck interval.
    await attributed(w, toWeb(8080), ['shop/web-80'], 'CNP after the CRD was installed');
    const appeared = () =>
      w.logs
        .filter((l) => l.level === 'info' && / is served by this API server now \(its CRD was installed\); following its policies$/.test(l.msg))
        .map((l) => l.msg.split(' ')[0])
        .sort();
    await until(() => (appeared().length === 2 ? true : undefined), 'an info line for each kind that appeared');
    expect(appeared()).toEqual(['CiliumClusterwideNetworkPolicy', 'CiliumNetworkPolicy']);
    await w.stop();
  });

  it('a policy created, changed or deleted with kubectl changes attribution through the watch, without a relist (CNP, CCNP, NetworkPolicy)', async () => {
    const w = started(watch(kube.kubeconfig));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.blame(toWeb(8080))).toEqual(['shop/web-80']);
    const lists = () => w.logs.filter((l) => l.msg === 'Listed network policies').length;
    const listed = lists();
    // changed: 8080 now allowed
    await apply(kube, cnp('web-80', 'shop', 'web', ['80', '8080']));
    await attributed(w, toWeb(8080), null, 'CNP changed to allow 8080');
    expect(w.blame(toWeb(9090))).toEqual(['shop/web-80']);
    // deleted: nothing selects web any more
    await must(kube, ['delete', 'cnp', 'web-80', '-n', 'shop']);
    await attributed(w, toWeb(9090), null, 'CNP deleted');
    // created again, with the short name's kind
    await apply(kube, cnp('web-443', 'shop', 'web', ['443']));
    await attributed(w, toWeb(9090), ['shop/web-443'], 'CNP created');
    await apply(kube, ccnp('no-metadata', '169.254.169.254/32'));
    await attributed(w, toMetadata, ['no-metadata'], 'CCNP created');
    await must(kube, ['delete', 'ccnp', 'no-metadata']);
    await attributed(w, toMetadata, null, 'CCNP deleted');
    await must(kube, ['delete', 'networkpolicy', 'db-closed', '-n', 'db']);
    await attributed(w, toDb, null, 'NetworkPolicy deleted');
    // Every change came as a watch event: none waited for a list (the watches end only after 300 s).
    expect(lists()).toBe(listed);
    await w.stop();
  });

  it("lists in pages, then watches from the list's resourceVersion", async () => {
    await apply(kube, ...['a', 'b', 'c', 'd', 'e'].map((n) => cnp(`page-${n}`, 'other', n, ['80'])));
    const w = started(watch(kube.kubeconfig, { pageSize: 2, kinds: ['CiliumNetworkPolicy'] }));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    const listed = w.logs.find((l) => l.msg === 'Listed network policies')!;
    // 5 in "other" and web-443 in "shop", in pages of 2: all of them only if every continue token was followed.
    expect(listed.obj.count).toBe(6);
    const first = await until(() => w.logs.find((l) => l.msg === 'Watching network policies'), 'the first watch');
    expect(first.obj.resource_version).toBe(listed.obj.resource_version);
    expect(Number(listed.obj.resource_version)).toBeGreaterThan(0);
    await w.stop();
  });

  it("follows bookmarks: the next watch starts from the bookmark's resourceVersion", async () => {
    // The server sends a bookmark 2 s before a watch's timeout (and about every minute).
    const w = started(watch(kube.kubeconfig, { kinds: ['CiliumClusterwideNetworkPolicy'], watchTimeoutSeconds: 4 }));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    const listedRv = Number(w.logs.find((l) => l.msg === 'Listed network policies')!.obj.resource_version);
    // Writes elsewhere move the cluster's resourceVersion on; only a bookmark tells this watch.
    // The API server's watch cache learns of the new revision when etcd reports progress: at
    // once for a consistent list (as here, from kubectl), else every few minutes. Measured: a
    // watch from the current revision with nothing newer gets no bookmark at all.
    await must(kube, ['create', 'configmap', 'bump', '-n', 'other', '--from-literal=a=b']);
    await must(kube, ['get', 'ccnp']);
    const bookmark = await until(() => w.logs.find((l) => l.msg === 'Policy watch bookmark'), 'a bookmark', 15_000);
    expect(Number(bookmark.obj.resource_version)).toBeGreaterThan(listedRv);
    const rewatch = await until(() => w.logs.filter((l) => l.msg === 'Watching network policies')[1], 'the renewed watch', 15_000);
    expect(rewatch.obj.resource_version).toBe(bookmark.obj.resource_version);
    expect(w.logs.filter((l) => l.msg === 'Listed network policies')).toHaveLength(1);
    await w.stop();
  });

  it('watches only the given namespaces', async () => {
    const w = started(watch(kube.kubeconfig, { namespaces: ['shop'], kinds: ['CiliumNetworkPolicy'] }));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.snapshots.at(-1)!.policies.map((p) => `${p.namespace}/${p.name}`)).toEqual(['shop/web-443']);
    await w.stop();
  });
});

describe("the agent's RBAC (deploy/agent/agent.yaml)", () => {
  it('is enough: a ServiceAccount bound to the ClusterRole lists and watches every policy kind', async () => {
    // The whole manifest applies; its ClusterRole and binding are what the agent runs with.
    await must(kube, ['apply', '-f', AGENT_YAML]);
    const dir = tmp();
    writeFileSync(join(dir, 'token'), await serviceAccountToken('verdict-agent', 'verdict-agent'));
    const w = started(watch(tokenFileKubeconfig(join(dir, 'token'))));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.logs.filter((l) => l.level === 'error')).toEqual([]);
    await apply(kube, cnp('rbac-check', 'shop', 'web', ['9090']));
    await attributed(w, toWeb(8080), ['shop/rbac-check', 'shop/web-443'], "a CNP seen by the agent's ServiceAccount");
    await must(kube, ['delete', 'cnp', 'rbac-check', '-n', 'shop']);
    await w.stop();
  });

  it('is exactly enough: without any one of its verbs the watch fails, naming the verb and resource', async () => {
    const role = JSON.parse(await must(kube, ['get', 'clusterrole', 'verdict-agent-policy-reader', '-o', 'json'])) as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    let n = 0;
    for (const [ri, rule] of role.rules.entries()) {
      for (const resource of rule.resources) {
        for (const verb of rule.verbs) {
          const sa = `probe-${n++}`;
          // The shipped rules with one verb of one resource taken away.
          const rules = role.rules.flatMap((r, i) =>
            i !== ri
              ? [r]
              : [
                  ...r.resources.filter((x) => x !== resource).map((x) => ({ ...r, resources: [x] })),
                  ...(r.verbs.length > 1 ? [{ ...r, resources: [resource], verbs: r.verbs.filter((v) => v !== verb) }] : []),
                ],
          );
          await apply(
            kube,
            { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: sa }, rules },
            {
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'ClusterRoleBinding',
              metadata: { name: sa },
              roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: sa },
              subjects: [{ kind: 'ServiceAccount', name: sa, namespace: 'verdict-agent' }],
            },
          );
          const dir = tmp();
          writeFileSync(join(dir, 'token'), await serviceAccountToken('verdict-agent', sa));
          const w = started(watch(tokenFileKubeconfig(join(dir, 'token'))));
          const err = await until(() => w.logs.find((l) => l.level === 'error'), `the error without ${verb} on ${resource}`);
          const message = String(err.obj.error);
          expect(message).toContain(`cannot ${verb} resource "${resource}" in API group "${rule.apiGroups[0]}"`);
          expect(message).toContain(`needs list and watch on ${resource}.${rule.apiGroups[0]} cluster-wide`);
          // Without watch, the first list still completes: the policies are known, not followed.
          expect(await w.watcher.waitReady(300)).toBe(verb === 'watch');
          await w.stop();
        }
      }
    }
    expect(n).toBe(6);
    // Six ServiceAccounts, tokens and watches: ~6 s alone, 20 s measured beside other suites.
  }, 120_000);

  it('a ServiceAccount without it gets the error, and the watch recovers once it is granted (token file re-read)', async () => {
    const dir = tmp();
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, await serviceAccountToken('verdict-agent', 'nobody'));
    const w = started(watch(tokenFileKubeconfig(tokenFile)));
    const err = await until(() => w.logs.find((l) => l.level === 'error'), 'the RBAC error');
    expect(String(err.obj.error)).toMatch(
      /User "system:serviceaccount:verdict-agent:nobody" cannot list resource "(ciliumnetworkpolicies|ciliumclusterwidenetworkpolicies|networkpolicies)"/,
    );
    expect(String(err.obj.error)).toContain('deploy/agent/agent.yaml');
    expect(await w.watcher.waitReady(300)).toBe(false);
    // The token is rotated to the agent's: read again on the next request, no restart.
    writeFileSync(tokenFile, await serviceAccountToken('verdict-agent', 'verdict-agent'));
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.blame(toWeb(8080))).toEqual(['shop/web-443']);
    await w.stop();
  });
});
