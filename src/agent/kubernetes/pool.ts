import { createHash } from 'node:crypto';
import { Agent as HttpAgent, type AgentOptions } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tlsConnectOptions, type TlsConnectOptions, type TlsMaterial } from './tls-material.js';

// The agent's keep-alive connections to the API server, one pool per set of
// TLS material, shared by every connection and so by every module (the policy
// watch, GitOps, the CI tunnel): a module that restarts, or a second module
// with the same kubeconfig, finds the connections already open. Credentials
// (bearer tokens, impersonation) travel per request in headers, so requests
// of different identities share a connection as they do in client-go; a client
// certificate is part of the material, so it gets its own pool.

/**
 * Idle connections are closed well before the API server's own idle timeout
 * (90 s), so one is seldom reused as the server closes it. Only idle ones:
 * Node's agent leaves a busy socket's timeout to its request (a quiet watch).
 */
const IDLE_MS = 30_000;
/**
 * Idle connections kept per pool: as many as the largest burst the agent's
 * modules send at once (a GitOps wave: 32 objects, src/modules/gitops/pool.ts),
 * so the next burst finds them open, and no more, so an agent holds few idle
 * sockets on the API server (Node's default keeps 256). The policy watch's and
 * the CI tunnel's requests draw on the same connections.
 */
const MAX_FREE = 32;
/**
 * Pools kept: one per material, and material changes seldom (a rotated CA or
 * certificate); past this the least recently used pool is retired.
 */
export const MAX_POOLS = 8;

const OPTIONS: AgentOptions = { keepAlive: true, maxFreeSockets: MAX_FREE, timeout: IDLE_MS };

/**
 * One API server and one set of TLS material per pool, so a connection's name
 * needs neither the material nor more than host and port: Node's https.Agent
 * spells the CA, certificate and key out as strings in the name, on each
 * request and again each time a connection is freed.
 */
class MaterialAgent extends HttpsAgent {
  override getName(options?: Parameters<HttpAgent['getName']>[0]): string {
    return HttpAgent.prototype.getName.call(this, options);
  }
}

/** Makes the agent for a proxy-url (the client library's, which knows http, https and socks proxies), given the agent options. */
export type ProxyAgentFactory = (options: AgentOptions & TlsConnectOptions) => HttpAgent;

/** In order of last use, the most recent last. */
const pools = new Map<string, HttpAgent>();
const keys = new WeakMap<TlsMaterial, { http?: string; https?: string }>();
/** The key of the pool used last: a request to it, the usual case, leaves the order as it is. */
let newest: string | undefined;

/**
 * The keep-alive agent for requests to a server of this protocol with this
 * material; the same one for equal material, whichever connection asks.
 */
export function kubeAgent(protocol: string, m: TlsMaterial, proxyAgent: ProxyAgentFactory): HttpAgent {
  const https = protocol === 'https:';
  let k = keys.get(m);
  if (!k) keys.set(m, (k = {}));
  const name = https ? 'https' : 'http';
  const key = (k[name] ??= poolKey(https, m));
  let agent = pools.get(key);
  if (agent) {
    if (key !== newest) {
      pools.delete(key);
      pools.set(key, agent);
    }
  } else {
    if (pools.size >= MAX_POOLS) retire(pools.keys().next().value as string);
    const tls = tlsConnectOptions(m);
    agent = m.proxy ? proxyAgent({ ...OPTIONS, ...tls }) : https ? new MaterialAgent({ ...OPTIONS, ...tls }) : new HttpAgent(OPTIONS);
    pools.set(key, agent);
  }
  newest = key;
  return agent;
}

/** Material that is no longer in use (a rotated CA): its pool takes no new requests, and its connections close as their requests end. */
function retire(key: string): void {
  const agent = pools.get(key);
  pools.delete(key);
  if (!agent) return;
  // Node's agent reads keepAlive each time a connection is freed: with it off, each connection closes as its request ends.
  (agent as HttpAgent & { keepAlive: boolean }).keepAlive = false;
  for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
}

/** The material spelled once per version of it: digests of the certificates, so a key is short and holds no key material. */
function poolKey(https: boolean, m: TlsMaterial): string {
  const digest = (b: Buffer | string | undefined) => (b === undefined ? '' : createHash('sha256').update(b).digest('base64'));
  return JSON.stringify([https, m.proxy ?? '', m.servername ?? '', m.rejectUnauthorized ?? true, digest(m.ca), digest(m.cert), digest(m.key)]);
}
