import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ConfigProject, tempDir, verdictRun, verdictSync } from '../helpers/processes.js';

// `verdict agents set-project`: an agent moved to another configuration project
// (its repository moved on disk) keeps its name, so its tokens and alerts stay;
// the new project is checked as `verdict agents register` checks one.

describe('verdict agents set-project', () => {
  const dir = tempDir('verdict-cli-set-project-');
  const data = join(dir, 'server');
  const first = new ConfigProject(join(dir, 'first'));
  first.commit({ '.gitlab/agents/edge/config.yaml': '{}\n' });
  const token = verdictSync(['agents', 'register', 'edge', '--config-project', first.dir, '--data-dir', data]).trim();

  it('moves the agent, keeps its token, and says what the new project still lacks', () => {
    const moved = new ConfigProject(join(dir, 'moved'));
    moved.commit({ 'README.md': 'x\n' });
    const run = verdictRun(['agents', 'set-project', 'edge', moved.dir, '--data-dir', data]);
    expect(run.stderr).toBe(
      `verdict agents set-project: note: ${moved.dir} has no .gitlab/agents/edge/config.yaml on its default branch yet; the agent gets its configuration once it is committed there\n`,
    );
    expect(run.stdout).toBe(`agent edge: configuration project ${moved.dir} (was ${first.dir})\n`);
    expect(run.status).toBe(0);
    expect(JSON.parse(verdictSync(['agents', 'list', '--json', '--data-dir', data]))).toMatchObject([{ name: 'edge', config_project: moved.dir, tokens: 1 }]);
    const db = openServerDb(data);
    try {
      expect(new AgentRegistry(db).authenticate(token)).toMatchObject({ name: 'edge', config_project: moved.dir });
    } finally {
      db.close();
    }
  });

  it('refuses what register refuses, an unknown agent and a missing path, saying what to do, and changes nothing', () => {
    const before = verdictSync(['agents', 'list', '--json', '--data-dir', data]);
    const plain = join(dir, 'plain');
    mkdirSync(plain);
    const cases: [string[], RegExp][] = [
      [['edge', plain], /^verdict agents set-project: configuration project .*plain is not a git repository; `git init` there/],
      [['edge', join(dir, 'sub', 'missing')], /^verdict agents set-project: configuration project .* does not exist/],
      [['edge', 'git@gitlab.example.com:ops/infra.git'], /is a URL; it must be the path of a git repository on the server's disk: clone it there/],
      [['nope', first.dir], /^verdict agents set-project: no agent named "nope"; register it first with `verdict agents register nope/],
      [['edge'], /give the agent name and the path of its new configuration project, e.g. `verdict agents set-project edge \/srv\/git\/infra`/],
      [['edge', '--config-project', first.dir], /give the path as the second argument, not --config-project/],
    ];
    for (const [args, message] of cases) {
      const run = verdictRun(['agents', 'set-project', ...args, '--data-dir', data]);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(message);
      expect(run.stdout, args.join(' ')).toBe('');
    }
    expect(verdictSync(['agents', 'list', '--json', '--data-dir', data])).toBe(before);
    expect(verdictSync(['agents', '--help'])).toContain('verdict agents set-project <name> <path>');
  });
});
