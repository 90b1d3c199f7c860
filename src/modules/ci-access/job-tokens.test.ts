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
    expect(() => jobs.create({ project: 'a', ttlMs: 25 * 3600_000 })).toThrow(
      'ttl_seconds must be at least 60 and at most 86400 (24h) (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. 3600; got 90000',
    );
    expect(() => jobs.create({ project: ' / ', ttlMs: 60_000 })).toThrow("give project, the path of the job's project as ci_access names it (group/project)");
    // Refusals the admin API answers 400 (VERDICT_BAD_REQUEST), as the CLI refuses its flags.
    for (const bad of [
      { project: 'shop app', ttlMs: 60_000 },
      { project: 'a//b', ttlMs: 60_000 },
      { project: 'a/b', protected: true, ttlMs: 60_000 },
    ])
      expect(() => jobs.create(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'VERDICT_BAD_REQUEST' }));
    expect(() => jobs.create({ project: 'shop app', ttlMs: 60_000 })).toThrow(/"shop app" is not a project path; give it as ci_access names it/);
    expect(() => jobs.create({ project: 'a/b', protected: true, ttlMs: 60_000 })).toThrow(
      'protected says ref is a protected branch or tag; give ref <branch or tag> too',
    );
    expect(jobs.create({ project: '42', protected: true, ref: 'main', ttlMs: 60_000 }).job).toMatchObject({ project: '42', protected: true });
  });

  it('shares rows between replicas: hashes only, the same job id, revocation one-way whatever the order', () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'verdict-ci-tokens-'));
    const other = new JobTokens(openServerDb(dir2));
    const { token, job } = jobs.create({ project: 'shop/app', environment: 'prod', ttlMs: 60_000 });
    const rows = jobs.unpublished();
    const row = rows.find((r) => r.id === job.id)!;
    expect(row).toMatchObject({ ...job, token_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(JSON.stringify(rows)).not.toContain(token);
    jobs.markPublished(rows);
    expect(jobs.unpublished()).toEqual([]);
    // Adopted on the other replica: the token authenticates there, as the same job.
    other.adopt(row);
    expect(other.authenticate(token)).toEqual({ job });
    expect(other.unpublished()).toEqual([]);
    // Revoked on the other replica: published from there, adopted here; the older, unrevoked row arriving late changes nothing.
    expect(other.revoke(job.id)).toBe(true);
    const revoked = other.unpublished();
    expect(revoked).toHaveLength(1);
    jobs.adopt(revoked[0]!);
    jobs.adopt(row);
    expect(jobs.authenticate(token)).toMatchObject({ error: expect.stringContaining('was revoked') });
    // Ids are drawn at random, so two replicas issuing tokens at once do not give two jobs one id.
    const ids = new Set(Array.from({ length: 50 }, () => other.create({ project: 'a', ttlMs: 60_000 }).job.id));
    expect(ids.size).toBe(50);
    expect(Math.max(...ids)).toBeGreaterThan(1000);
  });

  it('forgets purged rows on the topic too (tombstones)', () => {
    const { job } = jobs.create({ project: 'old', ttlMs: 60_000 }, 0);
    const published = jobs.unpublished();
    const hash = published.find((r) => r.id === job.id)!.token_hash;
    jobs.markPublished(published);
    expect(jobs.purgedPublished()).toEqual([]);
    expect(jobs.purgeExpired(3 * 24 * 3600_000)).toBeGreaterThan(0);
    const gone = jobs.purgedPublished();
    expect(gone).toContain(hash);
    jobs.markPublished([], gone);
    expect(jobs.purgedPublished()).toEqual([]);
    expect(jobs.list().some((j) => j.id === job.id)).toBe(false);
  });

  it("checks any number of open jobs at once: past SQLite's 32,766 variables too", () => {
    const { job: good } = jobs.create({ project: 'many/open', ttlMs: 60_000 });
    const { job: revoked } = jobs.create({ project: 'many/open', ttlMs: 60_000 });
    jobs.revoke(revoked.id);
    const gone = Array.from({ length: 40_000 }, (_, i) => 10_000_000 + i);
    const why = jobs.invalidAmong([good.id, revoked.id, ...gone]);
    expect(why.has(good.id)).toBe(false);
    expect(why.get(revoked.id)).toMatch(/was revoked at/);
    expect(why.size).toBe(40_001);
  });
});
