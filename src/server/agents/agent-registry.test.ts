import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openServerDb } from '../store/server-db.js';
import { AgentRegistry } from './agent-registry.js';
import { RevocationWatcher } from './revocation-watcher.js';
import { createRootLogger } from '../../shared/log/logger.js';

const project = mkdtempSync(join(tmpdir(), 'verdict-project-'));
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
