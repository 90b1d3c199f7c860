import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { splitHostPort } from '../shared/config/host-port.js';
import { listenError } from '../shared/config/listen-error.js';
import { errText, moduleLogger, type Logger } from '../shared/log/logger.js';
import { registry } from '../shared/metrics/registry.js';
import type { BackoffOptions } from '../shared/retry/backoff.js';
import { Closers } from '../shared/lifecycle/closers.js';
import { VERSION } from '../shared/version.js';
import { AlertAggregator } from './alerts/aggregator.js';
import { KEPT_CONFIG_STALE_MS, KeptConfigStore, type KeptTie, tokenSha256 } from './kept-config.js';
import type { AgentModule } from './module.js';
import { ModuleManager } from './module-manager.js';
import { openAgentDb } from './spool/agent-db.js';
import { Spool } from './spool/spool.js';
import { runAlertPublisher, DEFAULT_PUBLISHER } from './tunnel/alert-publisher.js';
import { runConfigStream } from './tunnel/config-client.js';
import { Tunnel } from './tunnel/connection.js';
import { parseKasAddress } from './tunnel/kas-address.js';

export interface AgentOptions {
  /** One address, or several separated by commas (server replicas, tried in turn). */
  kasAddress: string;
  tokenFile: string;
  dataDir: string;
  caCertFile?: string;
  /** Observability listener (/metrics, /healthz, /readyz); "" disables it. */
  observabilityAddr: string;
  spoolMaxBytes: number;
  /** Backoff of the tunnel's reconnects. */
  backoff: BackoffOptions;
  modules: AgentModule[];
}

export interface RunningAgent {
  observabilityAddress: string;
  stop(): Promise<void>;
  done: Promise<void>;
}

function readToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new Error(`cannot read --token-file ${file}: ${(e as Error).message}; create it with the token \`verdict agents register\` printed`);
  }
  if (!token) throw new Error(`--token-file ${file} is empty; put the agent token in it`);
  // Older deploy/agent/agent.yaml shipped this placeholder in the token Secret, and each apply put it back.
  if (token === 'REPLACE_WITH_AGENT_TOKEN')
    throw new Error(
      `--token-file ${file} holds the manifest's placeholder REPLACE_WITH_AGENT_TOKEN, not a token: put the token \`verdict agents register\` printed in the Secret (kubectl -n verdict-agent create secret generic verdict-agent-token --from-literal=token=<token> --dry-run=client -o yaml | kubectl apply -f -)`,
    );
  return token;
}

export async function startAgent(o: AgentOptions, log: Logger): Promise<RunningAgent> {
  const [address, ...fallbacks] = (
    o.kasAddress.includes(',')
      ? o.kasAddress
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [o.kasAddress]
  ).map(parseKasAddress);
  const token = readToken(o.tokenFile);
  const closers = new Closers();
  const db = closers.add('agent database', openAgentDb(o.dataDir), (d) => d.close());
  const spool = new Spool(db, { maxBytes: o.spoolMaxBytes, log: moduleLogger('spool', log) });
  const alerts = closers.add('alert aggregator', new AlertAggregator(db, spool, { log: moduleLogger('alerts', log) }), (a) => a.stop());
  alerts.start();
  const abort = new AbortController();
  // What /readyz reports: no configuration yet, the one kept in the data directory, or one the server served.
  let configured: 'no' | 'kept' | 'served' = 'no';
  let keptCommit = '';
  // The server's words when it refuses the token (revoked, unknown, another agent's): not ready, whatever runs.
  let refused: string | undefined;
  const tunnel = await closers.start(() =>
    Tunnel.open({
      address: address!,
      fallbacks,
      token,
      tokenFile: o.tokenFile,
      backoff: o.backoff,
      log: moduleLogger('tunnel', log),
      caCertFile: o.caCertFile,
    }),
  );
  closers.add('tunnel', tunnel, (t) => t.close());
  // After the tunnel: modules use it, so they stop before it closes.
  const manager = closers.add('modules', new ModuleManager(o.modules, { db, alerts, dataDir: o.dataDir, agentName: '', tunnel }, log, o.backoff), (m) =>
    m.stopAll(),
  );
  const configLog = moduleLogger('config', log);
  const kept = new KeptConfigStore(db, configLog);
  const applyConfig = async (config: Readonly<Record<string, unknown>>, files: Parameters<ModuleManager['apply']>[1], agentName: string, fromKept = false) => {
    const level = (config as { observability?: { logging?: { level?: string } } }).observability?.logging?.level;
    if (level) log.level = level;
    await manager.apply(config, files, agentName, fromKept);
  };
  const tie: KeptTie = { kasAddress: o.kasAddress.trim(), tokenSha256: tokenSha256(token) };
  // Started before the server is reached, not after a wait: an input that is closed meanwhile (Falco's HTTP
  // output does not retry) loses events, and an unchanged block is not restarted when the server serves it.
  // Only the modules that start from a kept configuration run (module.ts startsFromKept): GitOps waits for the server.
  const last = kept.load(tie);
  if (last) {
    await applyConfig(last.config, last.files, last.agentName, true);
    configured = 'kept';
    keptCommit = last.commitId;
    const ageMs = Date.now() - Date.parse(last.keptAt);
    const age = {
      commit_id: last.commitId,
      agent_name: last.agentName,
      kept_at: last.keptAt,
      age_s: Math.max(0, Math.round(ageMs / 1000)),
      // The modules that start from it (startsFromKept); the others wait for the server.
      modules: manager.runningModules,
    };
    configLog.warn(age, 'Config: running the kept configuration (the last one the server served) until the server serves one');
    if (ageMs > KEPT_CONFIG_STALE_MS)
      configLog.warn(
        { ...age, age_days: Math.floor(ageMs / (24 * 3600_000)) },
        'Config: the kept configuration is more than 7 days old: the server has not served this agent since; config.yaml may have changed meanwhile',
      );
  }

  let observabilityAddress = '';
  if (o.observabilityAddr) {
    const obs = createServer((req, res) => {
      if (req.url === '/metrics') {
        registry.metrics().then(
          (m) => res.writeHead(200, { 'content-type': registry.contentType }).end(m),
          (e: unknown) => {
            log.warn({ error: errText(e) }, 'Collecting metrics for /metrics failed; answering 500');
            res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${errText(e)}\n`);
          },
        );
      } else if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else if (req.url === '/readyz') {
        // Ready on a kept configuration too: the Service in front of Falco's HTTP input must keep sending to it.
        // A token the server refuses fails a pod that never got a configuration served since it started (a rollout
        // with a wrong or revoked token must not pass), but not one already running on one: taken out of the
        // Service, its node's Falco events would be lost instead of spooled until the token is replaced.
        const refusedNotReady = refused !== undefined && configured !== 'served';
        res.writeHead(configured === 'no' || refusedNotReady ? 503 : 200, { 'content-type': 'application/json' }).end(
          refused !== undefined
            ? JSON.stringify({
                status: refusedNotReady ? 'token refused' : 'ready',
                token_refused: true,
                reason: `the server refuses the agent token (${refused}): no configuration can be served and spooled alerts cannot be sent until the token in --token-file is one the server accepts${configured === 'no' ? '' : '; the modules keep running, spooling alerts'}`,
              })
            : configured === 'served'
              ? '{"status":"ready"}'
              : configured === 'kept'
                ? JSON.stringify({
                    status: 'ready',
                    configuration: 'kept',
                    commit_id: keptCommit,
                    reason: 'the server has not served a configuration since the agent started; running the configuration it kept, the last one served',
                  })
                : '{"status":"waiting for configuration"}',
        );
      } else {
        res.writeHead(404).end();
      }
    });
    const { host, port } = splitHostPort(o.observabilityAddr);
    await closers.start(
      () =>
        new Promise<void>((resolve, reject) => {
          obs.once('error', (e) =>
            reject(listenError('for /metrics and probes', o.observabilityAddr, e, '--observability-addr', 'set it to "" to turn the listener off')),
          );
          obs.listen(port, host, resolve);
        }),
    );
    closers.add('observability listener', obs, (s) => s.close());
    const a = obs.address();
    observabilityAddress = typeof a === 'object' && a ? `${host}:${a.port}` : o.observabilityAddr;
  }

  log.info({ kas_address: o.kasAddress, data_dir: o.dataDir, version: VERSION, spooled: spool.size }, 'Verdict agent started');

  const configLoop = runConfigStream(
    tunnel,
    o.backoff,
    configLog,
    abort.signal,
    async (u) => {
      await applyConfig(u.config, u.files, u.agentName);
      if (configured === 'kept')
        configLog.info(
          { commit_id: u.commitId, kept_commit_id: keptCommit },
          'Config: the server served a configuration; it replaces the kept one (modules whose block is unchanged keep running)',
        );
      configured = 'served';
      kept.keep({ commitId: u.commitId, agentName: u.agentName, config: { ...u.config }, files: [...u.files] }, tie);
    },
    keptCommit,
    (reason) => {
      refused = reason;
    },
  );
  const publishLoop = runAlertPublisher(tunnel, spool, o.backoff, moduleLogger('tunnel', log), abort.signal, DEFAULT_PUBLISHER);
  const done = Promise.all([configLoop, publishLoop]).then(() => undefined);
  done.catch((e: unknown) => log.error({ error: errText(e) }, 'Agent loop failed'));
  // The loops go first on shutdown: nothing may use the tunnel or the database after they close.
  closers.defer('config and alert streams', async () => {
    abort.abort();
    await done.catch(() => undefined);
  });

  return {
    observabilityAddress,
    done,
    stop: () => closers.close(),
  };
}
