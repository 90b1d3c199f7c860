import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningAgent } from '../../src/agent/agent.js';
import { kubeconfigFor } from '../../src/cli/kubeconfig.js';
import { JobTokens } from '../../src/modules/ci-access/job-tokens.js';
import type { AgentConnections } from '../../src/server/agents/connections.js';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { loadServerConfigFile } from '../../src/shared/config/server-config.js';
import type { createRootLogger } from '../../src/shared/log/logger.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { capturingLogger } from '../helpers/logs.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { ConfigProject, freePort, tempDir, until, type LogLine } from '../helpers/processes.js';
import { type Certs, makeCerts } from '../helpers/certs.js';
import { httpsGet, startCiAgent } from './env.js';
import { execThrough, startExecPeer } from './exec-peer.js';
import { watchConfigMaps } from './watch.js';

// The CI/CD tunnel on two Kafka replicas (a real broker, a real
// kube-apiserver, the real kubectl): the agent holds its calls on one
// replica, kubectl talks to the other, which forwards. The agent reaches the
// replicas through a TCP relay the test points at one or the other, as a
// load balancer moving the agent's connection would.

const CONFIG = `ci_access:
  projects:
    - id: shop/app
      default_namespace: ci
`;

let kube: Kube;
let broker: Broker;
const dir = tempDir('verdict-ci-kafka-');
let logs: LogLine[] = [];
const servers: Record<'a' | 'b', { server: RunningServer; proxyUrl: string; dataDir: string }> = {} as never;
let agent: RunningAgent;
let relay: TcpRelay;
let caPem: string;
let project: ConfigProject;
let certs: ReturnType<typeof makeCerts>;
let log: ReturnType<typeof createRootLogger>;
const extra: { close(): Promise<void> }[] = [];

const grpcPort = (s: RunningServer) => Number(s.grpcAddress.split(':').pop());

async function startReplica(name: 'a' | 'b', prefix: string, certs: Certs, log: ReturnType<typeof createRootLogger>) {
  const port = await freePort();
  const dataDir = join(dir, name);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `data_dir: ${dataDir}
http_addr: 127.0.0.1:0
grpc_addr: 127.0.0.1:0
config_poll_interval: 200ms
tls: {cert_file: ${certs.serverCert}, key_file: ${certs.serverKey}}
kubernetes_api: {listen: "127.0.0.1:${port}", url_path_prefix: /k8s-proxy/}
kafka: {brokers: ["${broker.bootstrap}"], topic_prefix: ${prefix}, replication_factor: 1}
`,
  );
  const server = await startServer(loadServerConfigFile(file), log.child({ replica: name }));
  servers[name] = { server, proxyUrl: `https://127.0.0.1:${port}/k8s-proxy`, dataDir };
}

beforeAll(async () => {
  kube = await startKube();
  await kube.kubectl(['create', 'namespace', 'ci']);
  broker = startBroker(join(dir, 'kafka-state'));
  ({ log, logs } = capturingLogger('info'));
  certs = makeCerts(dir);
  caPem = readFileSync(certs.ca, 'utf8');
  const prefix = `ci${randomUUID().slice(0, 8)}`;
  await startReplica('a', prefix, certs, log);
  await startReplica('b', prefix, certs, log);
  project = new ConfigProject(join(dir, 'infra'));
  project.commit({ '.gitlab/agents/edge/config.yaml': CONFIG, '.gitlab/agents/only-at-b/config.yaml': 'ci_access: {}\n' });
  // An agent B has before it learns edge: the replicas' ids for edge differ, as they do in practice.
  servers.b.server.agents.register('only-at-b', project.dir);
  // Registered on A only: B learns the agent and its token through Kafka.
  const { token } = servers.a.server.agents.register('edge', project.dir);
  writeFileSync(join(dir, 'agent-token'), token);
  await until(() => servers.b.server.agents.get('edge'), 20_000, 'replica B to learn the agent');
  relay = await startTcpRelay(grpcPort(servers.a.server));
  agent = await startCiAgent(
    {
      kasAddress: `grpcs://127.0.0.1:${relay.port}`,
      caCertFile: certs.ca,
      tokenFile: join(dir, 'agent-token'),
      dataDir: join(dir, 'agent'),
      kubeconfig: kube.kubeconfig,
    },
    log,
  );
  await until(() => logs.some((l) => l.msg === 'CI tunnel: ready'), 20_000, "the agent's CI tunnel");
}, 300_000);

afterAll(async () => {
  for (const x of extra) await x.close().catch(() => undefined);
  await agent?.stop().catch(() => undefined);
  await relay?.close();
  await servers.a?.server.close();
  await servers.b?.server.close();
  if (broker) stopBroker(broker);
  await kube?.stop();
});

/** A job token issued on one replica's data dir (as `verdict ci-tokens create --data-dir`), once the other knows it too. */
async function jobToken(on: 'a' | 'b', project = 'shop/app'): Promise<string> {
  const { token } = new JobTokens(servers[on].server.db).create({ project, ttlMs: 3600_000 });
  const other = on === 'a' ? 'b' : 'a';
  await until(() => !('error' in new JobTokens(servers[other].server.db).authenticate(token)) || undefined, 20_000, `replica ${other} to learn the job token`);
  return token;
}

/** The KUBECONFIG `verdict kubeconfig --data-dir <replica>` prints, pointing at that replica's proxy. */
async function kubeconfigAt(at: 'a' | 'b', token: string, from: 'a' | 'b' = at): Promise<string> {
  const file = join(dir, `kubeconfig-${at}-${randomUUID().slice(0, 6)}`);
  writeFileSync(file, await kubeconfigFor({ ciToken: token, server: servers[at].proxyUrl, dataDir: servers[from].dataDir, caPem, agentsByName: true }));
  return file;
}

const getRaw = (at: 'a' | 'b', path: string, authorization: string) => httpsGet(`${servers[at].proxyUrl}${path}`, caPem, { authorization });

const asJob = (kubeconfig: string, args: string[], input?: string) => kube.kubectl(args, { kubeconfig, ...(input ? { input } : {}) });

describe('CI tunnel on Kafka replicas', () => {
  it('kubectl at replica B reaches the agent connected to replica A: get, apply, watch (the job token was issued on A)', async () => {
    const file = await kubeconfigAt('b', await jobToken('a'));
    const cm = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'via-b' }, data: { a: '1' } });
    const applied = await asJob(file, ['apply', '-f', '-'], cm);
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain('configmap/via-b created');
    expect((await asJob(file, ['get', 'configmap', 'via-b', '-o', 'jsonpath={.data.a}'])).stdout).toBe('1');

    const watch = watchConfigMaps(kube, file, { events: true });
    try {
      await until(() => watch.out.includes('via-b') || undefined, 15_000, 'the watch to list');
      // No wait for the watch to be in flight: it starts at the list's resourceVersion, so it gets this event either way.
      expect((await kube.kubectl(['create', 'configmap', 'watched-via-b', '-n', 'ci'])).code).toBe(0);
      await until(() => /ADDED\s+watched-via-b/.test(watch.out) || undefined, 10_000, 'the ADDED event through the forwarded watch');
      expect(watch.exitCode).toBe(null);
    } finally {
      watch.kill();
    }
  });

  it('a token revoked on replica B ends its watch open at replica A within a few seconds (Kafka brings the revocation)', async () => {
    const token = await jobToken('b');
    const watch = watchConfigMaps(kube, await kubeconfigAt('a', token));
    try {
      await until(() => watch.out.includes('kube-root-ca.crt') || undefined, 15_000, 'the watch to list');
      // In flight once it prints an event the list could not have had.
      expect((await kube.kubectl(['create', 'configmap', 'in-flight-at-a', '-n', 'ci'])).code).toBe(0);
      await until(
        () => watch.out.includes('in-flight-at-a') || undefined,
        15_000,
        () => `the watch to see in-flight-at-a (${watch.err})`,
      );
      expect(watch.exitCode, watch.err).toBe(null);
      const jobs = new JobTokens(servers.b.server.db);
      const auth = jobs.authenticate(token);
      if ('error' in auth) throw new Error(auth.error);
      expect(jobs.revoke(auth.job.id)).toBe(true);
      const code = await Promise.race([watch.closed, new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
      expect(code, `${watch.out}${watch.err}`).not.toBe('still running');
      expect(`${watch.out}${watch.err}`).toMatch(/Verdict server: the CI job token of job \d+ was revoked at/);
    } finally {
      watch.kill();
    }
  });

  it('a kubeconfig made on one replica works on the other: agents are named, since their ids differ between replicas', async () => {
    const idA = servers.a.server.agents.get('edge')!.id;
    const idB = servers.b.server.agents.get('edge')!.id;
    expect(idA).not.toBe(idB);
    const token = await jobToken('a');
    const file = await kubeconfigAt('b', token, 'a');
    const view = JSON.parse((await kube.kubectl(['config', 'view', '--raw', '-o', 'json'], { kubeconfig: file })).stdout) as { users: unknown[] };
    expect(view.users).toEqual([{ name: 'agent:edge', user: { token: `ci:edge:${token}` } }]);
    const got = await asJob(file, ['get', 'configmap', 'via-b', '-o', 'name']);
    expect(got.stderr).toBe('');
    expect(got.stdout.trim()).toBe('configmap/via-b');
    // By id, A's id for edge names another agent at B: refused there, never sent to that agent.
    const byIdOfA = await getRaw('b', '/api/v1/namespaces/ci/configmaps', `Bearer ci:${idA}:${token}`);
    expect(byIdOfA.status).toBe(403);
    expect(JSON.parse(byIdOfA.body).message).toContain(
      'project shop/app is not in ci_access.projects, under ci_access.groups or allowed by ci_access.instance of agent "only-at-b"',
    );
  });

  it('the receiving replica authenticates the job itself: a forwarded-form request with a bad token is refused there', async () => {
    const r = await getRaw('a', '/api/v1/namespaces/ci/configmaps', 'Bearer ci-replica:edge:vdt_ci_not-a-token');
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).message).toContain('the CI job token is unknown');
    // A job token the agent's ci_access does not allow is refused too, whichever form names the agent.
    const { token } = new JobTokens(servers.a.server.db).create({ project: 'other/project', ttlMs: 60_000 });
    const refused = await getRaw('a', '/api/v1/namespaces/ci/configmaps', `Bearer ci-replica:edge:${token}`);
    expect(refused.status).toBe(403);
  });

  it('an upgrade (exec) at replica B reaches an agent connected to replica A: 101, bytes both ways, the job impersonated', async () => {
    // No kubelet runs here: a second agent is pointed at a peer that speaks the exec upgrade as the API server does.
    const peer = await startExecPeer(dir, 'peer-sa-token');
    extra.push(peer);
    // Its own project, so the kubeconfigs of shop/app jobs keep one agent (and a current context).
    project.commit({ '.gitlab/agents/execer/config.yaml': 'ci_access:\n  projects:\n    - id: shop/exec\n      access_as: {ci_job: {}}\n' });
    const { token: agentToken } = servers.a.server.agents.register('execer', project.dir);
    writeFileSync(join(dir, 'execer-token'), agentToken);
    const execer = await startCiAgent(
      {
        kasAddress: `grpcs://127.0.0.1:${grpcPort(servers.a.server)}`,
        caCertFile: certs.ca,
        tokenFile: join(dir, 'execer-token'),
        dataDir: join(dir, 'execer'),
        kubeconfig: peer.kubeconfig,
      },
      log,
    );
    extra.push({ close: () => execer.stop() });
    const idAtB = (await until(() => servers.b.server.agents.get('execer'), 20_000, 'replica B to learn the agent')).id;
    await until(() => (servers.a.server.streams as AgentConnections).status('execer')?.connected || undefined, 20_000, 'the second agent at A');
    const token = await jobToken('a', 'shop/exec');
    const url = `${servers.b.proxyUrl.replace('https:', 'wss:')}/api/v1/namespaces/ci/pods/web/exec?command=sh&stdin=true&stdout=true`;
    expect(await execThrough({ url, caPem, authorization: `Bearer ci:${idAtB}:${token}` })).toEqual({ protocol: 'v5.channel.k8s.io', closeCode: 1000 });
    expect(peer.errors).toEqual([]);
    // Through A, which holds the agent: the agent's credentials, the job impersonated, none of the job's token.
    const req = peer.seen.at(-1)!;
    expect(req.headers.authorization).toBe('Bearer peer-sa-token');
    expect(req.headers['impersonate-user']).toMatch(/^gitlab:ci_job:\d+$/);
    expect(JSON.stringify(req.headers)).not.toContain(token);
  });

  it('after the agent moves to replica B, requests at either replica follow it', async () => {
    const token = await jobToken('b');
    const atA = await kubeconfigAt('a', token);
    const atB = await kubeconfigAt('b', token);
    relay.moveTo(grpcPort(servers.b.server));
    await until(() => (servers.b.server.streams as AgentConnections).status('edge')?.connected || undefined, 30_000, 'the agent to reconnect (to B)');
    // Served locally by B, and forwarded by A: each is one try, no retries.
    const viaB = await asJob(atB, ['get', 'configmap', 'via-b', '-o', 'name']);
    expect(viaB.stderr).toBe('');
    expect(viaB.stdout.trim()).toBe('configmap/via-b');
    const viaA = await asJob(atA, ['get', 'configmap', 'via-b', '-o', 'name']);
    expect(viaA.stderr).toBe('');
    expect(viaA.stdout.trim()).toBe('configmap/via-b');
  });

  it('after a move to a project without its config.yaml, the replica not holding the agent forwards, and the holder decides with the config.yaml the agent runs', async () => {
    const app = await jobToken('a');
    const other = await jobToken('a', 'shop/other');
    const held = (servers.b.server.streams as AgentConnections).status('edge')?.connected;
    expect(held).toBe(true);
    const moved = new ConfigProject(join(dir, 'moved'));
    const readme = moved.commit({ 'README.md': 'the agent is not configured here yet\n' });
    servers.b.server.agents.setConfigProject('edge', moved.dir);
    await until(() => servers.a.server.agents.get('edge')?.config_project === moved.dir || undefined, 20_000, 'replica A to learn the move');
    await until(
      () => servers.b.server.agents.configStatus('edge')?.invalid?.commit_id === readme || undefined,
      20_000,
      'the agent asking the new project (at B)',
    );
    // A does not know what the agent runs (its configuration streams are at B), and the registered project has no
    // config.yaml for it: A forwards without deciding, and B decides with the old project's, which the agent runs.
    const viaA = await getRaw('a', '/api/v1/namespaces/ci/configmaps', `Bearer ci:edge:${app}`);
    expect([viaA.status, viaA.body]).toEqual([200, expect.stringContaining('"kind":"ConfigMapList"')]);
    // Forwarded undecided, nothing is let through unchecked: B refuses what that config.yaml does not allow.
    const refused = await getRaw('a', '/api/v1/namespaces/ci/configmaps', `Bearer ci:edge:${other}`);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).message).toContain('project shop/other is not in ci_access.projects');

    // Back to the first project, for the tests after this one.
    servers.b.server.agents.setConfigProject('edge', project.dir);
    await until(() => servers.a.server.agents.get('edge')?.config_project === project.dir || undefined, 20_000, 'replica A to learn the move back');
  });

  it('with the agent connected to no replica, the answer is a clear 503', async () => {
    const token = await jobToken('a');
    relay.cut();
    const agentIdAtA = servers.a.server.agents.get('edge')!.id;
    // For a moment A may still forward to B, which answers that the agent has just left it; a 503 as well.
    const seen: number[] = [];
    const gone = await until(
      async () => {
        const got = await getRaw('a', '/api/v1/namespaces/ci/configmaps', `Bearer ci:${agentIdAtA}:${token}`);
        seen.push(got.status);
        return got.status === 503 && JSON.parse(got.body).message.includes('any replica') ? got : undefined;
      },
      30_000,
      'A to answer that no replica holds the agent',
    );
    expect(JSON.parse(gone.body).message).toMatch(
      /^Verdict server: the agent "edge" is not connected to any replica of this server; check that it runs, that its config.yaml has a ci_access block/,
    );
    expect(seen.filter((s) => s !== 503 && s !== 200)).toEqual([]);
    const file = await kubeconfigAt('b', token);
    const r = await asJob(file, ['get', 'configmaps']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('ServiceUnavailable');
  });
});
