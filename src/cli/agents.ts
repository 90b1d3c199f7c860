import { AgentRegistry, type AgentTokenInfo, checkRegistration } from '../server/agents/agent-registry.js';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openServerDb, SERVER_DB_FILE } from '../server/store/server-db.js';
import { isVerdictError } from '../shared/errors.js';
import { nearMiss } from '../shared/near-miss.js';
import { parseFlags, usageError } from './args.js';
import { openExistingServerDb, SERVER_DB_FLAGS, serverDataDir, serverDbFlagsHelp, stderrNotes } from './server-db.js';

const HELP = `Usage:
  verdict agents register <name> --config-project <path> [--token-name <name>] [--data-dir <dir> | --config <file>]
      Registers a new agent and prints its first token, alone on stdout, once. Only its
      hash is stored. <path> is a git repository on the server's disk (its top directory;
      \`git init\` makes one); the agent's configuration is read from
      .gitlab/agents/<name>/config.yaml committed to its default branch. An agent already
      registered is refused: add a token with \`verdict agents tokens create\`, or move it
      with \`verdict agents set-project\`.
      The first registration may come before the server's first start: it creates the
      server's database (stderr says where).
  verdict agents list [--json] [--data-dir <dir> | --config <file>]
  verdict agents set-project <name> <path> [--data-dir <dir> | --config <file>]
      Moves an agent to another configuration project (a repository moved on disk, say),
      checked as register checks it. The agent keeps its tokens and its alerts; a running
      server serves the connected agent from the new project within a second, without
      restarting it. With Kafka, every replica follows.
  verdict agents tokens create <agent> [--token-name <name>] [--data-dir <dir> | --config <file>]
      Adds a token to an agent (e.g. to rotate: create, update the Secret, revoke the
      old one) and prints it, alone on stdout, once.
  verdict agents tokens list <agent> [--json] [--data-dir <dir> | --config <file>]
      Token ids, names, creation, last use and revocation; never the secrets.
  verdict agents tokens revoke <agent> <token-id> [--data-dir <dir> | --config <file>]
      Revokes a token: the agent's next call fails with Unauthenticated, and a running
      server closes the streams open with it within a second.

${serverDbFlagsHelp('every command but register')}
The same operations are in the admin HTTP API, /api/v1/admin/agents.
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
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  // Named before anything is opened: a typo should not be answered with what the database lacks.
  if (!isSubcommand(command)) {
    const meant = nearMiss(command, SUBCOMMANDS);
    throw usageError(
      `verdict agents: unknown subcommand "${command}"${meant ? ` (did you mean "${meant}"?)` : ''}; use register, list, set-project, or tokens create|list|revoke`,
    );
  }
  return runSubcommand(command, rest);
}

const SUBCOMMANDS = ['register', 'list', 'set-project', 'tokens create', 'tokens list', 'tokens revoke'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];
const isSubcommand = (c: string): c is Subcommand => (SUBCOMMANDS as readonly string[]).includes(c);

async function runSubcommand(command: Subcommand, rest: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    `agents ${command}`,
    rest,
    {
      'config-project': { type: 'string' },
      'token-name': { type: 'string', default: 'default' },
      json: { type: 'boolean' },
      ...SERVER_DB_FLAGS,
    },
    true,
  );
  const dataDir = serverDataDir(values, `agents ${command}`);
  if (command === 'register') return await register(positionals, values['config-project'], values['token-name'], dataDir);
  const db = openExistingServerDb(dataDir, `agents ${command}`);
  try {
    const registry = new AgentRegistry(db);
    const agentArg = (usage: string) => {
      const name = positionals[0];
      if (!name) throw usageError(`verdict agents ${command}: give the agent name, e.g. \`verdict agents ${usage}\``);
      return name;
    };
    try {
      switch (command) {
        case 'list': {
          const agents = registry.list();
          if (values.json) process.stdout.write(`${JSON.stringify(agents)}\n`);
          else for (const a of agents) process.stdout.write(`${a.name}\t${a.config_project}\t${a.tokens} active token(s)\tregistered ${a.created_at}\n`);
          return 0;
        }
        case 'set-project': {
          const name = agentArg('set-project prod-cluster /srv/git/infra');
          const path = positionals[1];
          if (values['config-project'] !== undefined)
            throw usageError(
              `verdict agents set-project: give the path as the second argument, not --config-project: \`verdict agents set-project ${name} <path>\``,
            );
          if (!path || positionals.length > 2)
            throw usageError(
              `verdict agents set-project: give the agent name and the path of its new configuration project, e.g. \`verdict agents set-project ${name} /srv/git/infra\``,
            );
          const r = await registry.setConfigProjectChecked(name, path);
          process.stdout.write(`agent ${name}: configuration project ${r.agent.config_project} (was ${r.from})\n`);
          for (const note of r.notes) process.stderr.write(`verdict agents set-project: note: ${note}\n`);
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
      }
    } catch (e) {
      if (isVerdictError(e, 'VERDICT_BAD_REQUEST', 'VERDICT_NOT_FOUND')) throw usageError(`verdict agents ${command}: ${e.message}`);
      throw e;
    }
  } finally {
    db.close();
  }
}

/**
 * `agents register`: a new agent only, by the registry's rules as POST /api/v1/admin/agents (a configuration project at
 * the top of a git repository; an existing agent refused). The only command that may create the server's database:
 * registering the first agent before the server's first start is how a cluster is set up.
 */
async function register(positionals: string[], configProject: string | undefined, tokenName: string, dataDir: string): Promise<number> {
  const name = positionals[0];
  if (!name || positionals.length > 1)
    throw usageError('verdict agents register: give exactly one agent name, e.g. `verdict agents register prod-cluster --config-project ./infra`');
  if (!configProject) throw usageError('verdict agents register: --config-project <path of a git repository> is required');
  const dbFile = resolve(join(dataDir, SERVER_DB_FILE));
  const existed = existsSync(dbFile);
  // Checked by the registry's rules before the database is opened, so that a new one is created only for a
  // registration that succeeds (an existing agent is possible only in an existing database).
  let token: string;
  let notes: string[];
  try {
    const project = await checkRegistration(name, configProject, tokenName);
    notes = project.notes;
    const db = openServerDb(dataDir, stderrNotes('agents register'));
    try {
      token = new AgentRegistry(db).register(name, project.path, tokenName).token;
    } finally {
      db.close();
    }
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_BAD_REQUEST', 'VERDICT_CONFLICT')) throw usageError(`verdict agents register: ${e.message}`);
    throw e;
  }
  process.stdout.write(`${token}\n`);
  for (const note of notes) process.stderr.write(`verdict agents register: note: ${note}\n`);
  if (!existed)
    process.stderr.write(
      `verdict agents register: created the server's database ${dbFile}; start the server with this data directory (--data-dir ${resolve(dataDir)}, or data_dir in its config)\n`,
    );
  return 0;
}
