import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge } from 'prom-client';
import {
  AgentConfigurationService,
  AlertPublisherService,
  type AlertAck,
  type AlertBatch,
  type ConfigurationRequest,
  type ConfigurationResponse,
} from '../../gen/verdict/agent.js';
import { NO_COMMIT_ID, SERVER_SHUTTING_DOWN } from '../../shared/agent-api.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { ConfigError, formatIssue } from '../../shared/config/schema.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../../shared/config/server-config.js';
import { errText, moduleLogger, type Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { VERSION, versionsCompatible } from '../../shared/version.js';
import type { AgentRecord, AgentRegistry, AuthenticatedAgent } from '../agents/agent-registry.js';
import { hashSecret } from '../auth/secret.js';
import { loadAgentConfiguration } from '../config/agent-config-loader.js';
import { configPath } from '../config/agent-config-path.js';
import { git } from '../config/git-project.js';
import type { ProjectPollers } from '../config/project-poller.js';
import type { AgentCall } from '../module.js';
import { serverModules } from '../modules.js';
import type { IncomingEvent } from '../store/alert-store.js';
import type { AlertSink } from './alert-sink.js';
import { checkPayload } from './payload-check.js';
import { FAILURE_LIMIT, RateLimiter, TOKEN_LIMIT } from './rate-limit.js';

const connectedStreams = new Gauge({ name: 'verdict_server_agent_streams', help: 'Open agent streams', labelNames: ['rpc'], registers: [registry] });
const alertsReceived = new Counter({
  name: 'verdict_server_alerts_received_total',
  help: 'Alert events received from agents',
  labelNames: ['result'],
  registers: [registry],
});
const authFailures = new Counter({
  name: 'verdict_server_auth_failures_total',
  help: 'Agent calls refused for a missing, unknown or revoked token',
  registers: [registry],
});
const rateLimited = new Counter({
  name: 'verdict_server_agent_calls_rate_limited_total',
  help: 'Agent calls refused with RESOURCE_EXHAUSTED by the connection rate limits',
  labelNames: ['limit'],
  registers: [registry],
});
const versionRefused = new Counter({
  name: 'verdict_server_agent_version_mismatch_total',
  help: 'Agent calls refused because agent and server differ in major.minor',
  registers: [registry],
});

export interface TunnelDeps {
  agents: AgentRegistry;
  pollers: ProjectPollers;
  sink: AlertSink;
  /** The server's logger: the tunnel writes under mod_name "tunnel", each module's services under the module's name. */
  log: Logger;
  /** Connection attempts per valid token, and failed authentications per peer; defaults: rate-limit.ts. */
  limits?: { token: RateLimiter; failures: RateLimiter };
  /** The server's configuration, for the modules' own services (default: SERVER_DEFAULTS). */
  config?: ServerConfig;
}

/** Metadata key both sides use to tell their release. */
export const VERSION_METADATA = 'verdict-version';
/** Trailer that marks why a call was refused, so the agent can tell a version mismatch from a config error. */
export const REFUSAL_METADATA = 'verdict-refusal';

type AnyCall = AgentCall;

/**
 * An agent as the served-project map tells agents apart: its name, and when it was registered (a name registered again
 * is another agent, and may get the deleted one's id back).
 */
type AgentIdentity = Pick<AgentRecord, 'id' | 'name' | 'created_at'>;

const identityOf = (agent: AgentIdentity) => `${agent.id}@${agent.created_at}`;

/** The configuration an agent runs: the configuration project and the commit of its config.yaml last sent to it. */
export interface ServedConfig {
  project: string;
  commit: string;
}

interface Served extends ServedConfig {
  /** identityOf the agent it was sent to: another agent registered under the name runs nothing of it. */
  registered: string;
  /** When its last configuration stream here closed (entries in `left` only). */
  leftAt?: number;
}

/**
 * How long the entry of an agent that left is kept for its return. Its use is a reconnect after a blip; an agent away
 * longer (deleted, or gone to another replica for good) would otherwise hold its entry for the server's lifetime.
 */
const LEFT_TTL_MS = 3600_000;

/**
 * Tracks open streams per token, so a revoked token's streams can be dropped, and each agent's configuration streams
 * with the project they serve, so a move to another project can end them.
 */
export class StreamRegistry {
  private readonly byToken = new Map<number, Set<AnyCall>>();
  /**
   * 'config': a GetConfiguration stream; 'follow': a module's stream served from the configuration project, and, when
   * `commit` is set, pinned to that commit of it.
   */
  private readonly configByAgent = new Map<string, Set<{ project: string; commit?: string | undefined; kind: 'config' | 'follow'; end: () => void }>>();
  /**
   * The configuration project each agent was last sent a configuration from (the one whose config.yaml it runs), while
   * it has a configuration stream open here. Keyed by name, and kept with the agent's registration (an agent
   * registered again under the name is another agent) and the commit (what the agent says it runs when it asks again).
   */
  private readonly served = new Map<string, Served>();
  /** The entries of agents that closed their last configuration stream here: restored if they come back running that commit. */
  private readonly left = new Map<string, Served>();
  add(tokenId: number, call: AnyCall): () => void {
    let set = this.byToken.get(tokenId);
    if (!set) this.byToken.set(tokenId, (set = new Set()));
    set.add(call);
    return () => {
      set.delete(call);
      if (set.size === 0) this.byToken.delete(tokenId);
    };
  }
  /** Ends every agent call with the status that tells the agent the server is going away (SERVER_SHUTTING_DOWN). */
  shutDown(): number {
    const calls = [...this.byToken.values()].flatMap((set) => [...set]);
    this.byToken.clear();
    for (const call of calls) call.emit('error', { code: grpc.status.UNAVAILABLE, details: SERVER_SHUTTING_DOWN });
    return calls.length;
  }

  /** Ends every stream opened with the token; returns how many. */
  drop(tokenId: number): number {
    const set = this.byToken.get(tokenId);
    if (!set) return 0;
    this.byToken.delete(tokenId);
    // Copied first: the calls' error handlers untrack themselves while we iterate.
    const calls = [...set];
    for (const call of calls)
      call.emit('error', {
        code: grpc.status.UNAUTHENTICATED,
        details: 'unauthenticated: the agent token was revoked; create a new one with `verdict agents tokens create <agent>` and update the token Secret',
      });
    return calls.length;
  }

  /**
   * Tracks a GetConfiguration stream (`config`) serving `project` to `agent`, or a module's stream served from the
   * configuration project (`follow`; with `commit`, served from that commit of it); `end` ends it cleanly. Returns the
   * untracker.
   */
  addConfigStream(agent: string, project: string, end: () => void, kind: 'config' | 'follow' = 'config', commit?: string): () => void {
    let set = this.configByAgent.get(agent);
    if (!set) this.configByAgent.set(agent, (set = new Set()));
    const entry = { project, commit, kind, end };
    set.add(entry);
    return () => {
      if (!set.delete(entry)) return;
      if (set.size === 0 && this.configByAgent.get(agent) === set) this.configByAgent.delete(agent);
      // Gone from here, the agent may be sent configurations elsewhere (another replica) or restart: what it runs is
      // known again when it asks here next (configStreamOpened).
      if (kind === 'config' && ![...set].some((s) => s.kind === 'config')) {
        const served = this.served.get(agent);
        this.served.delete(agent);
        if (served) this.leave(agent, served);
      }
    };
  }

  /**
   * Ends the agent's configuration streams that serve another project than `project`; returns how many. They end
   * cleanly (status OK), which the agent answers by asking again at once, without logging an error: its next stream
   * is served from the agent's project as the registry has it then.
   */
  endConfigStreams(agent: string, project: string): number {
    const stale = [...(this.configByAgent.get(agent) ?? [])].filter((s) => s.kind === 'config' && s.project !== project);
    for (const s of stale) s.end();
    return stale.length;
  }

  /**
   * The agent was sent a configuration from `project`: from now on it runs that project's config.yaml, so the
   * modules' streams still served from another configuration project end (cleanly; the agent asks again). Until
   * then a moved agent runs its last configuration, and those streams stay on the project it came from.
   */
  servedFrom(agent: AgentIdentity, project: string, commit: string): void {
    this.left.delete(agent.name);
    this.served.set(agent.name, { project, commit, registered: identityOf(agent) });
    this.endFollowing(agent.name, project, commit);
  }

  /**
   * The agent opens a configuration stream saying it runs `commit` ('' for none: it just started). The project this
   * server last sent it a configuration from still holds when it runs that commit and is the same agent (not one
   * registered again under its name); else (it restarted, was sent a configuration by another replica) it is
   * forgotten, and the modules' streams served from it end, until a configuration is sent again.
   */
  configStreamOpened(agent: AgentIdentity, commit: string): void {
    const away = this.left.get(agent.name);
    const last = this.served.get(agent.name) ?? (away && Date.now() - (away.leftAt ?? 0) <= LEFT_TTL_MS ? away : undefined);
    this.left.delete(agent.name);
    if (!last) return;
    if (commit !== '' && last.commit === commit && last.registered === identityOf(agent)) {
      this.served.set(agent.name, { project: last.project, commit: last.commit, registered: last.registered });
      // Streams held while it was unknown (project '') ask again, and are served from it.
      this.endFollowing(agent.name, last.project, last.commit);
      return;
    }
    this.served.delete(agent.name);
    this.endFollowing(agent.name, '', '');
  }

  /** configProjectOf of the modules' context, which decides by the project alone (ci_access until it reads servedConfig). */
  servedProject(agent: AgentIdentity): string | undefined {
    return this.servedConfig(agent)?.project;
  }

  /**
   * What the agent runs, as far as this server knows (servedFrom); undefined when it does not, and the caller must not
   * guess: the registered project may hold a config.yaml the agent never got.
   */
  servedConfig(agent: AgentIdentity): ServedConfig | undefined {
    const s = this.served.get(agent.name);
    return s && s.registered === identityOf(agent) ? { project: s.project, commit: s.commit } : undefined;
  }

  /**
   * What the agent's modules' streams were opened to serve from (project '' while it was unknown; commit '' unless
   * pinned): which of them a configuration ends is decided by these, so this is what to look at when one stays open.
   */
  following(agent: string): ServedConfig[] {
    return [...(this.configByAgent.get(agent) ?? [])].filter((s) => s.kind === 'follow').map((s) => ({ project: s.project, commit: s.commit ?? '' }));
  }

  /**
   * A stream served from what the agent ran is wrong once it runs another project, or another commit of the one it
   * is pinned to: it ends, and the agent's next request is served from what it runs then.
   */
  private endFollowing(agent: string, project: string, commit: string): void {
    for (const s of [...(this.configByAgent.get(agent) ?? [])])
      if (s.kind === 'follow' && (s.project !== project || (s.commit !== undefined && s.commit !== commit))) s.end();
  }

  private leave(agent: string, served: Served): void {
    const now = Date.now();
    for (const [name, s] of this.left) if (now - (s.leftAt ?? now) > LEFT_TTL_MS) this.left.delete(name);
    this.left.set(agent, { ...served, leftAt: now });
  }

  /** Agents with at least one open configuration stream. */
  configStreamAgents(): string[] {
    return [...this.configByAgent.keys()];
  }

  /** Tokens with at least one open stream. */
  tokenIds(): number[] {
    return [...this.byToken.keys()];
  }

  get size(): number {
    let n = 0;
    for (const s of this.byToken.values()) n += s.size;
    return n;
  }
}

interface Refusal {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata;
}

/** "127.0.0.1" from "127.0.0.1:5555"; undefined for connections without an address (injected WebSocket streams). */
function peerAddress(call: AnyCall): string | undefined {
  const p = call.getPeer();
  if (!p || p === 'unknown') return undefined;
  const i = p.lastIndexOf(':');
  return i > 0 ? p.slice(0, i) : p;
}

/** Batches of one PublishAlerts stream handed to the sink and not yet acknowledged, at most (the stream is paused meanwhile). */
const MAX_BATCHES_IN_FLIGHT = 8;

const defaultLimits = () => ({ token: new RateLimiter(TOKEN_LIMIT), failures: new RateLimiter(FAILURE_LIMIT) });

function authenticate(call: AnyCall, deps: TunnelDeps, limits: NonNullable<TunnelDeps['limits']>, limitCalls = true): AuthenticatedAgent | Refusal {
  // The version goes first: with a mismatch nothing else the agent says can be trusted to mean the same thing.
  const v = call.metadata.get(VERSION_METADATA)[0];
  if (typeof v === 'string' && !versionsCompatible(v, VERSION)) {
    versionRefused.inc();
    const md = new grpc.Metadata();
    md.set(REFUSAL_METADATA, 'version');
    return {
      code: grpc.status.FAILED_PRECONDITION,
      details: `agent version ${v} and server version ${VERSION} differ in major.minor; run the same release on both: upgrade or downgrade the agent to ${majorMinor(VERSION)}.x, or the server to ${majorMinor(v)}.x`,
      metadata: md,
    };
  }
  const header = call.metadata.get('authorization')[0];
  const m = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  let agent: ReturnType<TunnelDeps['agents']['authenticate']>;
  try {
    agent = m ? deps.agents.authenticate(m[1]!) : undefined;
  } catch (e) {
    // The token store failing (a database error, a server closing) is the server's trouble, not
    // the agent's: a refusal it retries, never an exception thrown out of a call handler.
    deps.log.error({ error: errText(e) }, 'Could not check an agent token: the agent is told to retry (UNAVAILABLE); check the server database and its disk');
    return { code: grpc.status.UNAVAILABLE, details: `server could not check the agent token: ${errText(e)}` };
  }
  if (!agent) {
    authFailures.inc();
    const peer = peerAddress(call);
    const key = peer ? `peer:${peer}` : `token:${hashSecret(m?.[1] ?? '').slice(0, 32)}`;
    if (!limits.failures.take(key)) {
      rateLimited.inc({ limit: 'failures' });
      return {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `too many failed agent authentications from ${peer ?? 'this client'} (limit: ${limits.failures.describe()}); retry in ${limits.failures.retryAfter(key)} s, and check that --token-file holds a valid, unrevoked agent token`,
      };
    }
    if (!m) return { code: grpc.status.UNAUTHENTICATED, details: 'missing "authorization: Bearer <agent token>" metadata; start the agent with --token-file' };
    deps.log.info({ peer: peer ?? 'websocket' }, 'Refused an agent call: the token is unknown or revoked');
    return {
      code: grpc.status.UNAUTHENTICATED,
      // The agent is registered already (registering it again is refused): it needs a new token of its own.
      details:
        'unauthenticated: the agent token is unknown or revoked; create a new one with `verdict agents tokens create <agent>` (or POST /api/v1/admin/agents/<agent>/tokens) and update the token Secret (or --token-file)',
    };
  }
  const key = `token:${agent.token_id}`;
  if (limitCalls && !limits.token.take(key)) {
    rateLimited.inc({ limit: 'token' });
    deps.log.warn({ agent_name: agent.name, token_id: agent.token_id }, 'Refused an agent call: too many connection attempts with this token');
    return {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `too many connection attempts with token ${agent.token_id} of agent "${agent.name}" (limit: ${limits.token.describe()}); retry in ${limits.token.retryAfter(key)} s. Several agents sharing one token or an agent in a restart loop cause this: give each agent its own token (\`verdict agents tokens create ${agent.name}\`)`,
    };
  }
  return agent;
}

/**
 * Whether `repo` is a git repository that git reads, whose default branch has no commit yet. Its poller says only that
 * HEAD could not be read, which a missing directory or one git refuses (safe.directory) says too.
 */
async function unbornHead(repo: string): Promise<boolean> {
  try {
    await git(repo, ['rev-parse', '--git-dir']);
  } catch {
    return false;
  }
  try {
    await git(repo, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}']);
    return false;
  } catch {
    return true;
  }
}

function majorMinor(v: string): string {
  return v.split('.').slice(0, 2).join('.');
}

/** Tells the agent which release it talks to, on every call, before anything else. */
function sendVersion(call: AnyCall): void {
  const md = new grpc.Metadata();
  md.set(VERSION_METADATA, VERSION);
  call.sendMetadata(md);
}

export function addTunnelServices(server: grpc.Server, options: TunnelDeps, streams: StreamRegistry): void {
  // Both made from the server's logger: pino's child bindings append, so one made from the other would write mod_name twice.
  const deps: TunnelDeps = { ...options, log: moduleLogger('tunnel', options.log) };
  const limits = deps.limits ?? defaultLimits();
  server.addService(AgentConfigurationService, {
    getConfiguration: (call: grpc.ServerWritableStream<ConfigurationRequest, ConfigurationResponse>) => {
      sendVersion(call);
      const agent = authenticate(call, deps, limits);
      if ('code' in agent) return call.emit('error', agent);
      const log = deps.log.child({ agent_name: agent.name });
      const poller = deps.pollers.get(agent.config_project);
      const release = poller.acquire();
      const untrack = streams.add(agent.token_id, call);
      streams.configStreamOpened(agent, call.request.commit_id);
      const untrackConfig = streams.addConfigStream(agent.name, agent.config_project, () => {
        cleanup();
        call.end();
      });
      connectedStreams.inc({ rpc: 'GetConfiguration' });
      let sent = call.request.commit_id;
      let failedCommit = '';
      const reportsInStream = call.request.invalid_in_stream;
      let closed = false;
      // Commits are handled one at a time, in order: latest value wins.
      let chain = Promise.resolve();
      const push = (commit: string) => {
        chain = chain.then(async () => {
          if (closed) return;
          // A commit the agent already runs is not sent again, but after a
          // restart of the server its status (and warnings) are read once more.
          const running = commit === sent;
          if (running && deps.agents.configStatus(agent.name)?.commit_id === commit) {
            // The registered project's head: whatever this server knew of the agent, it runs that project's config.yaml.
            streams.servedFrom(agent, agent.config_project, commit);
            return;
          }
          try {
            const loaded = await loadAgentConfiguration(agent.config_project, agent.name, commit);
            // Ended while it loaded (the agent moved to another project, a revoked token): the stream that
            // replaces it records its own project's state, which this one must not overwrite.
            if (closed) return;
            deps.agents.recordConfig(agent.name, commit, loaded.warnings);
            if (running) {
              streams.servedFrom(agent, agent.config_project, commit);
              return;
            }
            for (const w of loaded.warnings) log.warn({ commit_id: commit }, `Config: ${formatIssue(w)}`);
            call.write({
              commit_id: commit,
              config_json: JSON.stringify(loaded.config),
              files: loaded.files,
              agent_name: agent.name,
              warnings: loaded.warnings,
              invalid_reason: '',
            });
            sent = commit;
            streams.servedFrom(agent, agent.config_project, commit);
            log.info({ commit_id: commit, warnings: loaded.warnings.length }, 'Config: sent configuration to agent');
          } catch (e) {
            if (closed) return;
            const details = e instanceof ConfigError ? `invalid configuration at commit ${commit.slice(0, 12)}: ${e.message}` : errText(e);
            deps.agents.recordConfigInvalid(agent.name, commit, details);
            if (running) return;
            if (failedCommit !== commit) log.error({ commit_id: commit, error: details }, 'Config: invalid configuration; the agent keeps its last good one');
            failedCommit = commit;
            if (reportsInStream && e instanceof ConfigError) {
              // The stream stays open, so the fix reaches the agent with the next poll, not after its backoff.
              // Anything else (git failing) ends it as before: the agent's reconnect is the retry.
              call.write({ commit_id: commit, config_json: '', files: [], agent_name: agent.name, warnings: [], invalid_reason: details });
              return;
            }
            // An agent that does not know invalid_reason (an older one) learns it from the stream's end.
            cleanup();
            call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details });
          }
        });
        // Reading or recording the status can fail too (the database, a server closing):
        // that ends this stream, and the agent reconnects and asks again. The chain itself
        // must never reject, or every later commit would be skipped as an unhandled rejection.
        chain = chain.catch((e: unknown) => {
          if (closed) return;
          log.error({ commit_id: commit, error: errText(e) }, 'Config: could not send the configuration; closing the stream');
          cleanup();
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: `server could not send the configuration: ${errText(e)}` });
        });
      };
      const cleanup = () => {
        if (closed) return;
        closed = true;
        poller.off('commit', push);
        release();
        untrack();
        untrackConfig();
        connectedStreams.dec({ rpc: 'GetConfiguration' });
      };
      call.on('cancelled', cleanup);
      call.on('close', cleanup);
      call.on('error', cleanup);
      poller.on('commit', push);
      poller.current().then(push, async (e: unknown) => {
        if (closed) return;
        // A project without a commit yet (just created, an agent moved to it) is waited for on the open stream: the
        // poller's first commit is pushed, as the original polls, and the agent keeps the configuration it runs
        // without a reconnect backoff. Anything else (no repository, one git refuses to read) ends the stream with
        // the error, and the agent's reconnect is the retry.
        const empty = reportsInStream && (await unbornHead(agent.config_project));
        if (closed) return;
        if (!empty) {
          cleanup();
          call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: errText(e) });
          return;
        }
        // The server's path to the project is its own business: the agent is told what to commit, not where.
        const details = `the configuration project has no commit on its default branch yet: commit ${configPath(agent.name)} there`;
        log.warn(
          { config_project: agent.config_project, error: errText(e) },
          call.request.commit_id
            ? 'Config: no commit of the configuration project can be read yet; the agent keeps running its last configuration and is sent the new one once config.yaml is committed there'
            : 'Config: no commit of the configuration project can be read yet; the agent is sent its configuration once config.yaml is committed there',
        );
        try {
          deps.agents.recordConfigInvalid(agent.name, '', details);
        } catch (err) {
          // As for a commit (push): the database failing ends the stream, and the agent asks again.
          log.error({ error: errText(err) }, 'Config: could not send the configuration; closing the stream');
          cleanup();
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: `server could not send the configuration: ${errText(err)}` });
          return;
        }
        call.write({ commit_id: NO_COMMIT_ID, config_json: '', files: [], agent_name: agent.name, warnings: [], invalid_reason: details });
      });
    },
  });

  server.addService(AlertPublisherService, {
    publishAlerts: (call: grpc.ServerDuplexStream<AlertBatch, AlertAck>) => {
      sendVersion(call);
      const agent = authenticate(call, deps, limits);
      if ('code' in agent) return call.emit('error', agent);
      const log = deps.log.child({ agent_name: agent.name });
      const untrack = streams.add(agent.token_id, call);
      connectedStreams.inc({ rpc: 'PublishAlerts' });
      let chain = Promise.resolve();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        untrack();
        connectedStreams.dec({ rpc: 'PublishAlerts' });
      };
      // A pipelined sink (Kafka) gets each batch as it comes, while earlier
      // ones wait for the brokers; any other gets them one after another.
      // Acknowledgements go out in batch order either way.
      let inFlight = 0;
      let handoff: Promise<unknown> = Promise.resolve();
      call.on('data', (batch: AlertBatch) => {
        if (done) return;
        const events: IncomingEvent[] = [];
        let rejected = 0;
        for (const a of batch.alerts) {
          let payload: unknown;
          let text = '';
          try {
            // A view, not a copy: the payload is parsed once and dropped.
            text = Buffer.from(a.payload.buffer, a.payload.byteOffset, a.payload.byteLength).toString('utf8');
            payload = JSON.parse(text);
          } catch {
            payload = undefined;
          }
          const why = payload === undefined ? 'payload is not valid JSON' : checkPayload(payload);
          if (why) {
            rejected++;
            log.error(
              { alert_id: a.id, error: why },
              'Rejected an alert the agent sent: it does not follow alerts/alert.schema.json; is the agent the same Verdict version?',
            );
            continue;
          }
          events.push({ id: a.id, payload: payload as AlertPayload, text });
        }
        const hand = (): Promise<{ stored: number; duplicates: number } | undefined> => {
          if (done) return Promise.resolve(undefined);
          try {
            return deps.sink.accept(agent.name, events);
          } catch (e) {
            return Promise.reject(e instanceof Error ? e : new Error(String(e)));
          }
        };
        const stored = deps.sink.pipelined ? hand() : handoff.then(hand);
        handoff = stored.catch(() => undefined);
        if (++inFlight >= MAX_BATCHES_IN_FLIGHT) call.pause();
        chain = chain.then(async () => {
          try {
            const r = await stored;
            if (done || !r) return;
            alertsReceived.inc({ result: 'stored' }, r.stored);
            alertsReceived.inc({ result: 'duplicate' }, r.duplicates);
            alertsReceived.inc({ result: 'rejected' }, rejected);
            call.write({ batch_id: batch.batch_id, stored: r.stored, duplicates: r.duplicates });
          } catch (e) {
            if (done) return;
            log.error({ error: errText(e), batch_id: batch.batch_id }, 'Failed to store an alert batch; the agent will send it again');
            finish();
            call.emit('error', { code: grpc.status.UNAVAILABLE, details: `server could not store the batch: ${errText(e)}` });
          } finally {
            if (inFlight-- === MAX_BATCHES_IN_FLIGHT) call.resume();
          }
        });
      });
      call.on('end', () => {
        void chain.then(() => {
          if (!done) call.end();
          finish();
        });
      });
      call.on('cancelled', finish);
      call.on('error', finish);
    },
  });

  // Modules serve their agent parts through the same door: one admission for every call.
  const admit = (call: AnyCall, rpc: string, opts: { perCall?: boolean } = {}) => {
    sendVersion(call);
    const agent = authenticate(call, deps, limits, !opts.perCall);
    if ('code' in agent) {
      call.emit('error', agent);
      return undefined;
    }
    const untrack = streams.add(agent.token_id, call);
    connectedStreams.inc({ rpc });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      untrack();
      connectedStreams.dec({ rpc });
    };
    for (const ev of ['cancelled', 'error', 'finish', 'close']) call.on(ev, finish);
    return agent;
  };
  const followConfigProject = (agent: string, project: string, end: () => void, commit?: string) =>
    streams.addConfigStream(agent, project, end, 'follow', commit);
  const configProjectOf = (agent: AgentIdentity) => streams.servedProject(agent);
  const servedConfigOf = (agent: AgentIdentity) => streams.servedConfig(agent);
  for (const mod of serverModules) {
    for (const svc of mod.grpcServices?.({
      config: deps.config ?? SERVER_DEFAULTS,
      log: moduleLogger(mod.name, options.log),
      admit,
      followConfigProject,
      configProjectOf,
      servedConfigOf,
    }) ?? []) {
      server.addService(svc.definition, svc.implementation);
    }
  }
}
