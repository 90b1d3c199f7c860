import { describe, expect, it } from 'vitest';
import { openServerDb } from '../../server/store/server-db.js';
import { JobTokens } from './job-tokens.js';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('JobTokens', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-tokens-'));
  const db = openServerDb(dir);
  const jobs = new JobTokens(db);

  it('issues a token once, keeps only its hash, and authenticates it to its job until it expires', () => {
    const { token, job } = jobs.create({ project: '/shop/app/', environment: 'production', ref: 'main', protected: true, ttlMs: 60_000 }, 1_000);
    expect(token).toMatch(/^vdt_ci_[\w-]{43}$/);
    expect(job).toMatchObject({ project: 'shop/app', environment: 'production', ref: 'main', protected: true, expires_at: 61_000 });
    expect(jobs.authenticate(token, 2_000)).toEqual({ job });
    expect(jobs.authenticate(token, 61_000)).toEqual({
      error: `the CI job token of job ${job.id} expired at 1970-01-01T00:01:01.000Z; create a new one with \`verdict ci-tokens create\` (--ttl sets its lifetime)`,
    });
    expect(jobs.authenticate(`${token}x`, 2_000)).toMatchObject({ error: expect.stringContaining('unknown') });
    db.pragma('wal_checkpoint(TRUNCATE)');
    const bytes = readdirSync(dir)
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('');
    expect(bytes).not.toContain(token);
  });

  it('revokes; a revoked token says so', () => {
    const { token, job } = jobs.create({ project: 'a/b', ttlMs: 60_000 });
    expect(jobs.revoke(job.id)).toBe(true);
    expect(jobs.revoke(job.id)).toBe(false);
    expect(jobs.authenticate(token)).toMatchObject({ error: expect.stringMatching(/^the CI job token of job \d+ was revoked at/) });
    expect(jobs.list().find((j) => j.id === job.id)?.revoked_at).not.toBeNull();
  });

  it('refuses a lifetime over 24h and an empty project', () => {
    expect(() => jobs.create({ project: 'a', ttlMs: 25 * 3600_000 })).toThrow(/at most 24h/);
    expect(() => jobs.create({ project: ' / ', ttlMs: 1000 })).toThrow(/project is empty/);
  });
});
