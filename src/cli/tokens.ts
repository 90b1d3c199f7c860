import { AgentRegistry } from '../server/agents/agent-registry.js';
import { FEED_SCOPES, FeedTokens, type FeedScope } from '../server/auth/feed-tokens.js';
import { isVerdictError } from '../shared/errors.js';
import { agentTokensText } from './agents.js';
import { parseSubcommand, usageError } from './args.js';
import { openExistingServerDb, SERVER_DB_FLAGS, SERVER_DB_FLAGS_HELP, serverDataDir } from './server-db.js';

const HELP = `Usage:
  Agent tokens (what an agent puts in --token-file):
  verdict tokens create --agent <agent> [--name <token-name>] [--data-dir <dir> | --config <file>]
      Creates a token for a registered agent (\`verdict agents register\`) and prints it,
      alone on stdout, once; only its SHA-256 hash is stored.
  verdict tokens list --agent <agent> [--json] [--data-dir <dir> | --config <file>]
      Token ids, names, creation, last use and revocation; never the secrets.
  verdict tokens revoke --agent <agent> <id> [--data-dir <dir> | --config <file>]
      The agent's next call fails with Unauthenticated, and a running server closes
      the streams open with the token within a second.
  (The same as \`verdict agents tokens create|list|revoke <agent>\`.)

  Feed tokens (people and tools reading the feed; scope admin also opens the admin API):
  verdict tokens create --name <name> [--scope read|write|admin] [--data-dir <dir> | --config <file>]
      Creates a feed token and prints it, alone on stdout, once (only its hash is stored).
      read: list and stream alerts; write: also change alert status; admin: also manage
      agents, agent tokens and feed tokens over /api/v1/admin/.
  verdict tokens list [--json] [--data-dir <dir> | --config <file>]
  verdict tokens revoke <id> [--data-dir <dir> | --config <file>]

${SERVER_DB_FLAGS_HELP}
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseSubcommand('tokens', argv, ['create', 'list', 'revoke'], HELP, {
    agent: { type: 'string' },
    name: { type: 'string' },
    scope: { type: 'string' },
    json: { type: 'boolean' },
    ...SERVER_DB_FLAGS,
  });
  if (typeof args === 'number') return args;
  const { sub, values, positionals } = args;
  const db = openExistingServerDb(serverDataDir(values, `tokens ${sub}`), `tokens ${sub}`);
  try {
    if (values.agent !== undefined) return agentTokens(sub, values.agent, values, positionals, new AgentRegistry(db));
    const tokens = new FeedTokens(db);
    if (sub === 'create') {
      if (!values.name)
        throw usageError('verdict tokens create: give --agent <agent> for an agent token, or --name <who or what will use it> for a feed token');
      const scope = values.scope ?? 'read';
      if (!FEED_SCOPES.includes(scope as FeedScope)) throw usageError(`verdict tokens create: --scope must be one of ${FEED_SCOPES.join(', ')}`);
      process.stdout.write(`${tokens.create(values.name, scope as FeedScope).token}\n`);
      return 0;
    }
    if (sub === 'list') {
      const list = tokens.list();
      if (values.json) process.stdout.write(`${JSON.stringify(list)}\n`);
      else
        for (const t of list)
          process.stdout.write(`${t.id}\t${t.name}\t${t.scope}\tcreated ${t.created_at}${t.revoked_at ? `\trevoked ${t.revoked_at}` : ''}\n`);
      return 0;
    }
    const id = Number(positionals[0]);
    if (!Number.isInteger(id)) throw usageError('verdict tokens revoke: give the token id from `verdict tokens list` (add --agent <agent> for an agent token)');
    if (!tokens.revoke(id)) throw usageError(`verdict tokens revoke: no active feed token with id ${id}; for an agent token add --agent <agent>`);
    process.stdout.write(`revoked ${id}\n`);
    return 0;
  } finally {
    db.close();
  }
}

function agentTokens(
  sub: 'create' | 'list' | 'revoke',
  agent: string,
  values: { name?: string | undefined; scope?: string | undefined; json?: boolean | undefined },
  positionals: string[],
  registry: AgentRegistry,
): number {
  if (values.scope !== undefined) throw usageError('verdict tokens: --scope is for feed tokens; an agent token is valid for its agent only');
  try {
    if (sub === 'create') {
      process.stdout.write(`${registry.createToken(agent, values.name ?? 'default').token}\n`);
      return 0;
    }
    if (sub === 'list') {
      process.stdout.write(agentTokensText(registry.listTokens(agent), values.json === true));
      return 0;
    }
    const id = Number(positionals[0]);
    if (!Number.isInteger(id) || id <= 0) throw usageError(`verdict tokens revoke: give the token id; see \`verdict tokens list --agent ${agent}\``);
    if (!registry.revokeToken(agent, id))
      throw usageError(`verdict tokens revoke: agent "${agent}" has no active token ${id}; see \`verdict tokens list --agent ${agent}\``);
    process.stdout.write(`revoked token ${id} of agent ${agent}\n`);
    return 0;
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_BAD_REQUEST', 'VERDICT_NOT_FOUND')) throw usageError(`verdict tokens ${sub}: ${e.message}`);
    throw e;
  }
}
