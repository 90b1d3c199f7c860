import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { killAll, spawnVerdict, until, type VerdictProcess } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';
import { watchConfigMaps } from './watch.js';

// An agent process stopped (SIGTERM, as Kubernetes stops its pod) while a CI
// job's watch runs through it: the process does not wait for the watch, which
// never ends on its own; it gives requests in flight SHUTDOWN_GRACE_MS, then
// ends them, and kubectl gets the server's Status instead of a hang until
// SIGKILL.

const CONFIG = `ci_access:
  projects:
    - id: shop/ops
      default_namespace: ci
`;

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: CONFIG, agentKubeconfig: kube.kubeconfig });
  await kube.kubectl(['create', 'namespace', 'ci']);
  // The agent of the environment runs in this process: the one under test is a process of its own.
  await env.agent.stop();
}, 300_000);

afterAll(async () => {
  await killAll();
  await env?.stop();
  await kube?.stop();
});

function spawnCiAgent(): VerdictProcess {
  const ca = join(env.dir, 'proxy-ca.crt');
  writeFileSync(ca, env.caPem);
  return spawnVerdict(
    [
      'agent',
      '--kas-address',
      `grpcs://127.0.0.1:${env.server.grpcAddress.split(':').pop()}`,
      '--ca-cert-file',
      ca,
      '--token-file',
      join(env.dir, 'agent-token'),
      '--data-dir',
      join(env.dir, 'agent-process'),
      '--kubeconfig',
      kube.kubeconfig,
      '--observability-addr',
      '',
    ],
    'agent',
  );
}

describe('agent shutdown with a CI watch open', () => {
  it('exits within the grace after SIGTERM, and kubectl gets an error, not a hang', async () => {
    const agent = spawnCiAgent();
    await agent.waitForLog((l) => l.msg === 'CI tunnel: ready', 20_000, "the agent process's CI tunnel");
    const file = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    // The server may still be dropping the stopped in-process agent: wait until a request goes through.
    await until(
      async () => (await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: file })).code === 0 || undefined,
      20_000,
      'a request through the agent process',
    );
    const watch = watchConfigMaps(kube, file);
    try {
      await until(() => watch.out.includes('kube-root-ca.crt') || undefined, 15_000, 'the watch to list');
      // kubectl lists, prints, then opens the watch: an event that comes through it shows the watch is in flight.
      expect((await kube.kubectl(['create', 'configmap', 'in-flight', '-n', 'ci'])).code).toBe(0);
      await until(() => /^in-flight\s/m.test(watch.out) || undefined, 15_000, 'the new ConfigMap through the open watch');
      agent.proc.kill('SIGTERM');
      // Before, the process waited for the watch, which never ends (until SIGKILL in a pod): then the test's timeout ends it.
      expect(await agent.exited, agent.stdout.slice(-2000)).toBe(0);
      expect(agent.logs.some((l) => l.msg === 'CI tunnel: ending the requests still in flight: the agent is stopping' && l.requests === 1)).toBe(true);
      // Ended when the grace was over, so the agent did not wait a second grace for it.
      expect(agent.logs.map((l) => l.msg)).not.toContain('Stopping: work left in flight did not end; stopping without it');
      await watch.closed;
      expect(`${watch.out}${watch.err}`).toMatch(/Verdict server: the agent "edge" disconnected before it finished answering/);
      // grpcs://127.0.0.1 and an API server at https://127.0.0.1: no TLS ServerName for an IP, so no warning of Node's.
      expect(agent.stderr).not.toMatch(/RFC 6066/);
    } finally {
      watch.kill();
    }
  }, 120_000);
});
