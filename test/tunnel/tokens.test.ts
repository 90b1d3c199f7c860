import * as crypto from 'node:crypto';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ConfigProject, REPO, tempDir, verdictSync } from '../helpers/processes.js';

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
function verdictFails(args: string[]): { status: number; stderr: string } {
  try {
    execFileSync(process.execPath, [join(REPO, 'bin/verdict.js'), ...args], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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

describe('agent token comparison', () => {
  it('compares a presented token with the stored hash in constant time', () => {
    const db = openServerDb(':memory:');
    const reg = new AgentRegistry(db);
    const { token } = reg.register('edge', tempDir());
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
