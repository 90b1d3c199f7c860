import * as grpc from '@grpc/grpc-js';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../gen/verdict/agent.js';
import { NO_COMMIT_ID } from '../../shared/agent-api.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { formatIssue } from '../../shared/config/schema.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import { VERSION } from '../../shared/version.js';
import type { Tunnel } from './connection.js';

export interface ConfigUpdate {
  commitId: string;
  /** config.yaml as validated and defaulted by the server: one block per module. */
  config: Readonly<Record<string, unknown>>;
  files: ConfigurationResponse['files'];
  agentName: string;
  /** What the server found in config.yaml without refusing it (logged by the stream, once per commit). */
  warnings: ConfigurationResponse['warnings'];
}

/** How long a configuration call stays open after the server's headers before the agent takes its token as accepted. */
const ACCEPTED_AFTER_MS = 1_000;

/** True when the server refused the call for a version mismatch, not for the configuration. */
export function isVersionRefusal(err: grpc.ServiceError): boolean {
  return err.code === grpc.status.FAILED_PRECONDITION && err.metadata?.get('verdict-refusal')[0] === 'version';
}

/**
 * Keeps a GetConfiguration stream open and hands every new configuration to
 * onConfig. An invalid commit comes on the stream too: it is logged once and
 * the last good configuration keeps running, with the stream still open for the
 * fix. On an error it backs off and reconnects, sending the last applied commit
 * so the server only sends something new. A clean end of the stream reconnects
 * at once, as the original does.
 */
export async function runConfigStream(
  tunnel: Tunnel,
  backoffOpts: BackoffOptions,
  log: Logger,
  signal: AbortSignal,
  onConfig: (u: ConfigUpdate) => Promise<void>,
  /** The commit of a configuration the agent already runs (the one kept in its data directory): the messages then speak of keeping it. */
  keptCommit = '',
  /**
   * Told the server's words when it refuses the agent's token (UNAUTHENTICATED, PERMISSION_DENIED), and undefined
   * when it serves a configuration again: the agent is then not ready.
   */
  onRefused: (reason: string | undefined) => void = () => {},
): Promise<void> {
  const client = new AgentConfigurationClient(tunnel.target, tunnel.credentials, tunnel.options);
  let commitId = '';
  // Operators watch the agent, so the server's findings in config.yaml are
  // logged here too, once per commit (a reconnect may bring the same commit).
  let warnedCommit = '';
  // An invalid commit is logged once, however often a reconnect brings it again; NO_COMMIT_ID (or '', from servers
  // of the release before it) is a configuration project without a commit yet (a new one, or one the agent was moved to).
  let invalidCommit: string | undefined;
  const logInvalid = (fields: Record<string, unknown>) =>
    log.error(
      fields,
      commitId || keptCommit
        ? 'Config: the new configuration is invalid; keeping the last good configuration'
        : 'Config: the configuration is invalid; fix it in the configuration project',
    );
  try {
    await retryLoop(
      {
        backoff: backoffOpts,
        signal,
        onBackoff: (delay, e) => {
          const err = e as grpc.ServiceError;
          const text = tunnel.describe(err);
          if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED) {
            onRefused(text);
          }
          if (isVersionRefusal(err)) {
            log.error({ error: text, retry_in_ms: delay }, 'Refused by the server: agent and server versions differ');
          } else if (err.code === grpc.status.FAILED_PRECONDITION) {
            // A server that does not report invalid commits on the stream ends it instead.
            logInvalid({ error: text, retry_in_ms: delay });
          } else if (tunnel.endedByShutdown(err)) {
            log.info(
              { reason: text, retry_in_ms: delay },
              'Config: the server ended the configuration stream as it shut down; reconnecting, the configuration stays',
            );
          } else {
            log.error({ error: text, retry_in_ms: delay }, 'Config: failed to get configuration from the server');
          }
        },
      },
      async (progress) => {
        const err = await new Promise<unknown>((resolve) => {
          const call = client.getConfiguration(
            {
              commit_id: commitId,
              invalid_in_stream: true,
              agent_meta: { version: VERSION, commit: '', pod_namespace: process.env.POD_NAMESPACE ?? '', pod_name: process.env.POD_NAME ?? '' },
            },
            tunnel.metadata(),
          );
          const onAbort = () => call.cancel();
          signal.addEventListener('abort', onAbort, { once: true });
          // The server refuses a token as it opens the call; a call still open a moment after its headers (it sends
          // nothing more while the commit is unchanged) was accepted. A message tells it at once.
          let accepted: NodeJS.Timeout | undefined;
          call.on('metadata', (md: grpc.Metadata) => {
            tunnel.checkServerVersion(md, log);
            accepted = setTimeout(() => onRefused(undefined), ACCEPTED_AFTER_MS);
          });
          call.on('status', () => clearTimeout(accepted));
          let queue = Promise.resolve();
          call.on('data', (msg: ConfigurationResponse) => {
            progress();
            // Any answer (an invalid commit too) means the token was accepted.
            onRefused(undefined);
            queue = queue.then(async () => {
              if (msg.invalid_reason) {
                if (invalidCommit !== msg.commit_id) {
                  if (msg.commit_id && msg.commit_id !== NO_COMMIT_ID) logInvalid({ commit_id: msg.commit_id, error: msg.invalid_reason });
                  else
                    log.warn(
                      { error: msg.invalid_reason },
                      commitId || keptCommit
                        ? 'Config: the configuration project has no commit the server can read yet; keeping the last good configuration until it has one with config.yaml'
                        : 'Config: the configuration project has no commit the server can read yet; commit config.yaml there',
                    );
                }
                invalidCommit = msg.commit_id;
                return;
              }
              let config: Record<string, unknown>;
              try {
                config = JSON.parse(msg.config_json) as Record<string, unknown>;
              } catch (e) {
                log.error(
                  { commit_id: msg.commit_id, error: (e as Error).message },
                  'Config: server sent a configuration that is not JSON; keeping the last good configuration',
                );
                return;
              }
              if (warnedCommit !== msg.commit_id) {
                warnedCommit = msg.commit_id;
                for (const w of msg.warnings) log.warn({ commit_id: msg.commit_id }, `Config: ${formatIssue(w)}`);
              }
              log.info({ commit_id: msg.commit_id }, 'Config: applying new configuration');
              try {
                await onConfig({ commitId: msg.commit_id, config, files: msg.files, agentName: msg.agent_name, warnings: msg.warnings });
              } catch (e) {
                // The commit is not recorded as applied: the next connection asks for it again.
                log.error(
                  { commit_id: msg.commit_id, error: errText(e) },
                  'Config: applying the configuration failed; it is applied again after the next reconnect',
                );
                call.cancel();
                return;
              }
              commitId = msg.commit_id;
              // A valid commit in between: HEAD going back to the invalid one (a reset, a force-push) is news again.
              invalidCommit = undefined;
            });
          });
          call.on('error', (e) => {
            signal.removeEventListener('abort', onAbort);
            void queue.then(() => resolve(e));
          });
          call.on('end', () => {
            signal.removeEventListener('abort', onAbort);
            void queue.then(() => resolve(undefined));
          });
        });
        if (err !== undefined) throw err;
        return 'now';
      },
    );
  } finally {
    client.close();
  }
}
