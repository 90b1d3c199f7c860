import { readFileSync } from 'node:fs';
import { duration, field, int, obj, parseYamlConfig, str, type Validator } from './schema.js';
import { webhooksConfigSchema } from './webhooks-config.js';
import { kafkaConfigSchema } from './kafka-config.js';
import { hostPort } from './host-port.js';

// The server's own configuration file (`verdict server --config server.yaml`).
// Flags override the file; the file overrides defaults.

/** The form of a listen address, as messages show it; an empty host listens on every interface. */
export const LISTEN_ADDR_HINT = 'host:port, e.g. 0.0.0.0:8080';
/** For the agent API's address (grpc_addr, --grpc-addr): its usual port. */
export const GRPC_ADDR_HINT = 'host:port, e.g. 0.0.0.0:8150';
const addr = hostPort(LISTEN_ADDR_HINT);

const pathStart = str({ pattern: /^\//, hint: 'a path starting with "/", e.g. /k8s-proxy/' });

/**
 * The proxy's path prefix, always ending in "/": the proxy matches requests by
 * it and serves `/k8s-proxy` itself under `/k8s-proxy/`, so `/k8s-proxy` can
 * only mean that, and is taken as it rather than refused.
 */
const urlPathPrefix: Validator<string> = (node, path, ctx) => {
  const v = pathStart(node, path, ctx);
  return v === undefined || v.endsWith('/') ? v : `${v}/`;
};

const dataDir = field(str({ nonEmpty: true }), { default: '.data/server' });

/**
 * Keys of the GitLab KAS's server config (kas_config.yaml) that people bring along, with Verdict's
 * equivalents: that file has another shape, so each is named rather than refused as a bare unknown key.
 */
const KAS_KEYS = {
  from: "a key of the GitLab KAS's server config, which Verdict does not read",
  keys: {
    'agent.listen.address': 'grpc_addr (the agent API, e.g. grpc_addr: 0.0.0.0:8150)',
    'agent.listen.certificate_file': 'tls.cert_file (TLS on both listeners)',
    'agent.listen.key_file': 'tls.key_file',
    'agent.configuration.poll_period': 'config_poll_interval',
    'agent.gitops.poll_period': 'gitops_poll_interval',
    'agent.kubernetes_api.listen.address': 'kubernetes_api.listen',
    'agent.kubernetes_api.url_path_prefix': 'kubernetes_api.url_path_prefix',
    agent: 'its settings are top-level keys here: grpc_addr (agent.listen.address), tls, config_poll_interval, gitops_poll_interval, kubernetes_api',
    listen_agent: 'write grpc_addr instead (the agent API, e.g. grpc_addr: 0.0.0.0:8150), with tls for its certificate',
    'observability.listen.address': 'http_addr (it serves /metrics)',
    observability: 'http_addr serves /metrics; the log level is the VERDICT_LOG_LEVEL environment variable',
    gitlab: 'Verdict needs no GitLab; register agents with `verdict agents register`, each with a git repository as its configuration project',
    redis: 'replicas share state through the kafka block instead (docs/kafka.md)',
    gitaly: "Verdict reads git repositories on the server's disk: each agent's configuration project, and manifest projects under projects_dir",
    api: 'Verdict has no such API; the admin and feed API are on http_addr',
    private_api: 'replicas reach each other through the kafka block instead (docs/kafka.md)',
  },
};

const serverConfigShape = {
  data_dir: dataDir,
  http_addr: field(addr, { default: '127.0.0.1:8080' }),
  grpc_addr: field(hostPort(GRPC_ADDR_HINT), { default: '127.0.0.1:8150' }),
  config_poll_interval: field(duration({ min: 50 }), { default: 20_000 }),
  // GitOps: manifest project ids (group/project, or a numeric id) are paths under this directory: docs/gitops.md.
  projects_dir: field(str({ nonEmpty: true, hint: "a directory holding the manifest projects' git repositories" })),
  // How often a watched manifest project's ref is read for a new commit (unset: 20 s, as the original).
  gitops_poll_interval: field(duration({ min: 50 })),
  // TLS on both listeners: gRPC (grpcs://) and HTTP (https, and wss:// for agents).
  tls: field(
    obj({
      cert_file: field(str({ nonEmpty: true, hint: 'path of a PEM certificate (chain)' }), { required: true }),
      key_file: field(str({ nonEmpty: true, hint: 'path of the PEM private key of cert_file' }), { required: true }),
    }),
  ),
  // The CI/CD tunnel's Kubernetes API proxy (the original KAS's :8154): docs/ci-tunnel.md. Absent: not served.
  kubernetes_api: field(
    obj({
      listen: field(addr, { required: true }),
      // Requests arrive under this path, removed before they reach the API server.
      url_path_prefix: field(urlPathPrefix, { default: '/' }),
      // The URL kubeconfigs name (a load balancer's); default: from listen.
      url: field(str({ pattern: /^https?:\/\/\S+$/, hint: 'an http:// or https:// URL' })),
    }),
  ),
  webhooks: field(webhooksConfigSchema), // signed, retried alert delivery: docs/webhooks.md
  kafka: field(kafkaConfigSchema), // replicas sharing one alert log: docs/kafka.md
  // Bounds on the alert store, enforced by a background purge: docs/feed.md.
  retention: field(
    obj({
      max_age: field(duration({ min: 60_000 }), { default: 720 * 3_600_000 }),
      max_rows: field(int({ min: 100 }), { default: 500_000 }),
      purge_interval: field(duration({ min: 1_000 }), { default: 60_000 }),
    }),
  ),
};

export const serverConfigSchema = obj(serverConfigShape, { foreign: KAS_KEYS });

/** The top-level keys of a server config, for `verdict server --help`. */
export const SERVER_CONFIG_KEYS = Object.keys(serverConfigShape);

type Out<V> = V extends Validator<infer T> ? T : never;
type Parsed = Out<typeof serverConfigSchema>;
// Blocks without a default (tls) are optional keys, so code that builds a config (demo, tests) names only what it sets.
type OptionalKeys = { [K in keyof Parsed]: undefined extends Parsed[K] ? K : never }[keyof Parsed];
export type ServerConfig = Omit<Parsed, OptionalKeys> & Partial<Pick<Parsed, OptionalKeys>>;

export const SERVER_DEFAULTS: ServerConfig = {
  data_dir: '.data/server',
  http_addr: '127.0.0.1:8080',
  grpc_addr: '127.0.0.1:8150',
  config_poll_interval: 20_000,
};

function readServerConfig(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read server config ${file}: ${(e as Error).message}`);
  }
}

export function loadServerConfigFile(file: string): ServerConfig {
  return parseYamlConfig(readServerConfig(file), file, serverConfigSchema).value;
}

// A misspelt data_dir would otherwise be ignored and the default directory used instead.
const dataDirOnly = obj({ data_dir: dataDir }, { open: true, misspeltIsError: `otherwise the default data directory, ${SERVER_DEFAULTS.data_dir}, is used` });

/**
 * data_dir of a server config file, checked as the server checks it, and nothing else: commands on the
 * server's database run from shells without the server's environment, where the env:/file: references
 * of its other sections (webhook secrets, Kafka's password) cannot be read and are not needed.
 */
export function loadServerDataDir(file: string): string {
  return parseYamlConfig(readServerConfig(file), file, dataDirOnly).value.data_dir;
}
