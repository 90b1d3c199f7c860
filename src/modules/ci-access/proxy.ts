import * as grpc from '@grpc/grpc-js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import type { Gunzip } from 'node:zlib';
import type { AgentFrame, End, RequestHeader } from '../../gen/verdict/kubernetes_api.js';
import type { AgentRecord } from '../../server/agents/agent-registry.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { plainHttpHint } from '../../shared/plain-http.js';
import { writeThenDestroy } from '../../server/http-client-error.js';
import { decideAccess, impersonationFor } from './access.js';
import type { CiAccessConfigs } from './agent-configs.js';
import type { CiAccessConfig } from './config.js';
import type { AgentTunnels, TunnelCall } from './agent-tunnels.js';
import { answerKind } from './answer-kind.js';
import { acceptGzipFor, inflating } from './compression.js';
import { pipeFrames } from './frames.js';
import { headerLines, headersFromRaw, headersToNode } from './headers.js';
import { impersonateHeaders, impersonationRefusal, rawHeaderNames } from './impersonate.js';
import type { JobTokens } from './job-tokens.js';
import type { OpenJobRequests } from './job-streams.js';
import { FORWARDED_BEARER, type ForwardTarget, type ReplicaForwarder } from './replica-forward.js';
import { projectPath } from './kubeconfig.js';
import { STATUS_HEADERS, statusBody } from './status.js';

// The server's Kubernetes API proxy for CI/CD jobs: authenticates the job's
// `Bearer ci:<agent id>:<job token>`, checks that the agent's ci_access allows
// the job, strips the credentials and sends the request through one of the
// agent's Connect calls, piping body and response both ways with
// backpressure, for as long as either side keeps them open (watches, logs -f,
// exec): no timeout of its own.

export interface ProxyDeps {
  jobs: JobTokens;
  /** Ends open requests (watches, logs -f, exec) of tokens revoked or expired since they began. */
  open?: OpenJobRequests;
  agentById(id: number): AgentRecord | undefined;
  /** For requests another replica forwarded (they name the agent by name: ids are per replica). */
  agentByName?(name: string): AgentRecord | undefined;
  /** Kafka replicas: which other replicas hold the agent's calls, and how to send a request there. */
  replicas?: { holding(agent: string): ForwardTarget[]; forwarder: ReplicaForwarder; replica: string } | undefined;
  configs: CiAccessConfigs;
  /**
   * The configuration the agent runs (project and commit), when this server knows it (ServerModuleContext's
   * servedConfigOf): a moved agent runs its last configuration until the new project has a valid one, and that
   * commit's ci_access decides meanwhile, as GitOps serves from it. Else the registered project decides.
   */
  servedConfigOf?(agent: AgentRecord): { project: string; commit: string } | undefined;
  tunnels: AgentTunnels;
  /** The server's projects_dir: configuration projects are named by their path below it, as jobs name projects. */
  projectsDir?: string | undefined;
  /** Path prefix of the listener ("/" or e.g. "/k8s-proxy/"). */
  prefix: string;
  /** kubernetes_api.url is https:// while the listener is plain: a proxy in front terminates TLS, so kubectl does send tokens. */
  tlsInFront?: boolean;
  log: Logger;
  /** How long a request waits for a free call of a connected agent, and of one not connected (reconnecting). */
  waitMs?: { connected: number; absent: number };
}

interface Refusal {
  code: number;
  message: string;
}

interface Route {
  agent: AgentRecord;
  header: RequestHeader;
  jobToken: string;
  /** Forwarded by another replica: served here or refused, never forwarded again. */
  forwarded: boolean;
  /** The proxy asked for gzip on the client's behalf: a gzip answer is inflated for it. */
  inflate: boolean;
  /** A watch: broken off, it ends with an ERROR event. */
  watch: boolean;
}

/**
 * A request for an agent held by another replica, when this one does not know which configuration the agent runs:
 * sent there undecided, as the holder decides every forwarded request itself (replica-forward.ts). It carries no
 * RequestHeader, so it can only be forwarded, never served here.
 */
interface Undecided {
  agent: AgentRecord;
  jobToken: string;
  forwardTo: ForwardTarget[];
}

type Taken = { call: TunnelCall; release: () => void } | Refusal | { forwardTo: ForwardTarget[] };

// A token issued on another replica reaches this one through Kafka within a second or so.
const FORWARDED_TOKEN_WAIT_MS = 3000;

// The caller's credentials never reach the agent or the API server.
const CREDENTIALS = new Set(['authorization', 'cookie']);
// ci:<agent id>:<token> as in GitLab, or ci:<agent name>:<token>: ids are rowids of each Kafka replica's
// database, names are the same on all (`verdict kubeconfig` of a Kafka replica writes names).
const BEARER = /^Bearer\s+ci:([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?):(\S+)$/i;

export class KubernetesApiProxy {
  constructor(private readonly d: ProxyDeps) {}

  /**
   * Who is asking, for which agent, and whether they may: a Route or the refusal to answer with; or, for an agent
   * another replica holds and decides for, where to forward the request.
   */
  async route(req: IncomingMessage, upgrade: boolean): Promise<Route | Refusal | Undecided> {
    const url = req.url ?? '/';
    const prefix = this.d.prefix;
    if (!url.startsWith(prefix) && `${url}/` !== prefix)
      return { code: 404, message: `this listener serves the Kubernetes API under ${prefix}; use the server URL \`verdict kubeconfig\` prints` };
    const auth = req.headers.authorization;
    const fwd = auth ? FORWARDED_BEARER.exec(auth) : null;
    const m = auth ? (BEARER.exec(auth) ?? fwd) : null;
    if (!m) {
      return {
        code: 401,
        message: auth
          ? 'the Authorization header is not "Bearer ci:<agent id>:<CI job token>"; use the kubeconfig `verdict kubeconfig --ci-token <token>` prints'
          : `no credentials: send "Authorization: Bearer ci:<agent id>:<CI job token>", e.g. with the kubeconfig \`verdict kubeconfig --ci-token <token>\` prints${
              (req.socket as { encrypted?: boolean }).encrypted || this.d.tlsInFront ? '' : `; ${plainHttpHint('this listener', 'set kubernetes_api.url to')}`
            }`,
      };
    }
    let auth2 = this.d.jobs.authenticate(m[2]!);
    for (const until = Date.now() + FORWARDED_TOKEN_WAIT_MS; fwd && 'error' in auth2 && auth2.error.includes('unknown') && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 100));
      auth2 = this.d.jobs.authenticate(m[2]!);
    }
    if ('error' in auth2) return { code: 401, message: auth2.error };
    const job = auth2.job;
    const ref = m[1]!;
    const byId = !fwd && /^\d+$/.test(ref);
    const agent = byId ? this.d.agentById(Number(ref)) : this.d.agentByName?.(ref);
    if (!agent)
      return {
        code: 403,
        message: `agent is not allowed: no agent has ${byId ? `id ${ref}` : `the name "${ref}"`}; \`verdict kubeconfig\` lists the agents this job may use`,
      };
    let served = this.d.servedConfigOf?.(agent);
    // Moved away from the project whose config.yaml it runs: the agent no longer follows that project, so the commit
    // it was sent decides, not one pushed there since (which would grant access the agent never received).
    let pinned = served && served.project !== agent.config_project ? served : undefined;
    let runs = pinned?.project ?? agent.config_project;
    // The configuration project as jobs name projects (group/project): never the server's own path to it.
    let configProject = projectPath(runs, this.d.projectsDir);
    // Before any forwarding: a replica holding the agent may be older and pass the headers on (a rolling upgrade).
    const impersonating = impersonateHeaders(rawHeaderNames(req.rawHeaders));
    if (impersonating.length) return { code: 403, message: impersonationRefusal(impersonating, job.project, { agent: agent.name, configProject }) };
    if (!served && this.d.replicas && !this.d.tunnels.connected(agent.id)) {
      // The registered project may not be what the agent runs (a moved agent runs its old project's config.yaml until
      // the new one has a valid one): deciding with it here would refuse jobs the agent's configuration allows.
      // Forwarded here by a replica that saw this one hold the agent, which has just left (what it ran is forgotten
      // with its config stream): the client retries, and the replica the agent went to decides.
      if (fwd) return justLeft(agent.name, this.d.replicas.replica);
      // The replica holding the agent knows what it runs, and decides; one it has just moved to is known here within
      // a second or so, as takeCall waits for it.
      const to = await this.holderOf(agent, req);
      if (to.length) return { agent, jobToken: m[2]!, forwardTo: to };
      // Connected here meanwhile, or nowhere: what this server knows decides.
      served = this.d.servedConfigOf?.(agent);
      pinned = served && served.project !== agent.config_project ? served : undefined;
      runs = pinned?.project ?? agent.config_project;
      configProject = projectPath(runs, this.d.projectsDir);
    }
    let block: CiAccessConfig | undefined;
    try {
      block = await this.d.configs.get({ name: agent.name, config_project: runs }, pinned?.commit);
    } catch (e) {
      return {
        code: 503,
        message: `cannot read the configuration of agent "${agent.name}" to check its ci_access: ${errText(e)}; fix config.yaml in ${configProject}`,
      };
    }
    const decision = decideAccess(block, job, agent.name, configProject);
    if (!decision.allowed) return { code: 403, message: `agent is not allowed: ${decision.reason}` };
    const impersonation = impersonationFor(decision.access_as, { job, agentId: agent.id, configProject });
    const rest = url.startsWith(prefix) ? url.slice(prefix.length - 1) : '/';
    const headers = headersFromRaw(req.rawHeaders, { upgrade, drop: CREDENTIALS });
    (headers.via ??= { values: [] }).values.push(`${req.httpVersion} verdict-server`);
    const uri = rest.startsWith('/') ? rest : `/${rest}`;
    const kind = answerKind(uri);
    const inflate = !upgrade && acceptGzipFor(req.method ?? 'GET', kind, headers);
    return {
      agent,
      header: {
        method: req.method ?? 'GET',
        uri,
        headers,
        impersonation,
        job_id: job.id,
        project: job.project,
        // handle() reads a response that comes whole in its header frame; upgrade() takes frames only.
        whole_responses: !upgrade,
      },
      jobToken: m[2]!,
      forwarded: Boolean(fwd),
      inflate,
      watch: kind.watch,
    };
  }

  /** Serves one plain (not upgrading) request. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const r = await this.route(req, false);
    if ('code' in r) return refuse(res, r);
    if ('forwardTo' in r) return this.forward(req, res, r, r.forwardTo);
    const taken = await this.takeCall(r, req);
    if ('forwardTo' in taken) return this.forward(req, res, r, taken.forwardTo);
    if ('code' in taken) return refuse(res, taken);
    const { call, release } = taken;
    const agentId = r.agent.id;
    let log: Logger | undefined;
    let finished = false;
    let unregister: (() => void) | undefined;
    const finish = () => {
      finished = true;
      unregister?.();
      release();
    };
    // Whether this side's end frame went out: a call is given to another request only after both ends.
    let sentEnd = false;
    call.write({ msg: { $case: 'header', value: r.header } });
    pipeBody(req, call, () => (sentEnd = true));
    let answered = false;
    let bodyStarted = false;
    let draining = false;
    // Where the body goes: the client, or an inflater in front of it (compression.ts).
    let sink: NodeJS.WritableStream = res;
    let inflater: Gunzip | undefined;
    let bytesIn = 0;
    // Watches are newline-delimited JSON in chunks cut anywhere: an ERROR event goes in only between two lines.
    let atLineEnd = true;
    // A compressed (or inflated) body is no lines the client sees.
    let lines = true;
    // Broken off mid-response: a watch gets an ERROR event with the Status when it can take one (watch clients such
    // as client-go's reflector log its message), then the connection is broken, not ended, so no client takes it for
    // a response that simply ran out (kubectl would exit 0). Mid-line the ERROR would only be a JSON decode error.
    const breakOff = (code: number, message: string) => {
      if (r.watch && lines && atLineEnd)
        // Destroyed once written, or regardless after a while: a client that stopped reading would hold it open.
        writeThenDestroy(res, `${JSON.stringify({ type: 'ERROR', object: JSON.parse(statusBody(code, 'server', message)) })}\n`, false);
      else res.destroy(new Error(message));
    };
    const endResponse = (end: End, body?: Buffer) => {
      bodyStarted = true;
      if (Object.keys(end.trailers).length) res.addTrailers(headersToNode(end.trailers));
      // A whole response: headers and body in one write. An inflater ends the response once it has written
      // it all; with nothing to inflate (an empty body) there is nothing to wait for.
      const out = inflater && (bytesIn > 0 || body?.length) ? inflater : res;
      if (body?.length) out.end(body);
      else out.end();
      if (out !== inflater) inflater?.destroy();
      finish();
      // The agent waits for another request on this call (it said so, and has had this one's end):
      // the next request skips a new stream, its admission and the agent's wait for it.
      // Not while a write to the client waits for 'drain': its handler resumes the call.
      if (end.next && sentEnd && !draining && !call.cancelled && !call.destroyed) {
        detach();
        this.d.tunnels.add(agentId, call);
      } else call.end();
    };
    const onData = (f: AgentFrame) => {
      const msg = f.msg;
      if (!msg || finished) return;
      if (msg.$case === 'header') {
        answered = true;
        const inflated = r.inflate ? inflating(msg.value.status, msg.value.headers, res) : undefined;
        if (inflated) {
          inflater = inflated.body;
          sink = inflater;
          inflater.once('error', (e) => {
            log ??= this.d.log.child({ agent_name: r.agent.name, ci_job_id: r.header.job_id });
            log.warn({ error: errText(e) }, "CI tunnel: cannot inflate the API server's gzip answer for a client that did not ask for gzip");
            res.destroy(e);
          });
        }
        if (inflated || msg.value.headers['content-encoding']) lines = false;
        res.writeHead(msg.value.status, headersToNode(inflated?.headers ?? msg.value.headers));
        if (msg.value.end) return endResponse(msg.value.end, msg.value.body);
        // A watch may send nothing for minutes, so the headers go out by the end of this turn; the body
        // that mostly comes in the same turn (the agent sends its first bytes with the header) takes them
        // along in one write, rather than a TLS record and a packet of their own.
        setImmediate(() => {
          if (!bodyStarted && !res.destroyed) res.flushHeaders();
        });
      } else if (msg.$case === 'data') {
        bodyStarted = true;
        bytesIn += msg.value.length;
        if (lines && msg.value.length) atLineEnd = msg.value[msg.value.length - 1] === 0x0a;
        if (!sink.write(msg.value)) {
          call.pause();
          draining = true;
          sink.once('drain', () => {
            draining = false;
            call.resume();
          });
        }
      } else endResponse(msg.value);
    };
    const lost = (why: string) => {
      if (finished) return;
      finish();
      const message = `the agent "${r.agent.name}" disconnected before it finished answering (${why}); the request may or may not have reached the API server. Check the agent's log and that it is connected, then retry`;
      log ??= this.d.log.child({ agent_name: r.agent.name, ci_job_id: r.header.job_id });
      log.warn({ error: why }, 'CI tunnel: the agent went away mid-request');
      if (!answered) return refuse(res, { code: 502, message });
      breakOff(502, message);
    };
    const onError = (e: Error) => lost(errText(e));
    const onEnd = () => lost('its call ended');
    const onCancelled = () => lost('its call was cancelled');
    const detach = () => {
      call.off('data', onData);
      call.off('error', onError);
      call.off('end', onEnd);
      call.off('cancelled', onCancelled);
    };
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
    call.on('cancelled', onCancelled);
    res.on('close', () => {
      if (finished) return;
      // The client went away (kubectl interrupted, a watch stopped): tell the agent to drop the request.
      finish();
      call.emit('error', { code: grpc.status.CANCELLED, details: 'the client closed the request' });
    });
    // The token revoked or expired mid-request: the client gets a 401 Status as at the start of a request
    // (mid-response as breakOff says), and the agent drops the request.
    unregister = this.d.open?.add(r.header.job_id, (message) => {
      if (finished) return;
      finish();
      if (!answered) refuse(res, { code: 401, message });
      else breakOff(401, message);
      call.emit('error', { code: grpc.status.CANCELLED, details: 'the CI job token was revoked or expired' });
    });
  }

  /** Serves a request that upgrades its connection (exec, attach, port-forward): after a 101 the socket and the call are piped raw. */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const r = await this.route(req, true);
    if ('code' in r) return refuseSocket(socket, r);
    if ('forwardTo' in r) return this.forwardUpgrade(req, socket, head, r, r.forwardTo);
    const taken = await this.takeCall(r, req);
    if ('forwardTo' in taken) return this.forwardUpgrade(req, socket, head, r, taken.forwardTo);
    if ('code' in taken) return refuseSocket(socket, taken);
    const { call, release: releaseCall } = taken;
    let done = false;
    let unregister: (() => void) | undefined;
    const release = () => {
      unregister?.();
      releaseCall();
    };
    const finish = () => {
      if (done) return;
      done = true;
      release();
      socket.destroy();
    };
    // A Status before the 101: the socket closes once it is written (refuseSocket), not at once.
    const refuseThenFinish = (refusal: Refusal) => {
      if (done) return;
      done = true;
      release();
      refuseSocket(socket, refusal);
    };
    call.write({ msg: { $case: 'header', value: r.header } });
    if (head.length) call.write({ msg: { $case: 'data', value: head } });
    let answered = false;
    call.on('data', (f: AgentFrame) => {
      const msg = f.msg;
      if (!msg) return;
      if (msg.$case === 'header') {
        answered = true;
        socket.write(`HTTP/1.1 ${msg.value.status} ${STATUS_CODES[msg.value.status] ?? ''}\r\n${headerLines(headersToNode(msg.value.headers))}\r\n`);
        // Only now may the client's bytes flow: before the 101 they would be a request body the API server refuses.
        pipeBody(socket, call);
      } else if (msg.$case === 'data') {
        if (!socket.write(msg.value)) {
          call.pause();
          socket.once('drain', () => call.resume());
        }
      } else {
        socket.end();
        done = true;
        release();
        call.end();
      }
    });
    const lost = (why: string) => {
      if (done) return;
      if (!answered)
        refuseThenFinish({ code: 502, message: `the agent "${r.agent.name}" disconnected before it answered (${why}); check the agent's log, then retry` });
      else finish();
    };
    call.on('error', (e: Error) => lost(errText(e)));
    call.on('end', () => lost('its call ended'));
    socket.on('close', () => {
      if (done) return;
      done = true;
      release();
      call.emit('error', { code: grpc.status.CANCELLED, details: 'the client closed the connection' });
    });
    socket.on('error', () => undefined);
    // The token revoked or expired: exec, attach and port-forward end (before the 101, with the 401 Status).
    unregister = this.d.open?.add(r.header.job_id, (message) => {
      if (done) return;
      if (!answered) refuseThenFinish({ code: 401, message });
      else finish();
      call.emit('error', { code: grpc.status.CANCELLED, details: 'the CI job token was revoked or expired' });
    });
  }

  /**
   * The replicas holding the agent, waited for as takeCall waits (an agent that moves shows up within a second):
   * none when it connects here meanwhile, the client leaves, or none shows up in time.
   */
  private async holderOf(agent: AgentRecord, req: IncomingMessage): Promise<ForwardTarget[]> {
    const replicas = this.d.replicas!;
    const until = Date.now() + (this.d.waitMs?.absent ?? 2_000);
    for (;;) {
      const to = replicas.holding(agent.name);
      if (to.length || this.d.tunnels.connected(agent.id) || req.destroyed || Date.now() >= until) return to;
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, until - Date.now()))));
    }
  }

  /**
   * One of the agent's calls here, waiting for one as long as waitMs says; on a
   * Kafka replica, the replicas holding its calls when there are none here
   * (looked up again while waiting: an agent that moves shows up within a second).
   */
  private async takeCall(r: Route, req: IncomingMessage): Promise<Taken> {
    const agent = r.agent;
    const wait = this.d.waitMs ?? { connected: 10_000, absent: 2_000 };
    const replicas = r.forwarded ? undefined : this.d.replicas;
    const here = this.d.tunnels.connected(agent.id);
    const elsewhere = () => (here || !replicas ? [] : replicas.holding(agent.name));
    let to = elsewhere();
    if (to.length) return { forwardTo: to };
    const abort = new AbortController();
    const onClose = () => abort.abort();
    req.once('close', onClose);
    try {
      for (const until = Date.now() + (here ? wait.connected : wait.absent); ; ) {
        const left = until - Date.now();
        const taken = await this.d.tunnels.take(agent.id, replicas && !here ? Math.min(left, 200) : left, abort.signal);
        if (taken) return taken;
        to = elsewhere();
        if (to.length) return { forwardTo: to };
        if (abort.signal.aborted || Date.now() >= until) break;
      }
    } finally {
      req.off('close', onClose);
    }
    const check =
      'check that it runs, that its config.yaml has a ci_access block (the agent logs "CI tunnel: ready") and that it reaches the server, then retry';
    if (r.forwarded && this.d.replicas) return justLeft(agent.name, this.d.replicas.replica);
    const busy = this.d.tunnels.busyCalls(agent.id);
    if (busy > 0)
      return {
        code: 503,
        message: `the agent "${agent.name}" is connected, but its ${busy} call${busy === 1 ? '' : 's'} to this server ${busy === 1 ? 'is' : 'are'} busy with other requests (a watch, logs -f or exec holds one until it ends) and it offered no free one within ${Math.round((here ? wait.connected : wait.absent) / 1000)} s: it may be shutting down or restarting its ci_access part; check the agent's log, then retry`,
      };
    if (this.d.replicas) return { code: 503, message: `the agent "${agent.name}" is not connected to any replica of this server; ${check}` };
    return { code: 503, message: `the agent "${agent.name}" is not connected to this server; ${check}` };
  }

  /** Sends the request to a replica holding the agent's calls, which decides it again (replica-forward.ts). */
  private async forward(req: IncomingMessage, res: ServerResponse, r: Route | Undecided, to: ForwardTarget[]): Promise<void> {
    if (await this.d.replicas!.forwarder.forward(req, res, to, { agentName: r.agent.name, jobToken: r.jobToken })) return;
    refuse(res, this.unreachable(r.agent.name, to));
  }

  private async forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, r: Route | Undecided, to: ForwardTarget[]): Promise<void> {
    if (await this.d.replicas!.forwarder.forwardUpgrade(req, socket, head, to, { agentName: r.agent.name, jobToken: r.jobToken })) return;
    refuseSocket(socket, this.unreachable(r.agent.name, to));
  }

  private unreachable(agent: string, to: readonly ForwardTarget[]): Refusal {
    return {
      code: 503,
      message: `the agent "${agent}" is connected to another replica of this server (${to.map((t) => `${t.replica} at ${t.address}`).join(', ')}), which this one cannot reach; check the network between replicas (kubernetes_api.listen must be reachable from the others), then retry`,
    };
  }
}

/** A forwarded request for an agent that has just left this replica: retryable, the replica it went to decides. */
function justLeft(agent: string, replica: string): Refusal {
  return {
    code: 503,
    message: `the agent "${agent}" is not connected to this server (replica ${replica}, to which another replica forwarded the request: the agent has just left it); retry`,
  };
}

/** Client bytes into the call, with backpressure; an end frame when the client is done, then `sent`. */
function pipeBody(from: NodeJS.ReadableStream, call: TunnelCall, sent?: () => void): void {
  pipeFrames(from, call, () => {
    if (call.destroyed) return;
    call.write({ msg: { $case: 'end', value: { trailers: {}, next: false } } });
    sent?.();
  });
}

function refuse(res: ServerResponse, r: Refusal): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = statusBody(r.code, 'server', r.message);
  res.writeHead(r.code, { ...STATUS_HEADERS, 'content-length': Buffer.byteLength(body) }).end(body);
}

/** Answers with a Status and closes the socket once it is written, or after a while when the client does not read. */
function refuseSocket(socket: Duplex, r: Refusal): void {
  const body = statusBody(r.code, 'server', r.message);
  writeThenDestroy(
    socket,
    `HTTP/1.1 ${r.code} ${STATUS_CODES[r.code] ?? ''}\r\n${headerLines({ ...STATUS_HEADERS, 'content-length': Buffer.byteLength(body), connection: 'close' })}\r\n${body}`,
  );
}
