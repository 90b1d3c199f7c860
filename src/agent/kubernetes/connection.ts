import { existsSync, readFileSync } from 'node:fs';
import type { Agent as HttpAgent } from 'node:http';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { KubeConfig, type Cluster, type Context, type User } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { kubeAgent, type ProxyAgentFactory } from './pool.js';
import { TlsFiles, tlsConnectOptions, type TlsMaterial } from './tls-material.js';
import { errText } from '../../shared/log/logger.js';

// How the agent reaches the Kubernetes API server, shared by every module that
// needs it (the Cilium policy watch, GitOps, the CI tunnel). Loading is
// @kubernetes/client-node's KubeConfig (contexts, CA data and files, client
// certificates, bearer tokens, exec and auth-provider plugins, proxy-url,
// tls-server-name); this file adds what it gets wrong against kubectl:
// KUBECONFIG lists merge first-wins (the library lets later files override the
// current context and throws on a repeated name), `tokenFile` users (the
// library reads a `token-file` key kubectl never writes, and once), and
// connections: the library reads the CA and certificate files and makes a new
// https.Agent, without keep-alive, for every request. Here the TLS material is
// read once and again when its files change (tls-material.ts), and requests
// share keep-alive connections per material (pool.ts).

/** What one request needs: TLS options, the agent, and the Authorization (or impersonation) headers. */
export type KubeRequestOptions = Omit<RequestOptions, 'headers'> & { headers: Record<string, string> };

/** A way to the API server; requestOptions() is called before every request. */
export interface KubeConnection {
  /** https://host:port of the API server, as the cluster entry gives it */
  readonly server: string;
  /** Where the credentials come from, for messages: "in-cluster service account" or "kubeconfig <file> (context <name>)". */
  readonly source: string;
  /** The namespace of the context or of the pod's service account, if any. */
  readonly namespace?: string;
  /**
   * TLS material, credentials and the agent for one request. The agent is the
   * process's keep-alive pool for this TLS material (a proxy-url's agent when
   * there is one): pass it on, so requests share connections. Credentials are
   * fresh each call: projected service account tokens and token files are
   * read again, exec plugins run again once their credential has expired.
   */
  requestOptions(): Promise<KubeRequestOptions>;
  /**
   * The server answered 401: forget cached credentials (an exec plugin's, kept
   * until its expirationTimestamp) so the next request gets new ones, as
   * client-go does when a credential is revoked before it expires.
   */
  credentialsRejected?(): void;
}

interface KubeLookup {
  /** --kubeconfig: one file, as kubectl's flag (KUBECONFIG is then ignored). */
  kubeconfig?: string | undefined;
  /** Defaults to process.env: KUBECONFIG, KUBERNETES_SERVICE_HOST/PORT, HOME. */
  env?: NodeJS.ProcessEnv;
  /** Prefixed to the service account mount /var/run/secrets/kubernetes.io/serviceaccount (tests use a directory of their own). */
  pathPrefix?: string;
}

/**
 * Where to find the credentials. Unless a kubeconfig is given, `noCredentials` says what to do when none are found,
 * for the part asking: the fix differs (cilium can stop watching policies, GitOps and the CI tunnel cannot), so there
 * is no default one.
 */
export type KubeConnectionOptions = KubeLookup & ({ kubeconfig: string; noCredentials?: string } | { noCredentials: string });

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Whether the agent was told where Kubernetes is: a pod's service account, --kubeconfig or KUBECONFIG. */
export function kubernetesConfigured(o: KubeLookup = {}): boolean {
  const env = o.env ?? process.env;
  return Boolean(o.kubeconfig || env.KUBECONFIG?.split(delimiter).some((f) => f) || env.KUBERNETES_SERVICE_HOST);
}

/**
 * The connection kubectl would use, in its order: --kubeconfig, else the
 * files of KUBECONFIG (merged), else the pod's service account, else
 * ~/.kube/config. Throws with what to do when there is none or it is unusable.
 */
export function kubeConnection(o: KubeConnectionOptions): KubeConnection {
  const env = o.env ?? process.env;
  if (o.kubeconfig) return fromFiles([o.kubeconfig], '--kubeconfig');
  const listed = env.KUBECONFIG?.split(delimiter).filter((f) => f) ?? [];
  if (listed.length > 0) {
    // kubectl skips listed files that do not exist, but not when none does.
    const present = listed.filter((f) => existsSync(f));
    if (present.length === 0) throw new Error(`none of the files in KUBECONFIG (${listed.join(delimiter)}) exists; fix KUBECONFIG or pass --kubeconfig`);
    return fromFiles(present, 'KUBECONFIG');
  }
  if (env.KUBERNETES_SERVICE_HOST) return inCluster(env, o.pathPrefix ?? '');
  const home = env.HOME ?? homedir();
  const file = join(home, '.kube', 'config');
  if (home && existsSync(file)) return fromFiles([file], '~/.kube/config');
  throw new Error(
    `no Kubernetes credentials: not running in a pod (KUBERNETES_SERVICE_HOST is not set), no --kubeconfig, no KUBECONFIG and no ~/.kube/config${o.noCredentials ? `; ${o.noCredentials}` : ''}`,
  );
}

function inCluster(env: NodeJS.ProcessEnv, prefix: string): KubeConnection {
  const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
  for (const f of ['token', 'ca.crt']) {
    if (!existsSync(join(dir, f)))
      throw new Error(
        `running in a pod but ${join(dir, f)} is missing; mount the service account token (automountServiceAccountToken: true) or pass --kubeconfig`,
      );
  }
  const kc = new KubeConfig();
  // loadFromCluster reads these from process.env and the mount under a prefix.
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = env.KUBERNETES_SERVICE_HOST;
  process.env.KUBERNETES_SERVICE_PORT = env.KUBERNETES_SERVICE_PORT ?? '443';
  try {
    kc.loadFromCluster(prefix);
  } finally {
    restoreEnv('KUBERNETES_SERVICE_HOST', saved.host);
    restoreEnv('KUBERNETES_SERVICE_PORT', saved.port);
  }
  const user = kc.getCurrentUser()!;
  // The library's tokenFile provider re-reads only once a minute; kubelet may
  // have rotated the projected token since, and reading it is cheap.
  const tokenFile = (user.authProvider as { config?: { tokenFile?: string } } | undefined)?.config?.tokenFile ?? join(dir, 'token');
  const users = kc.getUsers().map((u) => (u.name === user.name ? { name: u.name } : u));
  kc.loadFromOptions({ clusters: kc.getClusters(), users, contexts: kc.getContexts(), currentContext: kc.getCurrentContext() });
  return connection(kc, 'in-cluster service account', new Map([[user.name, tokenFile]]));
}

function restoreEnv(k: string, v: string | undefined): void {
  if (v === undefined) delete process.env[k];
  else process.env[k] = v;
}

interface RawUser {
  name?: unknown;
  user?: { tokenFile?: unknown } | null;
}

/** Merges kubeconfig files as kubectl does: for each name the first file that defines it wins, and the first current-context set. */
function fromFiles(files: readonly string[], how: string): KubeConnection {
  const clusters = new Map<string, Cluster>();
  const users = new Map<string, User>();
  const contexts = new Map<string, Context>();
  const tokenFiles = new Map<string, string>();
  let currentContext = '';
  for (const file of files) {
    const kc = new KubeConfig();
    let raw: { users?: RawUser[] | null } | null;
    try {
      kc.loadFromFile(file);
      raw = parseYaml(readFileSync(file, 'utf8')) as typeof raw;
    } catch (e) {
      throw new Error(`cannot load the kubeconfig ${file} (${how}): ${(e as Error).message}; check the file with: kubectl --kubeconfig ${file} config view`);
    }
    for (const c of kc.getClusters()) if (!clusters.has(c.name)) clusters.set(c.name, c);
    for (const u of kc.getUsers()) if (!users.has(u.name)) users.set(u.name, execRelativeTo(u, dirname(file)));
    for (const c of kc.getContexts()) if (!contexts.has(c.name)) contexts.set(c.name, c);
    for (const u of raw?.users ?? []) {
      const tf = u?.user?.tokenFile;
      if (typeof u?.name === 'string' && typeof tf === 'string' && tf && !tokenFiles.has(u.name)) {
        // Relative to the kubeconfig file, as kubectl resolves every file reference.
        tokenFiles.set(u.name, isAbsolute(tf) ? tf : join(dirname(file), tf));
      }
    }
    currentContext ||= kc.getCurrentContext() ?? '';
  }
  const where = `${how} ${files.join(delimiter)}`;
  if (!currentContext) throw new Error(`${where} sets no current-context; set one with: kubectl config use-context <name>`);
  const ctx = contexts.get(currentContext);
  if (!ctx)
    throw new Error(
      `${where}: current-context "${currentContext}" is not among its contexts (${[...contexts.keys()].join(', ') || 'none'}); fix it with: kubectl config use-context <name>`,
    );
  if (!clusters.has(ctx.cluster)) throw new Error(`${where}: context "${ctx.name}" names cluster "${ctx.cluster}", which is not defined`);
  if (ctx.user && !users.has(ctx.user)) throw new Error(`${where}: context "${ctx.name}" names user "${ctx.user}", which is not defined`);
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [...clusters.values()], users: [...users.values()], contexts: [...contexts.values()], currentContext });
  return connection(kc, `kubeconfig ${files.join(delimiter)} (context ${currentContext})`, tokenFiles);
}

interface ExecConfig {
  command?: string;
  env?: { name: string; value: string }[] | null;
  provideClusterInfo?: boolean;
  apiVersion?: string;
}

/** client-go runs an exec plugin's command given with a path separator relative to the kubeconfig's directory; the library from the working directory. */
function execRelativeTo(u: User, dir: string): User {
  const exec = u.exec as ExecConfig | undefined;
  if (!exec?.command || isAbsolute(exec.command) || !exec.command.includes('/')) return u;
  return { ...u, exec: { ...exec, command: join(dir, exec.command) } };
}

/**
 * Tells an exec plugin what kubectl tells it (KUBERNETES_EXEC_INFO): that no
 * one can answer a prompt, and the cluster when provideClusterInfo asks for it.
 * Plugins that can log in interactively decide by this; the library does not set it.
 */
function withExecInfo(kc: KubeConfig, cluster: Cluster, userName: string): KubeConfig {
  const user = kc.getUser(userName);
  const exec = user?.exec as ExecConfig | undefined;
  if (!user || !exec) return copy(kc, kc.getUsers());
  const info = {
    kind: 'ExecCredential',
    apiVersion: exec.apiVersion ?? 'client.authentication.k8s.io/v1',
    spec: {
      interactive: false,
      ...(exec.provideClusterInfo
        ? {
            cluster: {
              server: cluster.server,
              ...(cluster.tlsServerName ? { 'tls-server-name': cluster.tlsServerName } : {}),
              ...(cluster.skipTLSVerify ? { 'insecure-skip-tls-verify': true } : {}),
              ...(cluster.caData || cluster.caFile ? { 'certificate-authority-data': cluster.caData ?? readFileSync(cluster.caFile!).toString('base64') } : {}),
              ...(cluster.proxyUrl ? { 'proxy-url': cluster.proxyUrl } : {}),
            },
          }
        : {}),
    },
  };
  const env = [...(exec.env ?? []).filter((e) => e.name !== 'KUBERNETES_EXEC_INFO'), { name: 'KUBERNETES_EXEC_INFO', value: JSON.stringify(info) }];
  return copy(
    kc,
    kc.getUsers().map((u) => (u.name === userName ? { ...u, exec: { ...exec, env } } : u)),
  );
}

/** A KubeConfig of its own: the library caches exec credentials per instance. */
function copy(kc: KubeConfig, users: User[]): KubeConfig {
  const out = new KubeConfig();
  out.loadFromOptions({ clusters: kc.getClusters(), users, contexts: kc.getContexts(), currentContext: kc.getCurrentContext() });
  return out;
}

/** The parts of the client library's KubeConfig used here that its typings call private (version 1.4). */
interface KubeConfigInternals {
  /** Bearer token, exec plugin, auth-provider: the credentials alone, without reading the TLS files or making an agent. */
  applyAuthorizationHeader(opts: KubeRequestOptions): Promise<void>;
  /** The agent for a proxy-url (http, https and socks proxies). */
  createAgent(cluster: Cluster, options: object): HttpAgent;
}

function internals(kc: KubeConfig): KubeConfigInternals {
  const k = kc as unknown as KubeConfigInternals;
  if (typeof k.applyAuthorizationHeader !== 'function' || typeof k.createAgent !== 'function')
    throw new Error(
      '@kubernetes/client-node lacks applyAuthorizationHeader or createAgent: src/agent/kubernetes/connection.ts needs updating for this version',
    );
  return k;
}

function connection(loaded: KubeConfig, source: string, tokenFiles: ReadonlyMap<string, string>): KubeConnection {
  const cluster = loaded.getCurrentCluster();
  if (!cluster?.server) throw new Error(`${source}: the cluster has no server address`);
  const ctx = loaded.getContextObject(loaded.getCurrentContext());
  const userName = ctx?.user ?? '';
  const protocol = new URL(cluster.server).protocol;
  // The client library's rule (it threw on every request): plain HTTP only when asked for, or through a proxy.
  if (protocol === 'http:' && !cluster.skipTLSVerify && !cluster.proxyUrl)
    throw new Error(
      `${source}: the server ${cluster.server} is plain HTTP: use an https:// server, or set insecure-skip-tls-verify: true on the cluster to allow it`,
    );
  const user = loaded.getUser(userName);
  const tls = new TlsFiles(
    {
      caFile: cluster.caFile,
      caData: cluster.caData,
      certFile: user?.certFile,
      certData: user?.certData,
      keyFile: user?.keyFile,
      keyData: user?.keyData,
      servername: cluster.tlsServerName,
      rejectUnauthorized: !cluster.skipTLSVerify,
      proxy: cluster.proxyUrl,
    },
    source,
  );
  const proxyAgent: ProxyAgentFactory = (options) => internals(loaded).createAgent(cluster, options);
  let kc = withExecInfo(loaded, cluster, userName);
  let auth = internals(kc);
  // An exec plugin may answer with a client certificate: the material is then the files' plus it, made once per credential.
  let withCert: { base: TlsMaterial; cert: unknown; key: unknown; material: TlsMaterial } | undefined;
  return {
    server: cluster.server.replace(/\/+$/, ''),
    source,
    ...(ctx?.namespace ? { namespace: ctx.namespace.trim() } : {}),
    async requestOptions() {
      const opts: KubeRequestOptions = { headers: {} };
      if (user?.impersonateUser != null) opts.headers['Impersonate-User'] = user.impersonateUser;
      try {
        await auth.applyAuthorizationHeader(opts);
      } catch (e) {
        throw new Error(`${source}: cannot get credentials for user "${userName}": ${(e as Error).message.trim() || 'the exec plugin failed'}`);
      }
      if (user?.username) opts.auth = `${user.username}:${user.password}`;
      // client-go: a token in the kubeconfig wins over tokenFile.
      const tf = tokenFiles.get(userName);
      if (tf && !opts.headers.Authorization) {
        let token: string;
        try {
          token = readFileSync(tf, 'utf8').trim();
        } catch (e) {
          throw new Error(
            `${source}: cannot read the token file ${tf}: ${errText(e)}; check the tokenFile path of the kubeconfig user (in a pod: the mounted service account token)`,
          );
        }
        if (token) opts.headers.Authorization = `Bearer ${token}`;
      }
      let material = tls.current();
      if (opts.cert !== undefined || opts.key !== undefined) {
        if (withCert?.base !== material || withCert.cert !== opts.cert || withCert.key !== opts.key) {
          const m = {
            ...material,
            ...(opts.cert !== undefined ? { cert: opts.cert as string | Buffer } : {}),
            ...(opts.key !== undefined ? { key: opts.key as string | Buffer } : {}),
          };
          withCert = { base: material, cert: opts.cert, key: opts.key, material: Object.freeze(m) };
        }
        material = withCert.material;
      }
      // The material stays in the options too, for a caller that opens a connection of its own (agent: false).
      return Object.assign(opts, tlsConnectOptions(material), { agent: kubeAgent(protocol, material, proxyAgent) });
    },
    credentialsRejected() {
      kc = withExecInfo(loaded, cluster, userName);
      auth = internals(kc);
    },
  };
}
