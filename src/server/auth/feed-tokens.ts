import type { DB } from '../../shared/sqlite/open.js';
import { hashSecret, newSecret, secretMatches } from './secret.js';

export const FEED_SCOPES = ['read', 'write', 'admin'] as const;
export type FeedScope = (typeof FEED_SCOPES)[number];

/** A scope grants everything below it: admin > write > read. */
export function scopeAllows(have: FeedScope, need: FeedScope): boolean {
  return FEED_SCOPES.indexOf(have) >= FEED_SCOPES.indexOf(need);
}

export interface FeedTokenInfo {
  id: number;
  name: string;
  scope: FeedScope;
}

/** Tokens for people and tools reading the feed (not for agents). */
export class FeedTokens {
  constructor(private readonly db: DB) {}

  create(name: string, scope: FeedScope): { token: string; info: FeedTokenInfo } {
    if (!FEED_SCOPES.includes(scope)) throw new Error(`unknown scope "${scope}"; use one of ${FEED_SCOPES.join(', ')}`);
    const token = newSecret('vdt_feed_');
    const info = this.db
      .prepare('INSERT INTO feed_tokens (name, scope, token_hash, created_at) VALUES (?, ?, ?, ?)')
      .run(name, scope, hashSecret(token), new Date().toISOString());
    return { token, info: { id: Number(info.lastInsertRowid), name, scope } };
  }

  verify(token: string): FeedTokenInfo | undefined {
    const row = this.db.prepare('SELECT id, name, scope, token_hash FROM feed_tokens WHERE token_hash = ? AND revoked_at IS NULL').get(hashSecret(token)) as
      | (FeedTokenInfo & { token_hash: string })
      | undefined;
    if (!row || !secretMatches(token, row.token_hash)) return undefined;
    return { id: row.id, name: row.name, scope: row.scope };
  }

  list(): (FeedTokenInfo & { created_at: string; revoked_at: string | null })[] {
    return this.db.prepare('SELECT id, name, scope, created_at, revoked_at FROM feed_tokens ORDER BY id').all() as (FeedTokenInfo & {
      created_at: string;
      revoked_at: string | null;
    })[];
  }

  revoke(id: number): boolean {
    return this.db.prepare('UPDATE feed_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(new Date().toISOString(), id).changes > 0;
  }
}
