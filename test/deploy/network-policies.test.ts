import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicyManifests } from '../../src/modules/cilium/policy/parse.js';
import { tempDir } from '../helpers/processes.js';
import { deployedPods, POLICY_FILES, simulate, trafficCases, type Judged } from './traffic.js';

// deploy/network-policies/ keeps forged Falco events away from the agent and
// everyone but agents away from the server's agent API. Each file alone (a
// cluster applies one of them) and both together must allow exactly the
// connections deploy/ needs; `verdict replay --simulate` judges them as Cilium
// would enforce them. test/deploy/api-server.test.ts proves the same for the
// objects as the real API server stores them.

/** A readable table of what the policies got wrong, empty when nothing. */
function mistakes(judged: Judged[]): string[] {
  return judged.flatMap(({ case: c, denied }) => {
    if (c.allowed && denied) return [`${c.what} (port ${c.port}) is denied by ${denied.responsible.map((p) => p.name).join(', ')}; it must be allowed`];
    if (!c.allowed && !denied) return [`${c.what} (port ${c.port}) is allowed; it must be denied`];
    return [];
  });
}

describe('deploy/network-policies', () => {
  it('select the pods deploy/ runs (labels, namespaces and ports read from the manifests)', () => {
    const { agent, server, falco } = deployedPods();
    expect(agent).toMatchObject({ namespace: 'verdict-agent', labels: { app: 'verdict-agent' }, ports: { falco: 2801, observability: 8081 } });
    expect(server).toMatchObject({ namespace: 'verdict', labels: { app: 'verdict-server' }, ports: { http: 8080, grpc: 8150, 'kubernetes-api': 8154 } });
    expect(falco).toMatchObject({ namespace: 'falco', labels: { 'app.kubernetes.io/name': 'falco' } });
  });

  const sets: [string, string[]][] = [
    ...POLICY_FILES.map((f): [string, string[]] => [f.replace(/.*\/deploy\//, 'deploy/'), [f]]),
    ['both files together', POLICY_FILES],
  ];
  it.each(sets)('%s: Falco reaches the agent, a forged post from another pod does not, agents reach the agent API, users the HTTP port', (_name, files) => {
    const cases = trafficCases();
    const { judged, stderr } = simulate(files, cases);
    expect(mistakes(judged)).toEqual([]);
    // The drop is blamed on the policy meant for it, which is annotated to alert.
    for (const { case: c, denied } of judged) {
      if (!denied) continue;
      expect(
        denied.policies.map((p) => p.name),
        c.what,
      ).toContain(c.policy);
    }
    expect(stderr).not.toMatch(/warning/i);
    expect(stderr).toMatch(new RegExp(`${cases.length} flows, ${cases.filter((c) => !c.allowed).length} would be denied`));
  });

  it('without them, the forged post gets through (the simulation can tell the difference)', () => {
    // An empty policy set allows everything: the cases that must be denied are then
    // allowed, so the test above fails if the policies stop selecting the agent.
    const { judged } = simulate([tempDir('verdict-no-policies-')], trafficCases());
    expect(judged.filter((j) => j.denied)).toEqual([]);
  });

  it.each(POLICY_FILES)('%s parses without warnings, every policy opted in to alerts', (file) => {
    const r = parsePolicyManifests([{ path: file, data: readFileSync(file, 'utf8') }]);
    expect(r.errors.map((e) => e.message)).toEqual([]);
    expect(r.policies.flatMap((p) => p.warnings ?? [])).toEqual([]);
    expect(r.policies.map((p) => `${p.namespace}/${p.name}`).sort()).toEqual(['verdict-agent/verdict-agent-ingress', 'verdict/verdict-server-ingress']);
    for (const p of r.policies) expect(p.alert, `${p.name}`).toBe(true);
  });
});
