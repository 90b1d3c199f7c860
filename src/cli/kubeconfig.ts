import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { CiAccessConfigs } from '../modules/ci-access/agent-configs.js';
import { JobTokens } from '../modules/ci-access/job-tokens.js';
import { agentsForJob, kubeconfigYaml } from '../modules/ci-access/kubeconfig.js';
import { AgentRegistry } from '../server/agents/agent-registry.js';
import { headCommit } from '../server/config/git-project.js';
import { isVerdictError } from '../shared/errors.js';
import { errText } from '../shared/log/logger.js';
import { isPlainHttpUrl, plainHttpHint } from '../shared/plain-http.js';
import { loadServerConfigFile, SERVER_DEFAULTS, type ServerConfig } from '../shared/config/server-config.js';
import { parseFlags, usageError } from './args.js';
import { openExistingServerDb } from './server-db.js';

const HELP = `Usage:
  verdict kubeconfig --ci-token <token> [--config <server.yaml>] [--server <url>]
                     [--certificate-authority <ca.pem>] [--data-dir <dir>]
      Prints the KUBECONFIG of a CI/CD job (what GitLab injected into jobs): the
      server's Kubernetes API proxy as the one cluster and, for every agent whose
      ci_access allows the job's project (environment and protected-branch rules
      included), a user agent:<id> with token ci:<id>:<token> and a context
      <configuration project>:<agent> in the entry's default_namespace.
      --server: the proxy's URL (default: kubernetes_api.url of --config, else its
      listen address and url_path_prefix). --certificate-authority: the CA of the
      proxy's TLS certificate, embedded. --config also gives data_dir and projects_dir;
      with a kafka block agents are named (agent:<name>, ci:<name>:<token>), since ids
      differ between replicas.
      With several agents there is no current context: stderr names them (kubectl
      config use-context <name>); an http:// server gets a warning on stderr, since
      kubectl sends no token over plain HTTP.
      Only the kubeconfig goes to stdout; errors go to stderr. Exit 1 when the
      token is unknown, expired or revoked, or no agent allows the job (stderr
      gives every agent's reason); exit 2 for a wrong flag, or a --data-dir
      without the server's database (server.db).
`;

/** The proxy URL from the server's configuration. */
export function proxyUrl(cfg: ServerConfig): string | undefined {
  const k = cfg.kubernetes_api;
  if (!k) return undefined;
  if (k.url) return k.url;
  const host = k.listen.replace(/^(0\.0\.0\.0|\[::\]|):/, '127.0.0.1:');
  return `${cfg.tls ? 'https' : 'http'}://${host}${k.url_path_prefix === '/' ? '' : k.url_path_prefix.replace(/\/$/, '')}`;
}

export interface KubeconfigRequest {
  ciToken: string;
  /** The proxy's URL. */
  server: string;
  /** The server's data directory (tokens, agents). */
  dataDir: string;
  caPem?: string;
  projectsDir?: string;
  /** The server is a Kafka replica: agents by name (ids differ between replicas). */
  agentsByName?: boolean;
}

/** The job's KUBECONFIG; throws with every agent's reason when none allows the job. */
export async function kubeconfigFor(r: KubeconfigRequest): Promise<string> {
  const db = openExistingServerDb(r.dataDir, 'kubeconfig');
  try {
    const auth = new JobTokens(db).authenticate(r.ciToken);
    if ('error' in auth) throw new Error(auth.error);
    const { allowed, refused } = await agentsForJob(new AgentRegistry(db).list(), auth.job, new CiAccessConfigs(headCommit), r.projectsDir);
    if (allowed.length === 0)
      throw new Error(
        `no agent allows project ${auth.job.project} (job ${auth.job.id})${refused.length ? `: ${refused.join('; ')}` : ': no agent is registered'}`,
      );
    return kubeconfigYaml({
      server: r.server,
      jobToken: r.ciToken,
      agents: allowed,
      ...(r.caPem ? { caPem: r.caPem } : {}),
      ...(r.projectsDir ? { projectsDir: r.projectsDir } : {}),
      agentsByName: Boolean(r.agentsByName),
    });
  } finally {
    db.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('kubeconfig', argv, {
    'ci-token': { type: 'string' },
    config: { type: 'string' },
    server: { type: 'string' },
    'certificate-authority': { type: 'string' },
    'data-dir': { type: 'string' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const token = values['ci-token']?.trim();
  if (!token) throw usageError('verdict kubeconfig: give --ci-token <token> (from `verdict ci-tokens create`)');
  // stdout is the kubeconfig file (`verdict kubeconfig ... > kubeconfig`): a failure goes to stderr as plain text, never
  // as a JSON log line into that file, which kubectl would read as an empty config and fall back to localhost:8080.
  try {
    return await printKubeconfig(token, values);
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_USAGE')) throw e;
    process.stderr.write(`verdict kubeconfig: ${errText(e)}\n`);
    return 1;
  }
}

/** --config as the other commands on the server's database take it: one that does not load is the user's flag to fix (exit 2). */
function serverConfig(file: string): ReturnType<typeof loadServerConfigFile> {
  try {
    return loadServerConfigFile(file);
  } catch (e) {
    throw usageError(`verdict kubeconfig: --config: ${(e as Error).message}; give --config the server's server.yaml`);
  }
}

async function printKubeconfig(
  token: string,
  values: { config?: string | undefined; server?: string | undefined; 'certificate-authority'?: string | undefined; 'data-dir'?: string | undefined },
): Promise<number> {
  const cfg = values.config ? serverConfig(values.config) : SERVER_DEFAULTS;
  const server = values.server ?? proxyUrl(cfg);
  if (!server) throw usageError('verdict kubeconfig: give --server <URL of the Kubernetes API proxy>, or --config with a kubernetes_api block');
  let caPem: string | undefined;
  if (values['certificate-authority']) {
    try {
      caPem = readFileSync(values['certificate-authority'], 'utf8');
    } catch (e) {
      throw usageError(`verdict kubeconfig: cannot read --certificate-authority: ${(e as Error).message}`);
    }
  }
  const yaml = await kubeconfigFor({
    ciToken: token,
    server,
    dataDir: values['data-dir'] ?? cfg.data_dir,
    ...(caPem ? { caPem } : {}),
    ...(cfg.projects_dir ? { projectsDir: cfg.projects_dir } : {}),
    agentsByName: Boolean(cfg.kafka),
  });
  process.stdout.write(yaml);
  if (isPlainHttpUrl(server)) process.stderr.write(`verdict kubeconfig: ${plainHttpHint(`the server ${server}`, 'pass --server with')}\n`);
  // Several agents: no current context (as GitLab's), and kubectl without one tries localhost:8080 and says nothing of contexts.
  const contexts = ((parse(yaml) as { contexts?: { name: string }[] }).contexts ?? []).map((c) => c.name);
  if (contexts.length > 1)
    process.stderr.write(
      `verdict kubeconfig: ${contexts.length} agents allow this job, so the kubeconfig has no current context; choose one with \`kubectl config use-context <name>\`: ${contexts.join(', ')}\n`,
    );
  return 0;
}
