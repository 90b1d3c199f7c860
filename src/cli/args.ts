import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  readonly code = 'VERDICT_USAGE';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with errors that name the command and point at --help. */
export function parseFlags<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError(`verdict ${command}: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}; see \`verdict ${command} --help\``);
  }
}
