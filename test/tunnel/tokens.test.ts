import * as crypto from 'node:crypto';
import Database from 'better-sqlite3';
import { execFileSync, type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ConfigProject, killAll, REPO, tempDir, verdictRun, verdictSync } from '../helpers/processes.js';
import { AGENT, prepareServer, ServerProc } from './harness.js';

// Agent tokens from the command line, as operators of the original manage
// them: `verdict agents register|list`, `verdict tokens create|list|revoke
// --agent` (and `verdict agents tokens …`). Secrets are printed once, only
// their hashes are stored, and a presented token is compared in constant time.

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

/** Runs the CLI expecting failure; returns exit code and stderr. */
function verdictFails(args: string[], cwd = REPO): { status: number; stderr: string } {
  try {
    execFileSync(process.execPath, [join(REPO, 'bin/verdict.js'), ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { status: number; stderr: string };
    return { status: err.status, stderr: err.stderr };
  }
  throw new Error(`verdict ${args.join(' ')} succeeded`);
}

/** Every byte of the server's data directory (db, WAL), to look for a secret. */
function dataBytes(dir: string): string {
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f)).toString('latin1'))
    .join('');
}

describe('verdict agents and verdict tokens (agent tokens)', () => {
  const dir = tempDir();
  const data = join(dir, 'server');
  let project: ConfigProject;
  let first = '';
  beforeAll(() => {
    project = new ConfigProject(join(dir, 'project'));
    project.commit({ '.gitlab/agents/edge/config.yaml': 'observability: {logging: {level: info}}\n' });
    first = verdictSync(['agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', data]);
  });

  it('register prints the secret alone on stdout, once; list never shows it', () => {
    expect(first).toMatch(/^vdt_agent_[\w-]{43}\n$/);
    const list = verdictSync(['agents', 'list', '--data-dir', data]);
    expect(list).toMatch(new RegExp(`^edge\\t${project.dir.replace(/[/\\.]/g, '\\$&')}\\t1 active token\\(s\\)\\tregistered `));
    const json = JSON.parse(verdictSync(['agents', 'list', '--json', '--data-dir', data])) as { name: string; tokens: number }[];
    expect(json).toMatchObject([{ name: 'edge', tokens: 1 }]);
    expect(list + JSON.stringify(json)).not.toContain(first.trim());
  });

  it("tokens create|list|revoke --agent manage the agent's tokens; only hashes are stored", () => {
    const second = verdictSync(['tokens', 'create', '--agent', 'edge', '--name', 'rotation', '--data-dir', data]).trim();
    expect(second).toMatch(/^vdt_agent_/);
    const listed = JSON.parse(verdictSync(['tokens', 'list', '--agent', 'edge', '--json', '--data-dir', data])) as {
      id: number;
      name: string;
      revoked_at: string | null;
    }[];
    expect(listed.map((t) => [t.name, t.revoked_at])).toEqual([
      ['default', null],
      ['rotation', null],
    ]);
    const text = verdictSync(['tokens', 'list', '--agent', 'edge', '--data-dir', data]);
    expect(text).toMatch(/^\d+\tdefault\tcreated .*\tnever used\n\d+\trotation\t/);
    expect(JSON.stringify(listed) + text).not.toContain(second);

    // The database holds SHA-256 hashes, never the secrets.
    const db = new Database(join(data, 'server.db'), { readonly: true });
    const hashes = (db.prepare('SELECT token_hash FROM agent_tokens ORDER BY id').all() as { token_hash: string }[]).map((r) => r.token_hash);
    db.close();
    expect(hashes).toEqual([sha256(first.trim()), sha256(second)]);
    const bytes = dataBytes(data);
    expect(bytes).not.toContain(first.trim().slice('vdt_agent_'.length));
    expect(bytes).not.toContain(second.slice('vdt_agent_'.length));

    // `verdict agents tokens …` is the same store.
    const third = verdictSync(['agents', 'tokens', 'create', 'edge', '--token-name', 'third', '--data-dir', data]).trim();
    const ids = JSON.parse(verdictSync(['agents', 'tokens', 'list', 'edge', '--json', '--data-dir', data])) as { id: number; name: string }[];
    expect(ids.map((t) => t.name)).toEqual(['default', 'rotation', 'third']);

    const rotation = listed[1]!.id;
    expect(verdictSync(['tokens', 'revoke', '--agent', 'edge', String(rotation), '--data-dir', data])).toBe(`revoked token ${rotation} of agent edge\n`);
    const again = verdictFails(['tokens', 'revoke', '--agent', 'edge', String(rotation), '--data-dir', data]);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/agent "edge" has no active token \d+; see `verdict tokens list --agent edge`/);
    const after = JSON.parse(verdictSync(['tokens', 'list', '--agent', 'edge', '--json', '--data-dir', data])) as { id: number; revoked_at: string | null }[];
    expect(after.find((t) => t.id === rotation)!.revoked_at).not.toBeNull();
    expect(JSON.parse(verdictSync(['agents', 'list', '--json', '--data-dir', data]))).toMatchObject([{ name: 'edge', tokens: 2 }]);

    // What the server sees: the revoked token is refused, the others pass.
    const sdb = openServerDb(data);
    const reg = new AgentRegistry(sdb);
    expect(reg.authenticate(second)).toBeUndefined();
    expect(reg.authenticate(third)?.name).toBe('edge');
    sdb.close();
  });

  it('prints its usage for --help after any subcommand (the usage errors point there)', () => {
    for (const sub of [['register'], ['list'], ['set-project'], ['tokens', 'create']]) {
      expect(verdictSync(['agents', ...sub, '--help'])).toContain('verdict agents register <name> --config-project <path>');
    }
  });

  it('names a misspelt subcommand with a did-you-mean, before looking for the database', () => {
    const typo = verdictFails(['agents', 'lsit', '--data-dir', join(data, 'nowhere')]);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/^verdict agents: unknown subcommand "lsit" \(did you mean "list"\?\); use register, list, set-project/);
    expect(typo.stderr).not.toContain('database');
  });

  it('explains unknown agents and mixed-up flags', () => {
    const unknown = verdictFails(['tokens', 'create', '--agent', 'nope', '--data-dir', data]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/no agent named "nope"; register it first with `verdict agents register nope/);
    expect(verdictFails(['tokens', 'create', '--agent', 'edge', '--scope', 'admin', '--data-dir', data]).stderr).toMatch(/--scope is for feed tokens/);
    expect(verdictFails(['tokens', 'create', '--data-dir', data]).stderr).toMatch(/give --agent <agent> for an agent token, or --name/);
  });

  it("keeps feed tokens (the admin API's own admin token) apart from agent tokens", () => {
    const admin = verdictSync(['tokens', 'create', '--name', 'ops', '--scope', 'admin', '--data-dir', data]).trim();
    expect(admin).toMatch(/^vdt_feed_/);
    const feed = JSON.parse(verdictSync(['tokens', 'list', '--json', '--data-dir', data])) as { name: string; scope: string }[];
    expect(feed).toMatchObject([{ name: 'ops', scope: 'admin' }]);
    const sdb = openServerDb(data);
    expect(new AgentRegistry(sdb).authenticate(admin)).toBeUndefined(); // an admin token is no agent token
    sdb.close();
  });
});

describe('verdict agents register: new agents only, with a git repository', () => {
  const dir = tempDir();
  const data = join(dir, 'server');
  const project = new ConfigProject(join(dir, 'project'));
  project.commit({ '.gitlab/agents/edge/config.yaml': 'observability: {logging: {level: info}}\n' });
  // The later tests refuse against the database and the agent `edge` this registration makes,
  // so it runs once before them rather than inside the first test.
  let r: SpawnSyncReturns<string>;
  beforeAll(() => {
    r = spawnSync(process.execPath, [join(REPO, 'bin/verdict.js'), 'agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', data], {
      encoding: 'utf8',
    });
  });

  it('creates the database of a new server and says where; the token alone is on stdout', () => {
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^vdt_agent_[\w-]{43}\n$/);
    expect(r.stderr).toContain(`created the server's database ${join(data, 'server.db')}`);
  });

  it('refuses an agent already registered, naming its project and how to add a token; nothing changes', () => {
    const other = new ConfigProject(join(dir, 'other'));
    other.commit({ '.gitlab/agents/edge/config.yaml': '{}\n' });
    for (const p of [other.dir, project.dir]) {
      const again = verdictFails(['agents', 'register', 'edge', '--config-project', p, '--data-dir', data]);
      expect(again.status).toBe(2);
      expect(again.stderr).toContain(`agent "edge" is already registered, with configuration project ${project.dir}`);
      expect(again.stderr).toContain('`verdict agents tokens create edge`');
    }
    expect(JSON.parse(verdictSync(['agents', 'list', '--json', '--data-dir', data]))).toMatchObject([{ name: 'edge', config_project: project.dir, tokens: 1 }]);
  });

  it('refuses a configuration project that is not the top of a git repository, saying how to make one', () => {
    const plain = join(dir, 'plain');
    mkdirSync(plain);
    const notGit = verdictFails(['agents', 'register', 'qa', '--config-project', plain, '--data-dir', data]);
    expect(notGit.status).toBe(2);
    expect(notGit.stderr).toContain(
      `configuration project ${plain} is not a git repository; \`git init\` there, then commit the agent's configuration at .gitlab/agents/qa/config.yaml`,
    );
    const sub = join(project.dir, '.gitlab');
    expect(verdictFails(['agents', 'register', 'qa', '--config-project', sub, '--data-dir', data]).stderr).toContain(
      `is inside the git repository ${project.dir}, not its top; pass ${project.dir}`,
    );
    expect(verdictFails(['agents', 'register', 'qa', '--config-project', 'https://gitlab.example.com/ops/infra.git', '--data-dir', data]).stderr).toMatch(
      /is a URL; it must be the path of a git repository on the server's disk: clone it there/,
    );
    expect(JSON.parse(verdictSync(['agents', 'list', '--json', '--data-dir', data])).map((a: { name: string }) => a.name)).toEqual(['edge']);
  });

  it('leaves no database behind when it refuses the first registration', () => {
    const fresh = join(dir, 'fresh');
    const bad = verdictFails(['agents', 'register', 'Bad_Name', '--config-project', project.dir, '--data-dir', fresh]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/agent name "Bad_Name" is invalid/);
    expect(verdictFails(['agents', 'register', 'edge', '--config-project', project.dir, '--token-name', 'a b', '--data-dir', fresh]).stderr).toMatch(
      /token name "a b" is invalid/,
    );
    expect(existsSync(fresh)).toBe(false);
  });

  it('registers a repository without the config.yaml yet, with a note that the agent waits for it', () => {
    const empty = new ConfigProject(join(dir, 'empty'));
    const r = spawnSync(process.execPath, [join(REPO, 'bin/verdict.js'), 'agents', 'register', 'late', '--config-project', empty.dir, '--data-dir', data], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`note: ${empty.dir} has no commit yet; the agent gets its configuration once .gitlab/agents/late/config.yaml is committed`);
  });
});

describe('POST /api/v1/admin/agents on a running server: the rules of `verdict agents register`', () => {
  const dir = tempDir();
  let url = '';
  let admin = '';
  let project = '';
  beforeAll(async () => {
    const { data } = prepareServer(dir);
    project = join(dir, 'project');
    admin = verdictSync(['tokens', 'create', '--name', 'ops', '--scope', 'admin', '--data-dir', data]).trim();
    url = `http://127.0.0.1:${(await ServerProc.start(data)).http}/api/v1/admin/agents`;
  }, 60_000);
  afterAll(killAll);

  const post = async (body: object) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { error?: string; message?: string; notes?: string[] } };
  };
  const agents = async () =>
    (
      (await (await fetch(url, { headers: { authorization: `Bearer ${admin}` } })).json()) as {
        agents: { name: string; config_project: string; tokens: number }[];
      }
    ).agents;

  it('refuses a directory that is not a git repository with 400 and the fix, and registers nothing', async () => {
    const plain = join(dir, 'plain');
    mkdirSync(plain);
    expect(await post({ name: 'qa', config_project: plain })).toEqual({
      status: 400,
      body: {
        error: 'bad_request',
        message: `configuration project ${plain} is not a git repository; \`git init\` there, then commit the agent's configuration at .gitlab/agents/qa/config.yaml (\`git add .gitlab/agents/qa/config.yaml && git commit\`)`,
      },
    });
    const sub = await post({ name: 'qa', config_project: join(project, '.gitlab') });
    expect(sub.status).toBe(400);
    expect(sub.body.message).toContain(`is inside the git repository ${project}, not its top; pass ${project}`);
    expect((await agents()).map((a) => a.name)).toEqual([AGENT]);
  });

  it('refuses an agent already registered with 409, naming its project; its project and tokens stay as they were', async () => {
    const other = new ConfigProject(join(dir, 'other'));
    other.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: '{}\n' });
    for (const p of [other.dir, project]) {
      const again = await post({ name: AGENT, config_project: p });
      expect(again.status).toBe(409);
      expect(again.body.error).toBe('conflict');
      expect(again.body.message).toContain(`agent "${AGENT}" is already registered, with configuration project ${project}`);
      expect(again.body.message).toContain(`POST /api/v1/admin/agents/${AGENT}/tokens`);
    }
    expect(await agents()).toMatchObject([{ name: AGENT, config_project: project, tokens: 1 }]);
  });

  it('registers a repository without the config.yaml yet, with a note that the agent waits for it', async () => {
    const empty = new ConfigProject(join(dir, 'empty'));
    const r = await post({ name: 'late', config_project: empty.dir });
    expect(r.status).toBe(201);
    expect(r.body.notes).toEqual([
      `${empty.dir} has no commit yet; the agent gets its configuration once .gitlab/agents/late/config.yaml is committed to the default branch`,
    ]);
  });
});

describe('commands on an existing server database', () => {
  // Run where there is no database at the default .data/server, as beside `npm start` (whose data is in .data/demo).
  const cwd = tempDir();
  const commands = [
    ['tokens', 'create', '--name', 'me', '--scope', 'read'],
    ['tokens', 'list'],
    ['tokens', 'revoke', '1'],
    ['tokens', 'create', '--agent', 'edge'],
    ['agents', 'list'],
    ['agents', 'tokens', 'create', 'edge'],
    ['agents', 'tokens', 'list', 'edge'],
    ['ci-tokens', 'list'],
  ];

  it('refuse without one at the resolved path, naming the path and --data-dir or --config, and create nothing', () => {
    for (const args of commands) {
      const r = verdictFails(args, cwd);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(`there is no Verdict server database at ${join(cwd, '.data/server/server.db')}; give --data-dir`);
      expect(r.stderr).toContain('--config');
    }
    expect(existsSync(join(cwd, '.data'))).toBe(false);
  });

  it("take the server's data_dir from --config, as `verdict server` does", () => {
    const data = join(cwd, 'elsewhere');
    openServerDb(data).close();
    const config = join(cwd, 'server.yaml');
    writeFileSync(config, `data_dir: ${data}\n`);
    const token = verdictSync(['tokens', 'create', '--name', 'me', '--config', config]).trim();
    expect(token).toMatch(/^vdt_feed_/);
    expect(verdictSync(['tokens', 'list', '--data-dir', data])).toMatch(/^1\tme\tread\t/);
    expect(verdictSync(['agents', 'list', '--config', config])).toBe('');
  });

  it('say in their help which of them need the database', () => {
    expect(verdictSync(['agents', '--help'])).toContain('there, every command but register refuses to run.');
    expect(verdictSync(['tokens', '--help'])).toContain('there, the command refuses to run.');
  });

  it("read only data_dir of --config, so they run without the server's environment (its env: references unset)", () => {
    const data = join(cwd, 'from-config');
    const db = openServerDb(data);
    new FeedTokens(db).create('ops', 'read');
    db.close();
    const config = join(cwd, 'server-env.yaml');
    const unset = 'VERDICT_TEST_UNSET_HOOK_URL';
    expect(process.env[unset]).toBeUndefined();
    writeFileSync(
      config,
      `data_dir: ${data}\nwebhooks:\n  integrations:\n    - name: hook\n      type: generic\n      url: env:${unset}\n      secrets: [env:${unset}]\n`,
    );
    expect(verdictSync(['tokens', 'list', '--config', config])).toMatch(/^1\tops\tread\t/);
    expect(verdictSync(['agents', 'list', '--config', config])).toBe('');
    expect(verdictSync(['ci-tokens', 'list', '--config', config])).toBe('');

    // data_dir is still checked as the server checks it, and a misspelt one is not taken for the default: a wrong --config, exit 2 (a usage error).
    const refused = (file: string) => {
      const r = spawnSync(process.execPath, [join(REPO, 'bin/verdict.js'), 'tokens', 'list', '--config', file], { cwd, encoding: 'utf8' });
      expect(r.status).toBe(2);
      return r.stdout + r.stderr;
    };
    writeFileSync(config, 'data_dir: ""\n');
    expect(refused(config)).toContain(`${config}:1: data_dir: must not be empty`);
    writeFileSync(config, `data_dri: ${data}\n`);
    expect(refused(config)).toContain(`${config}:1: data_dri: unknown key; rename it to data_dir`);
    expect(refused(join(cwd, 'missing.yaml'))).toContain(`cannot read server config ${join(cwd, 'missing.yaml')}: ENOENT`);
  });
});

describe('agent token comparison', () => {
  it('compares a presented token with the stored hash in constant time', () => {
    const db = openServerDb(':memory:');
    const reg = new AgentRegistry(db);
    const { token } = reg.register('edge', new ConfigProject(tempDir()).dir);
    const spy = vi.mocked(crypto.timingSafeEqual);
    spy.mockClear();
    expect(reg.authenticate(token)?.name).toBe('edge');
    expect(spy).toHaveBeenCalledTimes(1);
    const [a, b] = spy.mock.calls[0]! as [Buffer, Buffer];
    expect(a.length).toBe(32);
    expect(b.length).toBe(32);
    expect(reg.authenticate(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
  });
});

describe('verdict agent --token-file', () => {
  it("refuses the old manifest's placeholder before connecting, saying how to put the real token in the Secret", () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'token'), 'REPLACE_WITH_AGENT_TOKEN\n');
    const r = verdictRun([
      'agent',
      '--kas-address',
      'grpc://127.0.0.1:1',
      '--token-file',
      join(dir, 'token'),
      '--data-dir',
      join(dir, 'agent'),
      '--observability-addr',
      '',
    ]);
    expect(r.status).not.toBe(0);
    expect(r.status).not.toBeNull();
    // The agent logs it as its one JSON error line.
    const out = r.stdout + r.stderr;
    expect(out).toContain("holds the manifest's placeholder REPLACE_WITH_AGENT_TOKEN, not a token");
    expect(out).toContain('create secret generic verdict-agent-token');
  });
});
