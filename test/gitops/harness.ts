import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ModuleContext } from '../../src/agent/module.js';
import { openAgentDb } from '../../src/agent/spool/agent-db.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { createGitopsModule, type GitopsModuleOptions } from '../../src/modules/gitops/agent.js';
import type { GitopsConfig } from '../../src/modules/gitops/config.js';
import type { KubeEndpoint } from '../../src/modules/gitops/kube/api.js';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import type { Agent, AgentList, AlertDetail, AlertPage, ProjectSync } from '../../src/server/feed/web/api-types.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../../src/shared/config/server-config.js';
import type { Logger } from '../../src/shared/log/logger.js';
import type { Kube } from '../helpers/kube.js';
import { ConfigProject, spawnVerdict, until, type VerdictProcess } from '../helpers/processes.js';

// The GitOps tests' common setup, one way each: a real server serving the
// manifest projects under <dir>/projects, the agent "edge" registered with a
// configuration project, the agent side (the GitOps module in process through
// a real tunnel, or a `verdict agent` process with --kubeconfig) syncing a
// real API server (test/helpers/kube.ts), and what the tests read back: sync
// reports, the sync status and alerts through the API, ConfigMaps and the
// inventory in the cluster.

/** The agent every GitOps test registers. */
export const AGENT = 'edge';

/** config.yaml of an agent without modules of its own configuration. */
const PLAIN_AGENT_CONFIG = 'observability: {logging: {level: info}}\n';

// --- The server and its projects ---

/** Server settings for a test: data in <dir>/server, free ports, manifest projects under <dir>/projects polled every 100 ms. */
export function serverSettings(dir: string, extra: Partial<ServerConfig> = {}): ServerConfig {
  return {
    ...SERVER_DEFAULTS,
    data_dir: join(dir, 'server'),
    http_addr: '127.0.0.1:0',
    grpc_addr: '127.0.0.1:0',
    projects_dir: join(dir, 'projects'),
    gitops_poll_interval: 100,
    ...extra,
  };
}

/** A manifest project: the git repository <dir>/projects/<id>, which the server serves as project <id>. */
export function manifestProject(dir: string, id: string): ConfigProject {
  return new ConfigProject(join(dir, 'projects', id));
}

export interface GitopsServer {
  server: RunningServer;
  /** The configuration project at <dir>/config, with .gitlab/agents/edge/config.yaml committed. */
  config: ConfigProject;
  /** The agent edge's token. */
  token: string;
}

/** A server per serverSettings(dir, settings), with the agent edge registered; its config.yaml is agentConfig. */
export async function startGitopsServer(
  dir: string,
  log: Logger,
  opts: { agentConfig?: string; settings?: Partial<ServerConfig> } = {},
): Promise<GitopsServer> {
  const config = new ConfigProject(join(dir, 'config'));
  config.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: opts.agentConfig ?? PLAIN_AGENT_CONFIG });
  const server = await startServer(serverSettings(dir, opts.settings), log);
  return { server, config, token: server.agents.register(AGENT, config.dir).token };
}

export { capturingLogger } from '../helpers/logs.js';

// --- The agent side ---

/** The agent edge's tunnel to `server` and the context its core gives the GitOps module (the agent database in dataDir). */
export async function connectAgent(
  server: RunningServer,
  token: string,
  log: Logger,
  dataDir: string,
): Promise<{ ctx: ModuleContext; tunnel: Tunnel; close(): Promise<void> }> {
  const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${server.grpcAddress}`), token, log });
  const ctx = {
    log: log.child({ mod_name: 'gitops' }),
    db: openAgentDb(dataDir),
    alerts: undefined as never,
    dataDir,
    agentName: AGENT,
    files: [],
    tunnel,
  } as ModuleContext;
  return {
    ctx,
    tunnel,
    async close() {
      await tunnel.close();
      ctx.db.close();
    },
  };
}

/** startGitopsServer, then the agent edge connected to it (connectAgent, its database in <dir>/agent); close() ends both. */
export async function startServerAndAgent(dir: string, log: Logger) {
  const { server, token } = await startGitopsServer(dir, log);
  const agent = await connectAgent(server, token, log, join(dir, 'agent'));
  return {
    server,
    agent,
    async close() {
      await agent.close();
      await server.close();
    },
  };
}

/** The module's configuration block with these manifest projects. */
export const gitopsBlock = (...projects: Record<string, unknown>[]) => ({ manifest_projects: projects }) as unknown as GitopsConfig;

/** How the agent reaches `kube`: as its admin. */
export const kubeEndpoint = (kube: Kube): KubeEndpoint => ({
  server: kube.server,
  requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
});

/** The GitOps module, applying to `kube` as its admin (kubeEndpoint), run with `block` as the agent core runs it, until stop(). */
export function runGitops(kube: Kube, ctx: ModuleContext, block: GitopsConfig, opts: Omit<GitopsModuleOptions, 'connect'>): { stop(): Promise<void> } {
  const module = createGitopsModule({ connect: () => kubeEndpoint(kube), ...opts });
  const abort = new AbortController();
  const running = module.run(block, ctx, abort.signal);
  return {
    async stop() {
      abort.abort();
      await running;
    },
  };
}

/** `verdict agent` (from dist/) connected to `server`, its Kubernetes API server `kube` by --kubeconfig. */
export function spawnAgent(server: RunningServer, kube: Kube, tokenFile: string, dataDir: string): VerdictProcess {
  return spawnVerdict(
    [
      'agent',
      `--kas-address=grpc://${server.grpcAddress}`,
      `--token-file=${tokenFile}`,
      `--data-dir=${dataDir}`,
      `--kubeconfig=${kube.kubeconfig}`,
      '--observability-addr=',
    ],
    'agent',
  );
}

// --- What the tests read back ---

/** The first report of `commit` with this outcome, waited for. */
export const untilReport = (reports: SyncReport[], commit: string, ok: boolean, timeoutMs: number, what: string) =>
  until(() => reports.find((r) => r.commit === commit && r.ok === ok), timeoutMs, what);

/** The sync status `read` returns once it is of `commit` with this outcome. */
export const untilSync = <P extends Pick<ProjectSync, 'commit_id' | 'ok'>>(
  read: () => Promise<P | undefined>,
  commit: string,
  ok: boolean,
  timeoutMs: number,
  what: string,
) =>
  until(
    async () => {
      const p = await read();
      return p?.commit_id === commit && p.ok === ok ? p : undefined;
    },
    timeoutMs,
    what,
  );

/** The server's API as `token` reads it; every answer must be 200. */
export function apiOf(server: RunningServer, token: string) {
  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`http://${server.httpAddress}${path}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status, path).toBe(200);
    return (await res.json()) as T;
  };
  const agent = (name = AGENT) => get<Agent>(`/api/v1/agents/${name}`);
  const agents = async () => (await get<AgentList>('/api/v1/agents')).agents;
  return {
    get,
    /** GET /api/v1/agents/:name */
    agent,
    /** GET /api/v1/agents */
    agents,
    /** The agent as GET /api/v1/agents lists it. */
    listed: async (name = AGENT) => (await agents()).find((a) => a.name === name),
    /** A project's last sync in GET /api/v1/agents/:name. */
    project: async (id = 'group/app', name = AGENT) => (await agent(name)).module_status.gitops?.projects.find((p) => p.project_id === id),
    /** The agent's gitops alerts, any status. */
    gitopsAlerts: async (name = AGENT) => (await get<AlertPage>(`/api/v1/alerts?source=gitops&agent=${name}&limit=100`)).alerts,
    alert: (id: number) => get<AlertDetail>(`/api/v1/alerts/${id}`),
  };
}

/** A ConfigMap's data, or undefined when it is not there. */
export async function configMapData(kube: Kube, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  const r = await kube.kubectl(['get', 'configmap', name, '-n', namespace, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { data?: Record<string, string> }).data : undefined;
}

/** The keys of an inventory ConfigMap (one per object it holds), sorted; it must exist. */
export async function inventoryKeys(kube: Kube, namespace: string, name: string): Promise<string[]> {
  const r = await kube.kubectl(['get', 'configmap', name, '-n', namespace, '-o', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return Object.keys((JSON.parse(r.stdout) as { data?: object }).data ?? {}).sort();
}

// --- Manifests ---

export const namespaceYaml = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
export const configMapYaml = (name: string, v: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;
