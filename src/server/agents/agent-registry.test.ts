import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VerdictError } from '../../shared/errors.js';
import { headCommit } from '../config/git-project.js';
import { openServerDb } from '../store/server-db.js';
import { AgentRegistry } from './agent-registry.js';
import { RevocationWatcher } from './revocation-watcher.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { ConfigProject } from '../../../test/helpers/processes.js';

const project = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-project-'))).dir;
const silent = createRootLogger({ level: 'silent' });

describe('AgentRegistry tokens', () => {
  it('creates, lists and revokes tokens; stores only hashes', () => {
    const db = openServerDb(':memory:');
    const r = new AgentRegistry(db);
    const { token: first } = r.register('edge', project);
    const { token: second, info } = r.createToken('edge', 'rotation');
    expect(second).toMatch(/^vdt_agent_/);
    expect(r.authenticate(first)?.name).toBe('edge');
    expect(r.authenticate(second)?.token_id).toBe(info.id);
    const stored = db.prepare('SELECT token_hash FROM agent_tokens').all() as { token_hash: string }[];
    expect(stored.map((s) => s.token_hash).join()).not.toContain(second.slice(10));
    expect(r.listTokens('edge').map((t) => [t.name, t.revoked_at])).toEqual([
      ['default', null],
      ['rotation', null],
    ]);

    const before = r.revision();
    expect(r.revokeToken('edge', info.id)).toBe(true);
    expect(r.revokeToken('edge', info.id)).toBe(false);
    expect(r.revision()).toBe(before + 1);
    expect(r.authenticate(second)).toBeUndefined();
    expect(r.authenticate(first)).toBeDefined();
    expect(r.revokedAmong([1, info.id, 999])).toEqual([info.id, 999]);
    expect(r.list()[0]!.tokens).toBe(1);
  });

  it('refuses unknown agents and bad names with the fix', () => {
    const r = new AgentRegistry(openServerDb(':memory:'));
    expect(() => r.createToken('nope')).toThrow(/register it first with `verdict agents register nope/);
    r.register('edge', project);
    expect(() => r.createToken('edge', 'has space')).toThrow(/token name "has space" is invalid/);
    expect(() => r.revokeToken('other', 1)).toThrow(/no agent named "other"/);
  });

  it('lets a running server notice a revocation made by another process', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-db-'));
    const serverDb = openServerDb(dir);
    const cliDb = openServerDb(dir);
    const server = new AgentRegistry(serverDb);
    const { tokenId } = server.register('edge', project);
    const dropped: number[] = [];
    const watcher = new RevocationWatcher(
      server,
      {
        tokenIds: () => [tokenId],
        drop: (id) => {
          dropped.push(id);
          return 2;
        },
        configStreamAgents: () => [],
        endConfigStreams: () => 0,
      },
      silent,
    );
    expect(watcher.check()).toBe(0);
    new AgentRegistry(cliDb).revokeToken('edge', tokenId);
    expect(watcher.check()).toBe(2);
    expect(dropped).toEqual([tokenId]);
    expect(watcher.check()).toBe(0); // nothing new
  });
});

describe('AgentRegistry.registerChecked', () => {
  const refusal = async (f: () => unknown): Promise<VerdictError> => {
    try {
      await f();
    } catch (e) {
      if (e instanceof VerdictError) return e;
      throw e;
    }
    throw new Error('not refused');
  };

  it('refuses an agent already registered, whatever the project; its project and tokens stay as they were', async () => {
    const r = new AgentRegistry(openServerDb(':memory:'));
    r.register('edge', project);
    const other = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-other-'))).dir;
    for (const p of [other, project]) {
      const e = await refusal(() => r.registerChecked('edge', p, 'second'));
      expect(e.code).toBe('VERDICT_CONFLICT');
      expect(e.message).toContain(`agent "edge" is already registered, with configuration project ${project}`);
      expect(e.message).toContain('`verdict agents tokens create edge`');
    }
    expect(r.list()).toMatchObject([{ name: 'edge', config_project: project, tokens: 1 }]);
  });

  it('refuses a configuration project that is not the top of a git repository, and registers nothing', async () => {
    const r = new AgentRegistry(openServerDb(':memory:'));
    const plain = mkdtempSync(join(tmpdir(), 'verdict-plain-'));
    const sub = join(project, 'sub');
    mkdirSync(sub, { recursive: true });
    const cases: [string, RegExp][] = [
      [
        plain,
        /^configuration project .* is not a git repository; `git init` there, then commit the agent's configuration at \.gitlab\/agents\/qa\/config\.yaml/,
      ],
      [sub, /is inside the git repository .*, not its top; pass /],
      [join(project, '.git'), /inside a git repository's \.git directory/],
      ['https://gitlab.example.com/ops/infra.git', /is a URL; it must be the path of a git repository on the server's disk/],
      ['git@gitlab.example.com:ops/infra.git', /is a URL/],
      [join(plain, 'missing'), /^configuration project .* does not exist/],
    ];
    for (const [p, message] of cases) {
      const e = await refusal(() => r.registerChecked('qa', p));
      expect(e.code, p).toBe('VERDICT_BAD_REQUEST');
      expect(e.message, p).toMatch(message);
    }
    expect(r.list()).toEqual([]);
  });

  it('accepts a repository without a commit or config.yaml yet, or a bare one, and says what the agent waits for', async () => {
    const r = new AgentRegistry(openServerDb(':memory:'));
    const empty = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-empty-')));
    expect((await r.registerChecked('late', empty.dir)).notes).toEqual([
      `${empty.dir} has no commit yet; the agent gets its configuration once .gitlab/agents/late/config.yaml is committed to the default branch`,
    ]);
    empty.commit({ 'README.md': 'x\n' });
    expect((await r.registerChecked('later', empty.dir)).notes).toEqual([
      `${empty.dir} has no .gitlab/agents/later/config.yaml on its default branch yet; the agent gets its configuration once it is committed there`,
    ]);
    empty.commit({ '.gitlab/agents/ready/config.yaml': '{}\n' });
    expect((await r.registerChecked('ready', empty.dir)).notes).toEqual([]);
    const bare = join(mkdtempSync(join(tmpdir(), 'verdict-bare-')), 'infra.git');
    execFileSync('git', ['clone', '-q', '--bare', empty.dir, bare]);
    expect((await r.registerChecked('mirror', bare)).notes).toEqual([
      `${bare} has no .gitlab/agents/mirror/config.yaml on its default branch yet; the agent gets its configuration once it is committed there`,
    ]);
  });

  // git refuses a repository another user owns (CVE-2022-24765); the server reads the project without overriding that,
  // so the check must not either. GIT_TEST_ASSUME_DIFFERENT_OWNER (git >= 2.35.2) makes git treat every repository as
  // another user's, which only root could arrange otherwise.
  it("refuses a repository git would not read for its owner, saying how to trust it, as the server's reads do", async () => {
    const r = new AgentRegistry(openServerDb(':memory:'));
    const dir = mkdtempSync(join(tmpdir(), 'verdict-owner-'));
    const owned = new ConfigProject(join(dir, 'project'));
    owned.commit({ '.gitlab/agents/edge/config.yaml': '{}\n' });
    const project = owned.dir;
    const globalConfig = join(dir, 'gitconfig');
    writeFileSync(globalConfig, '[safe]\n\tdirectory = /nonexistent\n');
    const saved = { global: process.env.GIT_CONFIG_GLOBAL, owner: process.env.GIT_TEST_ASSUME_DIFFERENT_OWNER };
    process.env.GIT_CONFIG_GLOBAL = globalConfig;
    process.env.GIT_TEST_ASSUME_DIFFERENT_OWNER = '1';
    try {
      const e = await refusal(() => r.registerChecked('edge', project));
      expect(e.code).toBe('VERDICT_BAD_REQUEST');
      expect(e.message).toContain(`configuration project ${project} belongs to another user than this server's, and git refuses to read it`);
      expect(e.message).toContain(`\`git config --global --add safe.directory ${project}\``);
      expect(e.message).toContain('or chown it to that user');
      await expect(headCommit(project)).rejects.toThrow(`${project} belongs to another user than this server's`);
      // Trusted as git's own configuration says, it registers: the check and the server read it alike.
      writeFileSync(globalConfig, `[safe]\n\tdirectory = ${project}\n`);
      expect((await r.registerChecked('edge', project)).agent.config_project).toBe(project);
      expect(await headCommit(project)).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      for (const [key, value] of [
        ['GIT_CONFIG_GLOBAL', saved.global],
        ['GIT_TEST_ASSUME_DIFFERENT_OWNER', saved.owner],
      ] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});
