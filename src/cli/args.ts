import { parseArgs, type ParseArgsConfig } from 'node:util';
import { VerdictError } from '../shared/errors.js';

/** A wrong flag or argument (VERDICT_USAGE): `verdict` prints the message and exits 2. */
export function usageError(message: string): VerdictError {
  return new VerdictError('VERDICT_USAGE', message);
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with errors that name the command and point at --help. */
export function parseFlags<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw usageError(`verdict ${command}: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}; see \`verdict ${command} --help\``);
  }
}
