import { pino, type Logger, type LevelWithSilent } from 'pino';
import { routeGrpcLogs } from './grpc.js';

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
  // grpc-js has one logger per process, as the root logger is.
  routeGrpcLogs(moduleLogger('grpc', root));
  return root;
}

export function rootLogger(): Logger {
  return root ?? createRootLogger();
}

/**
 * A module's logger: `parent` with `mod_name`. Make it from a logger without
 * one (the root, or a child of it): pino's child bindings append, so a module
 * logger made from another would write `mod_name` twice in one line.
 */
export function moduleLogger(modName: string, parent: Logger = rootLogger()): Logger {
  return parent.child({ mod_name: modName });
}

/** Error rendering for the `error` field: the message, not a stack, unless debug. */
export function errText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
