import { parseArgs, type ParseArgsConfig } from 'node:util';
import { VerdictError } from '../shared/errors.js';
import { hostPortProblem } from '../shared/config/host-port.js';

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

/**
 * The arguments of a command made of subcommands (`verdict <command> <sub> [flags]`): without a
 * subcommand it prints `help` and gives exit code 2, with -h or --help (before or after the
 * subcommand) 0; otherwise the flags, --help among them, and a subcommand that must be one of `subs`.
 */
export function parseSubcommand<S extends string, O extends Options>(command: string, argv: string[], subs: readonly S[], help: string, options: O) {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(help);
    return sub ? 0 : 2;
  }
  const { values, positionals } = parseFlags<O & { help: { type: 'boolean' } }>(`${command} ${sub}`, rest, { ...options, help: { type: 'boolean' } }, true);
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help);
    return 0;
  }
  if (!(subs as readonly string[]).includes(sub)) {
    const names = subs.length > 1 ? `${subs.slice(0, -1).join(', ')} or ${subs[subs.length - 1]}` : subs.join('');
    throw usageError(`verdict ${command}: unknown subcommand "${sub}"; use ${names}`);
  }
  return { sub: sub as S, values, positionals };
}

/**
 * A listen address given as a flag (--http-addr), checked as the config
 * file's addresses are, so a bad one is a usage error naming the flag rather
 * than a start that fails without saying where the address came from.
 */
export function listenAddressFlag(command: string, flag: string, value: string, hint: string): string {
  const why = hostPortProblem(value, hint);
  if (why) throw usageError(`verdict ${command}: --${flag}: ${why}`);
  return value;
}
