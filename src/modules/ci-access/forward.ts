import * as grpc from '@grpc/grpc-js';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { KubeConnection, KubeRequestOptions } from '../../agent/kubernetes/connection.js';
import { explainNoAnswer } from '../../agent/kubernetes/explain.js';
import { InFlight } from '../../agent/kubernetes/in-flight.js';
import type { AgentFrame, End, Impersonation, RequestHeader, ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { answerKind } from './answer-kind.js';
import { pipeFrames } from './frames.js';
import { headersFromRaw, headersToNode, type HeaderMap } from './headers.js';
import { impersonateHeaders, impersonationRefusal } from './impersonate.js';
import { statusBody, STATUS_HEADERS } from './status.js';

// The agent's side of one proxied request: sends it to the API server with the
// agent's own credentials, as whom the server says (access_as), and pipes the
// answer back on the same call, with backpressure both ways. An upgrade (exec,
// attach, port-forward) becomes a raw two-way pipe after the 101.

export type AgentCall = grpc.ClientDuplexStream<AgentFrame, ServerFrame>;

const NO_BODY = Buffer.alloc(0);
/** The largest body sent in its response's header frame: the generated codec copies it, so not a list's. */
const WHOLE_RESPONSE_BYTES = 64 << 10;
/** How long a frame of a body its client reads whole gathers (frames.ts); streams (answer-kind.ts) go as they come. */
const LINGER_MS = 10;

/** Impersonate-* headers for an identity, as client-go writes them (extra keys percent-encoded). */
export function impersonationHeaders(i: Impersonation): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = { 'impersonate-user': i.username };
  if (i.groups.length) h['impersonate-group'] = i.groups;
  if (i.uid) h['impersonate-uid'] = i.uid;
  for (const [k, v] of Object.entries(i.extra)) h[`impersonate-extra-${encodeURIComponent(k)}`] = v.values;
  return h;
}

export class ApiForwarder {
  /** Requests not yet over (upgraded ones leave at the 101), ended by close(). */
  private readonly open = new InFlight();
  private readonly base: URL;

  constructor(
    private readonly kube: KubeConnection,
    private readonly log: Logger,
  ) {
    this.base = new URL(kube.server);
  }

  /**
   * Serves the request whose header arrived on the call; resolves when it is
   * over, with true when the call was kept for another request: keep() said
   * so when the response ended, after the request's end had arrived (a plain
   * request, not an upgrade). The call is then paused, its listeners removed;
   * else it is ended.
   */
  async forward(call: AgentCall, h: RequestHeader, keep: () => boolean = () => false): Promise<boolean> {
    // Frames that come while we get credentials wait in the call's buffer.
    call.pause();
    const upgrade = Boolean(h.headers.upgrade);
    // The server refuses these too (proxy.ts): an older server may not, and with this agent's broad impersonate
    // grant a job's own headers would make it act as anyone, whatever access_as says.
    const impersonating = impersonateHeaders(Object.keys(h.headers));
    if (impersonating.length) {
      answer(call, h, 403, impersonationRefusal(impersonating, h.project));
      return false;
    }
    let opts: KubeRequestOptions;
    try {
      opts = await this.kube.requestOptions();
    } catch (e) {
      answer(call, h, 502, `cannot get credentials for the Kubernetes API server: ${errText(e)}`);
      return false;
    }
    const headers: Record<string, string | string[]> = {
      ...headersToNode(withoutHost(h.headers)),
      ...opts.headers,
      ...(h.impersonation ? impersonationHeaders(h.impersonation) : {}),
    };
    const https = this.base.protocol === 'https:';
    const { headers: _, ...tls } = opts;
    const req: ClientRequest = (https ? httpsRequest : httpRequest)({
      // With the agent's keep-alive pool (src/agent/kubernetes/pool.ts), upgrades included: an upgraded
      // connection leaves the pool at the 101 (Node's agent lets it go), so a long exec holds no pooled socket.
      ...tls,
      protocol: this.base.protocol,
      hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
      port: this.base.port || (https ? 443 : 80),
      method: h.method,
      path: `${this.base.pathname.replace(/\/+$/, '')}${h.uri}`,
      headers,
    });
    this.open.add(req);
    req.setNoDelay(true);
    // An upgrade request has no body: its headers go now, and bytes the client sends come after the 101.
    if (upgrade) req.end();
    let upgraded: Socket | undefined;
    const early: Buffer[] = [];
    let answered = false;
    let over = false;
    // The server's end of this request arrived: what comes next on the call is another request.
    let requestEnded = false;
    let draining = false;
    let kept = false;
    // Why the call ended before the response did, when it did: the server cancels it for the client (kubectl went
    // away, a watch it stopped, its token revoked); a tunnel that fails ends it with another status (UNAVAILABLE,
    // INTERNAL). Neither is the API server breaking off its response.
    let callEnded: { byClient: boolean; error: string } | undefined;
    // This agent's own cancel reads as CANCELLED too: no client did that.
    let cancelledHere = false;
    const cancel = () => {
      cancelledHere = true;
      call.cancel();
    };
    const onError = (e: Partial<grpc.ServiceError>) => {
      callEnded = { byClient: e.code === grpc.status.CANCELLED && !cancelledHere, error: e.details ?? errText(e) };
      if (!over) req.destroy();
    };
    const done = new Promise<void>((resolve) => {
      const finish = () => {
        over = true;
        resolve();
      };
      req.on('response', (res: IncomingMessage) => {
        answered = true;
        const status = res.statusCode ?? 502;
        const headers = headersFromRaw(res.rawHeaders);
        // Decided once the response is over: whether the call waits for the server's next request.
        const end = (): End => {
          // Not with a write to the API server still waiting for 'drain': its handler resumes the call.
          kept = requestEnded && !draining && !call.destroyed && keep();
          return { trailers: headersFromRaw(res.rawTrailers), next: kept };
        };
        const over = () => {
          if (kept) {
            call.off('data', onData);
            call.off('error', onError);
            call.pause();
          } else call.end();
          finish();
        };
        // A response complete within the turn it began in (most GETs), to a server that reads it so, goes as one
        // frame: the agent's side of the call writes a frame only once the one before has gone out, so each frame
        // is a write of its own and a wake-up of the server.
        const whole = (body: Buffer) => {
          call.write({ msg: { $case: 'header', value: { status, headers, body, end: end() } } });
          over();
        };
        pipeFrames(
          res,
          call,
          () => {
            call.write({ msg: { $case: 'end', value: end() } });
            over();
          },
          {
            before: () => call.write({ msg: { $case: 'header', value: { status, headers, body: NO_BODY, end: undefined } } }),
            ...(h.whole_responses ? { whole, wholeUpTo: WHOLE_RESPONSE_BYTES } : {}),
            ...(answerKind(h.uri).stream ? {} : { lingerMs: LINGER_MS }),
          },
        );
        res.on('error', (e) => {
          if (callEnded?.byClient)
            this.log.debug(
              { error: errText(e), ci_job_id: h.job_id },
              'CI tunnel: the client ended the request (kubectl stopped a watch or logs -f); dropped the response',
            );
          else if (callEnded)
            this.log.warn(
              { error: callEnded.error, ci_job_id: h.job_id },
              "CI tunnel: the call to the server failed mid-response (the server or the network between them); dropped the API server's response",
            );
          else this.log.warn({ error: errText(e) }, 'CI tunnel: the API server broke off a response');
          cancel();
          finish();
        });
      });
      req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
        answered = true;
        call.write({
          msg: {
            $case: 'header',
            value: { status: res.statusCode ?? 101, headers: headersFromRaw(res.rawHeaders, { upgrade: true }), body: NO_BODY, end: undefined },
          },
        });
        if (head.length) call.write({ msg: { $case: 'data', value: head } });
        socket.setNoDelay(true);
        pipeFrames(socket, call, () => {
          call.write({ msg: { $case: 'end', value: { trailers: {}, next: false } } });
          call.end();
        });
        socket.on('close', finish);
        socket.on('error', () => cancel());
        call.on('error', () => socket.destroy());
        // From here on the server's data frames are raw bytes for the socket.
        upgraded = socket;
        for (const b of early.splice(0)) socket.write(b);
      });
      req.on('error', (e) => {
        if (kept) return;
        if (!answered)
          // No answer at all (a refused connection, a certificate the agent cannot verify): the server's own 401s and 403s reach kubectl as they are.
          answer(call, h, 502, explainNoAnswer(e, this.kube));
        else cancel();
        finish();
      });
    });
    const onData = (f: ServerFrame) => {
      const msg = f.msg;
      if (!msg || msg.$case === 'header') return;
      if (upgrade && !upgraded) {
        if (msg.$case === 'data') early.push(msg.value);
        return;
      }
      const to: NodeJS.WritableStream = upgraded ?? req;
      if (msg.$case === 'data') {
        if (!to.write(msg.value)) {
          call.pause();
          draining = true;
          (upgraded ?? req).once('drain', () => {
            draining = false;
            call.resume();
          });
        }
      } else if (upgraded) upgraded.end();
      else {
        requestEnded = !upgrade;
        req.end();
      }
    };
    call.on('data', onData);
    // The server ends the call with an error when kubectl goes away: stop the request (a watch, logs -f).
    call.on('error', onError);
    call.resume();
    await done;
    return kept;
  }

  /** Ends the requests in flight; the connections are the agent's pool, which other modules share. */
  close(): void {
    this.open.destroyAll();
  }
}

function withoutHost(h: HeaderMap): HeaderMap {
  const { host: _, ...rest } = h;
  return rest;
}

/**
 * The forwarder of an agent that has no Kubernetes credentials: it keeps its calls to the server, so a CI job is told
 * that the agent cannot reach its cluster's API server and why, rather than that the agent is not connected.
 */
export class NoClusterForwarder {
  constructor(private readonly why: string) {}

  async forward(call: AgentCall, h: RequestHeader): Promise<boolean> {
    answer(call, h, 502, `cannot reach this cluster's Kubernetes API server: ${this.why}`);
    return false;
  }

  close(): void {}
}

/** Answers the call with a Status from the agent and ends it. */
function answer(call: AgentCall, h: RequestHeader, code: number, message: string): void {
  const body = Buffer.from(statusBody(code, 'agent', message));
  const headers = Object.fromEntries(Object.entries({ ...STATUS_HEADERS, 'content-length': String(body.length) }).map(([k, v]) => [k, { values: [v] }]));
  const end: End = { trailers: {}, next: false };
  if (h.whole_responses) call.write({ msg: { $case: 'header', value: { status: code, headers, body, end } } });
  else {
    call.write({ msg: { $case: 'header', value: { status: code, headers, body: NO_BODY, end: undefined } } });
    call.write({ msg: { $case: 'data', value: body } });
    call.write({ msg: { $case: 'end', value: end } });
  }
  call.end();
  call.resume();
}
