import { AgentRegistry } from '../server/agents/agent-registry.js';
import { openServerDb } from '../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { parseFlags, UsageError } from './args.js';

const HELP = `Usage:
  verdict agents register <name> --config-project <path> [--data-dir <dir>]
      Registers an agent (or adds a token to it) and prints a new token, alone on
      stdout, once. Only its hash is stored. The agent's configuration is read from
      .gitlab/agents/<name>/config.yaml in the configuration project (a git repository).
  verdict agents list [--data-dir <dir>]
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values, positionals } = parseFlags(`agents ${sub}`, rest, {
    'config-project': { type: 'string' },
    'data-dir': { type: 'string', default: SERVER_DEFAULTS.data_dir },
    json: { type: 'boolean' },
  }, true);
  const db = openServerDb(values['data-dir']);
  try {
    const registry = new AgentRegistry(db);
    if (sub === 'register') {
      const name = positionals[0];
      if (!name || positionals.length > 1) throw new UsageError('verdict agents register: give exactly one agent name, e.g. `verdict agents register prod-cluster --config-project ./infra`');
      if (!values['config-project']) throw new UsageError('verdict agents register: --config-project <path of a git repository> is required');
      const { token } = registry.register(name, values['config-project']);
      process.stdout.write(`${token}\n`);
      return 0;
    }
    if (sub === 'list') {
      const agents = registry.list();
      if (values.json) process.stdout.write(`${JSON.stringify(agents)}\n`);
      else for (const a of agents) process.stdout.write(`${a.name}\t${a.config_project}\t${a.tokens} active token(s)\tregistered ${a.created_at}\n`);
      return 0;
    }
    throw new UsageError(`verdict agents: unknown subcommand "${sub}"; use register or list`);
  } finally {
    db.close();
  }
}
