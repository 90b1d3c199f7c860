import { createHash } from 'node:crypto';
import type { ProjectFile } from '../gen/verdict/agent.js';
import { errText, moduleLogger, type Logger } from '../shared/log/logger.js';
import { AGENT_DEFAULT_BACKOFF, type BackoffOptions } from '../shared/retry/backoff.js';
import { retryLoop } from '../shared/retry/loop.js';
import type { AgentModule, ModuleContext } from './module.js';

interface Running {
  key: string;
  abort: AbortController;
  done: Promise<void>;
}

/** Starts, restarts and stops modules as new configurations arrive. */
export class ModuleManager {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly modules: readonly AgentModule<never>[],
    private base: Omit<ModuleContext, 'log' | 'files'>,
    private readonly log: Logger,
    /** Delays before a module that failed or stopped on its own runs again with the same configuration. */
    private readonly backoff: BackoffOptions = AGENT_DEFAULT_BACKOFF,
  ) {}

  /** `agentName`: the name the server knows the agent by (it arrives with the configuration; GitOps names its inventories after it). */
  async apply(config: Readonly<Record<string, unknown>>, files: readonly ProjectFile[], agentName?: string): Promise<void> {
    if (agentName) this.base = { ...this.base, agentName };
    const filesKey = hashFiles(files);
    for (const mod of this.modules) {
      const block = config[mod.name];
      const current = this.running.get(mod.name);
      const key = block === undefined ? '' : JSON.stringify(block) + (mod.usesFiles ? filesKey : '');
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
        await mod.run(block as never, ctx, signal);
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

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stopOne(n)));
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
