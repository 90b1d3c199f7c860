import { AgentRegistry, type AgentTokenInfo } from '../server/agents/agent-registry.js';
import { openServerDb } from '../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { isVerdictError } from '../shared/errors.js';
import { parseFlags, usageError } from './args.js';

const HELP = `Usage:
  verdict agents register <name> --config-project <path> [--token-name <name>] [--data-dir <dir>]
      Registers an agent (or adds a token to it) and prints a new token, alone on
      stdout, once. Only its hash is stored. The agent's configuration is read from
      .gitlab/agents/<name>/config.yaml in the configuration project (a git repository).
  verdict agents list [--json] [--data-dir <dir>]
  verdict agents tokens create <agent> [--token-name <name>] [--data-dir <dir>]
      Adds a token to an agent (e.g. to rotate: create, update the Secret, revoke the
      old one) and prints it, alone on stdout, once.
  verdict agents tokens list <agent> [--json] [--data-dir <dir>]
      Token ids, names, creation, last use and revocation; never the secrets.
  verdict agents tokens revoke <agent> <token-id> [--data-dir <dir>]
      Revokes a token: the agent's next call fails with Unauthenticated, and a running
      server closes the streams open with it within a second.

--data-dir is the server's data directory (default ${SERVER_DEFAULTS.data_dir}); the server
may be running. The same operations are in the admin HTTP API, /api/v1/admin/agents.
`;

/** An agent's tokens as `tokens list` prints them: JSON, or a line each; never the secrets. */
export function agentTokensText(tokens: readonly AgentTokenInfo[], json: boolean): string {
  if (json) return `${JSON.stringify(tokens)}\n`;
  return tokens
    .map(
      (t) =>
        `${t.id}\t${t.name}\tcreated ${t.created_at}\t${t.last_used_at ? `last used ${t.last_used_at}` : 'never used'}${t.revoked_at ? `\trevoked ${t.revoked_at}` : ''}\n`,
    )
    .join('');
}

export async function run(argv: string[]): Promise<number> {
  let [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  let command = sub;
  if (sub === 'tokens') {
    const [action, ...more] = rest;
    if (!action || action === '--help' || action === '-h') {
      process.stdout.write(HELP);
      return action ? 0 : 2;
    }
    command = `tokens ${action}`;
    rest = more;
  }
  const { values, positionals } = parseFlags(
    `agents ${command}`,
    rest,
    {
      'config-project': { type: 'string' },
      'token-name': { type: 'string', default: 'default' },
      'data-dir': { type: 'string', default: SERVER_DEFAULTS.data_dir },
      json: { type: 'boolean' },
    },
    true,
  );
  const db = openServerDb(values['data-dir']);
  try {
    const registry = new AgentRegistry(db);
    const agentArg = (usage: string) => {
      const name = positionals[0];
      if (!name) throw usageError(`verdict agents ${command}: give the agent name, e.g. \`verdict agents ${usage}\``);
      return name;
    };
    try {
      switch (command) {
        case 'register': {
          const name = positionals[0];
          if (!name || positionals.length > 1)
            throw usageError('verdict agents register: give exactly one agent name, e.g. `verdict agents register prod-cluster --config-project ./infra`');
          if (!values['config-project']) throw usageError('verdict agents register: --config-project <path of a git repository> is required');
          const { token } = registry.register(name, values['config-project'], values['token-name']);
          process.stdout.write(`${token}\n`);
          return 0;
        }
        case 'list': {
          const agents = registry.list();
          if (values.json) process.stdout.write(`${JSON.stringify(agents)}\n`);
          else for (const a of agents) process.stdout.write(`${a.name}\t${a.config_project}\t${a.tokens} active token(s)\tregistered ${a.created_at}\n`);
          return 0;
        }
        case 'tokens create': {
          const name = agentArg('tokens create prod-cluster');
          process.stdout.write(`${registry.createToken(name, values['token-name']).token}\n`);
          return 0;
        }
        case 'tokens list': {
          process.stdout.write(agentTokensText(registry.listTokens(agentArg('tokens list prod-cluster')), values.json === true));
          return 0;
        }
        case 'tokens revoke': {
          const name = agentArg('tokens revoke prod-cluster 3');
          const id = Number(positionals[1]);
          if (!Number.isInteger(id) || id <= 0)
            throw usageError(`verdict agents tokens revoke: give the token id after the agent name; see \`verdict agents tokens list ${name}\``);
          if (!registry.revokeToken(name, id))
            throw usageError(`verdict agents tokens revoke: agent "${name}" has no active token ${id}; see \`verdict agents tokens list ${name}\``);
          process.stdout.write(`revoked token ${id} of agent ${name}\n`);
          return 0;
        }
        default:
          throw usageError(`verdict agents: unknown subcommand "${command}"; use register, list, or tokens create|list|revoke`);
      }
    } catch (e) {
      if (isVerdictError(e, 'VERDICT_BAD_REQUEST', 'VERDICT_NOT_FOUND')) throw usageError(`verdict agents ${command}: ${e.message}`);
      throw e;
    }
  } finally {
    db.close();
  }
}
