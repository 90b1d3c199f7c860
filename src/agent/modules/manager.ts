import { createHash } from 'node:crypto';
import type { ProjectFile } from '../../gen/verdict/agent.js';
import type { AgentConfig } from '../../shared/config/agent-config.js';
import { errText, moduleLogger, type Logger } from '../../shared/log/logger.js';
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
    private readonly modules: readonly AgentModule[],
    private readonly base: Omit<ModuleContext, 'log' | 'files'>,
    private readonly log: Logger,
  ) {}

  async apply(config: AgentConfig, files: readonly ProjectFile[]): Promise<void> {
    const filesKey = hashFiles(files);
    for (const mod of this.modules) {
      const block = config[mod.name];
      const current = this.running.get(mod.name);
      const key = block === undefined ? '' : JSON.stringify(block) + (mod.usesFiles ? filesKey : '');
      if (current && current.key === key) continue;
      if (current) {
        this.log.info({ mod_name: mod.name }, block === undefined ? 'Stopping module: its block was removed from the configuration' : 'Restarting module: its configuration changed');
        await this.stopOne(mod.name);
      }
      if (block === undefined) continue;
      const abort = new AbortController();
      const log = moduleLogger(mod.name, this.log);
      const ctx: ModuleContext = { ...this.base, log, files };
      log.info('Starting module');
      const done = mod.run(block as never, ctx, abort.signal).then(
        () => {
          if (!abort.signal.aborted) log.warn('Module stopped on its own');
        },
        (err: unknown) => log.error({ error: errText(err) }, 'Module failed; it restarts with the next configuration'),
      );
      this.running.set(mod.name, { key, abort, done });
    }
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
