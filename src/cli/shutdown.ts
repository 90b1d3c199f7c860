import type { Logger } from '../shared/log/logger.js';

/** Resolves on SIGINT or SIGTERM, so a process can stop cleanly. */
export function waitForShutdown(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'Shutting down');
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
