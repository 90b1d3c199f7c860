import type { ServerModule, ServerModuleContext, ServerModuleStartContext } from '../../server/module.js';
import type { ServerConfig } from '../../shared/config/server-config.js';
import type { AgentRecord } from '../../server/agents/agent-registry.js';
import { registerCiTokenRoutes } from './admin-routes.js';
import { AgentTunnels } from './agent-tunnels.js';
import { CiAccessConfigs } from './agent-configs.js';
import { ciAccessBlock, type CiAccessConfig } from './config.js';
import { JobTokens } from './job-tokens.js';
import { OpenJobRequests } from './job-streams.js';
import { listenProxy } from './listener.js';
import { ReplicaForwarder } from './replica-forward.js';
import { internalAddress, ReplicaSync } from './replica-sync.js';
import { replicaId } from '../../server/kafka/db.js';
import { Closers } from '../../shared/lifecycle/closers.js';
import { errText } from '../../shared/log/logger.js';
import { isPlainHttpUrl, plainHttpHint } from '../../shared/plain-http.js';
import { KubernetesApiProxy } from './proxy.js';
import { tunnelService } from './tunnel-service.js';

// The server part of the CI/CD tunnel: the agents' Connect calls (through the
// agent API) and the Kubernetes API proxy kubectl talks to. Both hooks of one
// running server share its pool of agent calls, found by the server's config
// object (the same in both contexts); several servers in one process (tests)
// keep theirs apart.
const tunnelsOf = new WeakMap<ServerConfig, AgentTunnels>();
function tunnels(config: ServerConfig): AgentTunnels {
  let t = tunnelsOf.get(config);
  if (!t) tunnelsOf.set(config, (t = new AgentTunnels()));
  return t;
}

/** Which configuration (project and commit) each agent runs, as the agent API of the server with this config knows it. */
const servedConfigOf = new WeakMap<ServerConfig, ServerModuleContext['servedConfigOf']>();

const PURGE_INTERVAL_MS = 3600_000;

/**
 * Why kubectl will get "no credentials" from a proxy without TLS. Not when kubeconfigs name an https:// URL (a load
 * balancer that terminates TLS in front of the listener).
 */
function plainHttpWarning(tls: boolean, url: string | undefined): string | undefined {
  if (tls || (url !== undefined && !isPlainHttpUrl(url))) return undefined;
  return `CI tunnel: ${plainHttpHint('the Kubernetes API proxy', 'set kubernetes_api.url to')}`;
}

export const ciAccessServer: ServerModule<'ci_access', CiAccessConfig> = {
  name: 'ci_access',
  config: ciAccessBlock,
  grpcServices: (ctx) => {
    servedConfigOf.set(ctx.config, ctx.servedConfigOf);
    return [tunnelService(ctx, tunnels(ctx.config))];
  },
  // Served whether or not this server runs the proxy, like `verdict ci-tokens` works on any data dir.
  adminRoutes: registerCiTokenRoutes,
  async start(ctx) {
    const k = ctx.config.kubernetes_api;
    if (!k) return undefined;
    const jobs = new JobTokens(ctx.db);
    const closers = new Closers();
    // The agent API's pollers: a project whose configuration is streamed is read once per interval for both, and a
    // new commit logged once; one streamed from no agent here is read when a request comes and the last read is older.
    const pollers = ctx.pollers;
    const kafka = ctx.config.kafka;
    // Routes name the proxy's bound port, which the listener only knows once it listens; the sync starts after it.
    let sync: ReplicaSync | undefined;
    const open = new OpenJobRequests(jobs, ctx.log);
    const configs = new CiAccessConfigs((repo) => pollers.get(repo).current(), ctx.log);
    closers.defer('CI job token revocation checks', () => open.stop());
    const proxy = new KubernetesApiProxy({
      jobs,
      open,
      agentById: (id) => ctx.agents.getById(id),
      agentByName: (name) => ctx.agents.get(name),
      replicas: kafka
        ? { holding: (agent) => sync?.holding(agent) ?? [], forwarder: new ReplicaForwarder(ctx.tls?.cert, ctx.log), replica: replicaId(ctx.db) }
        : undefined,
      configs,
      servedConfigOf: (agent) => servedConfigOf.get(ctx.config)?.(agent),
      tunnels: tunnels(ctx.config),
      prefix: k.url_path_prefix,
      tlsInFront: k.url !== undefined && !isPlainHttpUrl(k.url),
      projectsDir: ctx.config.projects_dir,
      log: ctx.log,
    });
    try {
      const listener = closers.add('Kubernetes API proxy', await listenProxy(k.listen, proxy, ctx.tls, ctx.log), (l) => l.close());
      if (kafka) {
        const address = internalAddress(listener.address);
        sync = closers.add(
          'CI tunnel replica sync',
          new ReplicaSync({ cfg: kafka, db: ctx.db, jobs, tunnels: tunnels(ctx.config), agents: ctx.agents, address, tls: Boolean(ctx.tls), log: ctx.log }),
          (s) => s.stop(),
        );
        await sync.start();
        ctx.log.info({ replica_id: sync.replica, internal_address: address }, 'CI tunnel: sharing job tokens and agent routes with the other replicas');
      }
      // A busy or closing database must not take the server down from a timer;
      // expired tokens are refused on use anyway, so the next purge catches up.
      const purge = setInterval(() => {
        try {
          jobs.purgeExpired();
        } catch (e) {
          ctx.log.warn({ error: errText(e) }, 'CI tunnel: purging expired job tokens failed; retrying at the next interval');
        }
      }, PURGE_INTERVAL_MS).unref();
      closers.defer('job token purge', () => clearInterval(purge));
      const watchConfigs = watchInvalidConfigs(configs, ctx, tunnels(ctx.config));
      closers.defer('ci_access configuration checks', () => clearInterval(watchConfigs));
      ctx.log.info(
        { kubernetes_api_addr: listener.address, url_path_prefix: k.url_path_prefix, tls: Boolean(ctx.tls) },
        'CI tunnel: Kubernetes API proxy listening',
      );
      const warning = plainHttpWarning(Boolean(ctx.tls), k.url);
      if (warning) ctx.log.warn({ kubernetes_api_addr: listener.address }, warning);
    } catch (e) {
      await closers.close();
      throw e;
    }
    return { close: () => closers.close() };
  },
};

// Projects (and their agents' blocks) read at once by the check below: a server with many agents must not start a git
// process per project all at the same moment.
const CHECK_CONCURRENCY = 8;

/**
 * Reads the ci_access block of the agents connected here when their configuration project has a new commit (looked
 * at once per config_poll_interval, through the agent API's pollers: no git call while nothing changed), so that a
 * commit whose config.yaml does not validate is warned of (CiAccessConfigs logs it once per commit) when it is
 * pushed, not when a job's request first comes: until it is fixed the last good block decides, which may grant more
 * than the broken commit meant to. A moved agent decides with the commit it was sent, which never changes: nothing to
 * watch.
 */
function watchInvalidConfigs(configs: CiAccessConfigs, ctx: ServerModuleStartContext, agentTunnels: AgentTunnels): NodeJS.Timeout {
  let running = false;
  // The commit each agent's block was last read at.
  let read = new Map<string, string>();
  return setInterval(() => {
    if (running) return;
    running = true;
    const byProject = new Map<string, AgentRecord[]>();
    for (const id of agentTunnels.connectedAgents()) {
      const agent = ctx.agents.getById(id);
      if (!agent) continue;
      const served = servedConfigOf.get(ctx.config)?.(agent);
      if (served && served.project !== agent.config_project) continue;
      byProject.set(agent.config_project, [...(byProject.get(agent.config_project) ?? []), agent]);
    }
    const next = new Map<string, string>();
    void eachLimited([...byProject], async ([project, agents]) => {
      // Errors are the request path's to tell, in its answer; this only looks for the warning.
      const commit = await ctx.pollers
        .get(project)
        .current()
        .catch(() => undefined);
      if (commit === undefined) return;
      const changed = agents.filter((a) => read.get(a.name) !== commit);
      for (const a of agents) next.set(a.name, commit);
      await eachLimited(changed, (agent) => configs.get(agent).catch(() => undefined));
    }).finally(() => {
      read = next;
      running = false;
    });
  }, ctx.config.config_poll_interval).unref();
}

/** Runs `fn` on every item, at most CHECK_CONCURRENCY at a time. */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) await fn(items[i++]!);
  };
  await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, items.length) }, worker));
}
