import { FEED_SCOPES, FeedTokens, type FeedScope } from '../server/auth/feed-tokens.js';
import { openServerDb } from '../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { parseFlags, UsageError } from './args.js';

const HELP = `Usage:
  verdict tokens create --name <name> [--scope read|write|admin] [--data-dir <dir>]
      Creates a feed token and prints it, alone on stdout, once (only its hash is stored).
      read: list and stream alerts; write: also change alert status; admin: also manage tokens.
  verdict tokens list [--data-dir <dir>]
  verdict tokens revoke <id> [--data-dir <dir>]
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values, positionals } = parseFlags(`tokens ${sub}`, rest, {
    name: { type: 'string' },
    scope: { type: 'string', default: 'read' },
    'data-dir': { type: 'string', default: SERVER_DEFAULTS.data_dir },
  }, true);
  const db = openServerDb(values['data-dir']);
  try {
    const tokens = new FeedTokens(db);
    if (sub === 'create') {
      if (!values.name) throw new UsageError('verdict tokens create: --name is required (who or what will use the token)');
      if (!FEED_SCOPES.includes(values.scope as FeedScope)) throw new UsageError(`verdict tokens create: --scope must be one of ${FEED_SCOPES.join(', ')}`);
      process.stdout.write(`${tokens.create(values.name, values.scope as FeedScope).token}\n`);
      return 0;
    }
    if (sub === 'list') {
      for (const t of tokens.list()) process.stdout.write(`${t.id}\t${t.name}\t${t.scope}\tcreated ${t.created_at}${t.revoked_at ? `\trevoked ${t.revoked_at}` : ''}\n`);
      return 0;
    }
    if (sub === 'revoke') {
      const id = Number(positionals[0]);
      if (!Number.isInteger(id)) throw new UsageError('verdict tokens revoke: give the token id from `verdict tokens list`');
      if (!tokens.revoke(id)) throw new UsageError(`verdict tokens revoke: no active token with id ${id}`);
      process.stdout.write(`revoked ${id}\n`);
      return 0;
    }
    throw new UsageError(`verdict tokens: unknown subcommand "${sub}"; use create, list or revoke`);
  } finally {
    db.close();
  }
}
