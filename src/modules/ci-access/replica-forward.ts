import { request, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { splitHostPort } from '../../shared/config/host-port.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { STATUS_HEADERS, statusBody } from './status.js';

// A request for an agent whose Connect calls are held by another replica goes
// there over HTTP/1.1 (upgrades too), to that replica's Kubernetes API proxy.
// The receiving replica trusts nothing the sending one decided: the request
// carries the job's own token with the agent named by name
// (`Bearer ci-replica:<agent name>:<job token>`, agent ids being per replica),
// and it authenticates the token and checks ci_access itself. So a caller
// that sends that form directly gains nothing its token would not give it
// anyway; the form only says "do not forward again", which keeps a request
// from bouncing between replicas whose routes are a moment out of date.
//
// The token crosses between replicas, so with TLS the peer must show this
// replica's own certificate (replicas run with the same tls block): a
// listener that is not a Verdict replica never sees it.

export interface ForwardTarget {
  replica: string;
  /** host:port of its Kubernetes API proxy */
  address: string;
  tls: boolean;
}

export const FORWARDED_BEARER = /^Bearer\s+ci-replica:([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?):(\S+)$/i;

const CONNECT_TIMEOUT_MS = 3000;
// Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'authorization']);

export interface ForwardAuth {
  agentName: string;
  jobToken: string;
}

export class ReplicaForwarder {
  private readonly ownCert: Buffer | undefined;

  constructor(
    tlsCert: Buffer | undefined,
    private readonly log: Logger,
  ) {
    this.ownCert = tlsCert ? new X509Certificate(tlsCert).raw : undefined;
  }

  /** A connection to the target, TLS checked against this replica's certificate. */
  private connect(t: ForwardTarget): Promise<Socket | TLSSocket> {
    const { host, port } = splitHostPort(t.address);
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        s.destroy();
        reject(e);
      };
      const timer = setTimeout(() => fail(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      const s: Socket | TLSSocket = t.tls
        ? tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
            clearTimeout(timer);
            const peer = (s as TLSSocket).getPeerX509Certificate()?.raw;
            if (!this.ownCert || !peer?.equals(this.ownCert))
              return fail(new Error("the replica's certificate is not this server's; give every replica the same tls certificate"));
            resolve(s);
          })
        : tcpConnect({ host, port }, () => {
            clearTimeout(timer);
            resolve(s);
          });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** The first target that answers gets the request; false when none could be reached (nothing was sent: the caller answers). */
  async forward(req: IncomingMessage, res: ServerResponse, targets: readonly ForwardTarget[], auth: ForwardAuth): Promise<boolean> {
    for (const t of targets) {
      let sock: Socket;
      try {
        sock = await this.connect(t);
      } catch (e) {
        this.log.warn({ replica: t.replica, address: t.address, error: errText(e) }, 'CI tunnel: cannot reach the replica holding the agent');
        continue;
      }
      const headers: OutgoingHttpHeaders = { ...messageHeaders(req.rawHeaders), authorization: `Bearer ci-replica:${auth.agentName}:${auth.jobToken}` };
      let out: ClientRequest;
      try {
        // No agent: with one, Node would ignore createConnection and dial the URL's host itself.
        out = request({ method: req.method, path: req.url, headers, createConnection: () => sock });
      } catch (e) {
        sock.destroy();
        throw e;
      }
      out.on('response', (up: IncomingMessage) => {
        const h: [string, string][] = [];
        for (let i = 0; i < up.rawHeaders.length; i += 2) if (!HOP.has(up.rawHeaders[i]!.toLowerCase())) h.push([up.rawHeaders[i]!, up.rawHeaders[i + 1]!]);
        res.writeHead(up.statusCode ?? 502, h.flat());
        // A watch may send nothing for minutes.
        res.flushHeaders();
        up.pipe(res);
        up.on('error', () => res.destroy());
        // Cut mid-answer (the replica or its agent went away): broken, not ended, so the client does not take it for complete.
        up.on('aborted', () => res.destroy());
      });
      out.on('error', (e) => {
        this.log.warn({ replica: t.replica, error: errText(e) }, 'CI tunnel: the replica holding the agent failed mid-request');
        if (res.headersSent) return void res.destroy();
        const body = statusBody(
          502,
          'server',
          `replica ${t.replica}, which holds the agent "${auth.agentName}", failed before it answered (${errText(e)}); the request may or may not have reached the API server, retry`,
        );
        res.writeHead(502, { ...STATUS_HEADERS, 'content-length': Buffer.byteLength(body) }).end(body);
      });
      res.on('close', () => {
        if (!res.writableFinished) out.destroy();
      });
      req.pipe(out);
      return true;
    }
    return false;
  }

  /** An upgrade (exec, attach, port-forward): the request head is rewritten, then bytes flow raw both ways. */
  async forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, targets: readonly ForwardTarget[], auth: ForwardAuth): Promise<boolean> {
    for (const t of targets) {
      let up: Socket;
      try {
        up = await this.connect(t);
      } catch (e) {
        this.log.warn({ replica: t.replica, address: t.address, error: errText(e) }, 'CI tunnel: cannot reach the replica holding the agent');
        continue;
      }
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        if (req.rawHeaders[i]!.toLowerCase() !== 'authorization') lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      lines.push(`Authorization: Bearer ci-replica:${auth.agentName}:${auth.jobToken}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      socket.pipe(up).pipe(socket);
      const close = () => {
        up.destroy();
        socket.destroy();
      };
      up.on('error', close).on('close', close);
      socket.on('error', close).on('close', close);
      return true;
    }
    return false;
  }
}

/** The request's end-to-end headers, repeated ones joined as Node sends them. */
function messageHeaders(raw: readonly string[]): OutgoingHttpHeaders {
  const all: Record<string, string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP.has(k)) continue;
    (all[k] ??= []).push(raw[i + 1]!);
  }
  // Node takes a list only where a header may repeat (not Host, for one).
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.length === 1 ? v[0]! : v]));
}
