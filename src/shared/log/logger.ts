import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

// One root logger per process; modules get a child carrying `mod_name`, the key
// operators of the GitLab agent already filter on.
let root: Logger | undefined;

export interface LoggerOptions {
  level?: LevelWithSilent;
  name?: string;
  /** Destination stream; defaults to stdout (fd 1). Tests pass their own. */
  destination?: NodeJS.WritableStream;
}

export function createRootLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? (process.env.VERDICT_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
  const options = {
    level,
    base: opts.name ? { name: opts.name } : null,
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: 'msg',
    errorKey: 'error',
    formatters: { level: (label: string) => ({ level: label }) },
  };
  root = opts.destination ? pino(options, opts.destination as pino.DestinationStream) : pino(options);
  return root;
}

export function rootLogger(): Logger {
  return root ?? createRootLogger();
}

// A module logger remembers the logger it was made from: pino's child bindings
// append, so a module logger made from another (the tunnel's, say) would write
// `mod_name` twice in one line. The new one is made from the logger without it.
const withoutModName = new WeakMap<Logger, Logger>();

export function moduleLogger(modName: string, parent: Logger = rootLogger()): Logger {
  let base = parent;
  let extra: Record<string, unknown> = {};
  // pino makes a child with Object.create(parent), so a child of a module
  // logger (one with agent_name, say) finds its module logger up the chain;
  // the bindings added below it are kept.
  for (let l: Logger | null = parent; l; l = Object.getPrototypeOf(l) as Logger | null) {
    const unbound = withoutModName.get(l);
    if (!unbound) continue;
    base = unbound;
    if (l !== parent) {
      const own = l.bindings();
      extra = Object.fromEntries(Object.entries(parent.bindings()).filter(([k, v]) => k !== 'mod_name' && JSON.stringify(own[k]) !== JSON.stringify(v)));
    }
    break;
  }
  const log = base.child({ ...extra, mod_name: modName });
  withoutModName.set(log, base);
  return log;
}

/** Error rendering for the `error` field: the message, not a stack, unless debug. */
export function errText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
