import { PassThrough } from 'node:stream';
import { createRootLogger, type Logger, type LoggerOptions } from '../../src/shared/log/logger.js';
import type { LogLine } from './processes.js';

/**
 * A real pino logger whose JSON lines the test can read back (`logs`); with
 * VERDICT_TEST_LOGS set they are echoed to stderr too.
 */
export function capturingLogger(level: LoggerOptions['level'] = 'info'): { log: Logger; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const sink = new PassThrough();
  sink.setEncoding('utf8');
  let buf = '';
  sink.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not JSON
      }
      if (process.env.VERDICT_TEST_LOGS) process.stderr.write(`${line}\n`);
    }
  });
  return { log: createRootLogger({ level, destination: sink }), logs };
}
