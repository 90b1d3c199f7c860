import { readFileSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import { startAgent, type RunningAgent } from '../../src/agent/agent.js';
import { kubeconfigFor } from '../../src/cli/kubeconfig.js';
import { createCiAccessModule } from '../../src/modules/ci-access/agent.js';
import { JobTokens, type NewJob } from '../../src/modules/ci-access/job-tokens.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import type { ServerConfig } from '../../src/shared/config/server-config.js';
import { ConfigProject, freePort, tempDir, until, type LogLine } from '../helpers/processes.js';
import { capturingLogger } from '../helpers/logs.js';
import type { Logger } from '../../src/shared/log/logger.js';
import { startTcpRelay } from '../helpers/tcp-relay.js';
import { makeCerts } from '../helpers/certs.js';

// A server with the Kubernetes API proxy and an agent with the CI tunnel, in
// this process, in front of a real API server (or a peer standing in for one).
// The agent reaches the server through a TCP relay the test can cut, as a
// network failure or a killed agent pod would.

export interface CiEnv {
  dir: string;
  project: ConfigProject;
  server: RunningServer;
  agent: RunningAgent;
  agentId: number;
  /** https://127.0.0.1:<port>/k8s-proxy, the Kubernetes API proxy */
  proxyUrl: string;
  /** The CA of the proxy's certificate (for fetch: NODE_EXTRA_CA_CERTS does not apply in-process, use fetchProxy). */
  caPem: string;
  logs: LogLine[];
  /** A GET to the proxy with these headers (trusting its CA). */
  get(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }>;
  /** Issues a job token (as `verdict ci-tokens create`). */
  /** now: when it is issued (a token about to expire, or expired, is issued in the past). */
  jobToken(job: Partial<NewJob> & { project: string }, now?: number): string;
  /** Writes the KUBECONFIG `verdict kubeconfig --ci-token` prints for the token; returns its path. */
  kubeconfig(token: string): Promise<string>;
  /** Bytes the agent's connections to the server carried so far: responses go to the server, requests to the agent. */
  tunnelBytes(): { toServer: number; toAgent: number };
  /** Destroys the agent's connections to the server (and refuses new ones while cut). */
  cutAgent(): void;
  restoreAgent(): void;
  stop(): Promise<void>;
}

/** A GET over HTTPS trusting `caPem`, whatever its status. */
export function httpsGet(url: string, caPem: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: caPem, headers }, (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (body += d))
          .on('error', reject)
          .on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** An agent in this process with only the CI tunnel module, acting with `kubeconfig`'s credentials. */
export function startCiAgent(
  o: { kasAddress: string; caCertFile: string; tokenFile: string; dataDir: string; kubeconfig?: string | undefined },
  log: Logger,
): Promise<RunningAgent> {
  return startAgent(
    {
      kasAddress: o.kasAddress,
      caCertFile: o.caCertFile,
      tokenFile: o.tokenFile,
      dataDir: o.dataDir,
      observabilityAddr: '',
      spoolMaxBytes: 1 << 20,
      backoff: { initialMs: 200, maxMs: 1000 },
      modules: [createCiAccessModule({ ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), backoff: { initialMs: 100, maxMs: 500 } })],
    },
    log,
  );
}

/** Without agentKubeconfig the agent looks for credentials as it does in production (KUBECONFIG, a pod, ~/.kube/config). */
export async function startCiEnv(o: { configYaml: string; agentKubeconfig?: string; agentName?: string }): Promise<CiEnv> {
  const dir = tempDir('verdict-ci-');
  const name = o.agentName ?? 'edge';
  const project = new ConfigProject(join(dir, 'infra'));
  project.commit({ [`.gitlab/agents/${name}/config.yaml`]: o.configYaml });
  const { log, logs } = capturingLogger('info');
  const proxyPort = await freePort();
  // kubectl sends a bearer token only over TLS: the proxy serves HTTPS, as KAS did.
  const certs = makeCerts(dir);
  const cfg: ServerConfig = {
    data_dir: join(dir, 'server'),
    http_addr: '127.0.0.1:0',
    grpc_addr: '127.0.0.1:0',
    config_poll_interval: 200,
    tls: { cert_file: certs.serverCert, key_file: certs.serverKey },
    kubernetes_api: { listen: `127.0.0.1:${proxyPort}`, url_path_prefix: '/k8s-proxy/', url: undefined },
  };
  const server = await startServer(cfg, log);
  const { agent: record, token } = server.agents.register(name, project.dir);
  const grpcPort = Number(server.grpcAddress.split(':').pop());
  const r = await startTcpRelay(grpcPort);
  writeFileSync(join(dir, 'agent-token'), token);
  const agent = await startCiAgent(
    {
      kasAddress: `grpcs://127.0.0.1:${r.port}`,
      caCertFile: certs.ca,
      tokenFile: join(dir, 'agent-token'),
      dataDir: join(dir, 'agent'),
      kubeconfig: o.agentKubeconfig,
    },
    log,
  );
  await until(
    () => logs.some((l) => l.msg === 'CI tunnel: ready' || l.msg.startsWith('CI tunnel: no Kubernetes credentials')),
    20_000,
    "the agent's CI tunnel",
  );
  const jobs = new JobTokens(server.db);
  const proxyUrl = `https://127.0.0.1:${proxyPort}/k8s-proxy`;
  const caPem = readFileSync(certs.ca, 'utf8');
  let n = 0;
  return {
    dir,
    project,
    server,
    agent,
    agentId: record.id,
    proxyUrl,
    caPem,
    logs,
    get: (path, headers) => httpsGet(`${proxyUrl}${path}`, caPem, headers),
    jobToken: (job, now) => jobs.create({ ttlMs: 3600_000, ...job }, now).token,
    async kubeconfig(t) {
      const file = join(dir, `kubeconfig-${++n}`);
      writeFileSync(file, await kubeconfigFor({ ciToken: t, server: proxyUrl, dataDir: cfg.data_dir, caPem }));
      return file;
    },
    tunnelBytes: () => ({ toServer: r.bytes.up, toAgent: r.bytes.down }),
    cutAgent: () => r.cut(),
    restoreAgent: () => r.restore(),
    async stop() {
      await agent.stop().catch(() => undefined);
      await r.close();
      await server.close();
    },
  };
}
