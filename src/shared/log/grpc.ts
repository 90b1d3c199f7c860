import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

// grpc-js logs its own errors as plain "E ..." lines on stderr; routed here they
// are JSON lines of `log` like every other. bindAsync's failure is also its
// callback's error, which Verdict reports in its own words: the library's line
// for it would only say the same thing twice, worse.
const REPORTED_BY_CALLER = /^No address added out of total \d+ resolved/;

/**
 * Sends grpc-js's log into `log` (error, info and debug at pino's levels of
 * those names), for the whole process: grpc-js has one logger. The level of
 * `log` filters, so a level raised later (config.yaml's logging level) shows
 * grpc-js's debug lines too; GRPC_VERBOSITY, when set, still cuts them first.
 */
export function routeGrpcLogs(log: Logger): void {
  const line =
    (level: 'error' | 'info' | 'debug') =>
    (message?: unknown, ...rest: unknown[]): void => {
      const text = format(message, ...rest);
      if (REPORTED_BY_CALLER.test(text)) return;
      log[level](text);
    };
  grpc.setLogger({ error: line('error'), info: line('info'), debug: line('debug') });
  if (!process.env.GRPC_NODE_VERBOSITY && !process.env.GRPC_VERBOSITY) grpc.setLogVerbosity(grpc.logVerbosity.DEBUG);
}
