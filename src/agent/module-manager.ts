import { createHash } from 'node:crypto';
import type { ProjectFile } from '../gen/verdict/agent.js';
import { settledWithin } from '../shared/lifecycle/settled-within.js';
import { errText, moduleLogger, type Logger } from '../shared/log/logger.js';
import { AGENT_DEFAULT_BACKOFF, type BackoffOptions } from '../shared/retry/backoff.js';
import { retryLoop } from '../shared/retry/loop.js';
import type { AgentModule, Lingering, ModuleContext } from './module.js';

interface Running {
  key: string;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * How long work a module left in flight (a CI request) may go on once the
 * agent is stopping. A request in flight at SIGTERM may be a write (kubectl
 * apply) whose answer the job needs, and most requests end within ms; a watch,
 * logs -f or exec never ends on its own, and would keep the process up until
 * Kubernetes kills it (terminationGracePeriodSeconds, 30 s by default), with
 * no answer to kubectl.
 */
export const SHUTDOWN_GRACE_MS = 5_000;

/** Starts, restarts and stops modules as new configurations arrive. */
export class ModuleManager {
  private readonly running = new Map<string, Running>();
  /** Work that stopped modules left in flight: a restart lets it finish, stopAll() ends it after the grace. */
  private readonly lingering = new Set<Lingering>();

  constructor(
    private readonly modules: readonly AgentModule<never>[],
    private base: Omit<ModuleContext, 'log' | 'files'>,
    private readonly log: Logger,
    /** Delays before a module that failed or stopped on its own runs again with the same configuration. */
    private readonly backoff: BackoffOptions = AGENT_DEFAULT_BACKOFF,
    private readonly shutdownGraceMs = SHUTDOWN_GRACE_MS,
  ) {}

  /**
   * `agentName`: the name the server knows the agent by (it arrives with the configuration; GitOps names its inventories
   * after it). `kept`: the configuration is the one kept in agent.db, not served; only modules that start from it
   * (startsFromKept) run, the others wait for the server's.
   */
  async apply(config: Readonly<Record<string, unknown>>, files: readonly ProjectFile[], agentName?: string, kept = false): Promise<void> {
    if (agentName) this.base = { ...this.base, agentName };
    const filesKey = hashFiles(files);
    for (const mod of this.modules) {
      const block = kept && !mod.startsFromKept ? undefined : config[mod.name];
      const current = this.running.get(mod.name);
      // The agent name is part of what a module runs with (GitOps names its inventories after it): a configuration
      // kept from another agent that used this data directory must not keep running under that agent's name.
      const key = block === undefined ? '' : `${JSON.stringify(block)}${mod.usesFiles ? filesKey : ''}\0${this.base.agentName}`;
      if (current && current.key === key) continue;
      if (current) {
        this.log.info(
          { mod_name: mod.name },
          block === undefined ? 'Stopping module: its block was removed from the configuration' : 'Restarting module: its configuration changed',
        );
        await this.stopOne(mod.name);
      }
      if (block === undefined) continue;
      const abort = new AbortController();
      const log = moduleLogger(mod.name, this.log);
      const ctx: ModuleContext = { ...this.base, log, files };
      const done = this.keepRunning(mod, block, ctx, abort.signal);
      this.running.set(mod.name, { key, abort, done });
    }
  }

  /**
   * Runs a module until its block changes or goes away (abort). One that fails
   * or returns on its own runs again after a backoff, as the original agent's
   * modules do: a new commit may be far off, and a transient failure (an
   * unreachable Relay at start-up, say) must not leave it stopped until then.
   */
  private async keepRunning(mod: AgentModule<never>, block: unknown, ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    const log = ctx.log;
    // Backoff starts from the short delay again after a healthy period (resetAfterMs).
    await retryLoop(
      {
        backoff: this.backoff,
        signal,
        onBackoff: (delay, err) => {
          if (err === undefined) log.warn('Module stopped on its own');
          else log.error({ error: errText(err) }, 'Module failed');
          log.info({ retry_in_ms: delay }, 'Restarting module after a delay');
        },
      },
      async () => {
        log.info('Starting module');
        const left = await mod.run(block as never, ctx, signal);
        if (left) this.linger(left, log);
        return 'backoff';
      },
    );
  }

  private async stopOne(name: string): Promise<void> {
    const r = this.running.get(name);
    if (!r) return;
    r.abort.abort();
    await r.done;
    this.running.delete(name);
  }

  private linger(left: Lingering, log: Logger): void {
    this.lingering.add(left);
    left.done.catch((e: unknown) => log.error({ error: errText(e) }, 'Module: work left in flight failed')).finally(() => this.lingering.delete(left));
  }

  /** Stops every module (the agent is stopping); what they left in flight gets the grace to finish, then is ended. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stopOne(n)));
    if (this.lingering.size === 0) return;
    // Every piece settled (a failed one is logged by linger()), not the first failure.
    const over = () => Promise.all([...this.lingering].map((l) => l.done.catch(() => undefined)));
    this.log.info({ grace_ms: this.shutdownGraceMs }, 'Stopping: giving the requests in flight time to finish');
    if (await settledWithin(over(), this.shutdownGraceMs)) return;
    for (const l of this.lingering) l.end();
    // Ended work settles at once; should some not, the agent stops anyway rather than wait for a kill.
    if (!(await settledWithin(over(), this.shutdownGraceMs)))
      this.log.warn({ left: this.lingering.size }, 'Stopping: work left in flight did not end; stopping without it');
  }

  get runningModules(): string[] {
    return [...this.running.keys()];
  }
}

function hashFiles(files: readonly ProjectFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(f.path).update('\0').update(f.data).update('\0');
  return h.digest('hex');
}
