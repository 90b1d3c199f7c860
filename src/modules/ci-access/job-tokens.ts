import { hashSecret, newSecret, secretMatches } from '../../server/auth/secret.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';

// Credentials of CI/CD jobs. GitLab gives every job a token that dies with
// the job; Verdict has no CI server of its own, so it issues one per job
// (`verdict ci-tokens create`): short-lived, stored as its SHA-256 hash only
// (the agent tokens' scheme, server/auth/secret.ts), revocable. The row id is
// the job id the impersonated user `gitlab:ci_job:<id>` carries.

const MIGRATIONS = [
  `CREATE TABLE ci_job_tokens (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     project TEXT NOT NULL,
     environment TEXT NOT NULL DEFAULT '',
     ref TEXT NOT NULL DEFAULT '',
     protected INTEGER NOT NULL DEFAULT 0,
     token_hash TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER
   );`,
];

/** The CI job a token was issued for. */
export interface CiJob {
  /** Job id: the token's row id. */
  id: number;
  /** Project path (group/subgroup/project) or numeric id, as ci_access names it. */
  project: string;
  /** Environment the job deploys to ("" when none). */
  environment: string;
  ref: string;
  /** Whether ref is a protected branch or tag. */
  protected: boolean;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

export interface NewJob {
  project: string;
  environment?: string;
  ref?: string;
  protected?: boolean;
  ttlMs: number;
}

export type JobAuth = { job: CiJob } | { error: string };

export const MAX_TTL_MS = 24 * 3600_000;
export const TOKEN_PREFIX = 'vdt_ci_';

type Row = Omit<CiJob, 'protected'> & { protected: number };
const toJob = ({ protected: p, ...r }: Row): CiJob => ({ ...r, protected: p === 1 });

/** The CI job tokens in the server's database. */
export class JobTokens {
  constructor(private readonly db: DB) {
    migrate(db, 'ci_access', MIGRATIONS);
  }

  /** Issues a token for one job; the secret is returned once and stored hashed. */
  create(j: NewJob, now = Date.now()): { token: string; job: CiJob } {
    const project = j.project.trim().replace(/^\/+|\/+$/g, '');
    if (!project) throw new Error('the project is empty; give its path as in ci_access (group/project)');
    if (!(j.ttlMs > 0) || j.ttlMs > MAX_TTL_MS)
      throw new Error(`the lifetime must be above 0 and at most 24h (a job token lives as long as its job); got ${j.ttlMs} ms`);
    const token = newSecret(TOKEN_PREFIX);
    const row = {
      project,
      environment: j.environment ?? '',
      ref: j.ref ?? '',
      protected: j.protected ? 1 : 0,
      token_hash: hashSecret(token),
      created_at: now,
      expires_at: now + j.ttlMs,
    };
    const info = this.db
      .prepare(
        'INSERT INTO ci_job_tokens (project, environment, ref, protected, token_hash, created_at, expires_at) VALUES (@project, @environment, @ref, @protected, @token_hash, @created_at, @expires_at)',
      )
      .run(row);
    const { token_hash: _, ...rest } = row;
    return { token, job: toJob({ id: Number(info.lastInsertRowid), ...rest, revoked_at: null }) };
  }

  /** The job of a presented token, or why it is refused (unknown, expired, revoked). */
  authenticate(token: string, now = Date.now()): JobAuth {
    const row = this.db.prepare('SELECT * FROM ci_job_tokens WHERE token_hash = ?').get(hashSecret(token)) as (Row & { token_hash: string }) | undefined;
    if (!row || !secretMatches(token, row.token_hash))
      return { error: 'the CI job token is unknown; create one with `verdict ci-tokens create --project <path>`' };
    const { token_hash: _, ...job } = row;
    if (job.revoked_at !== null)
      return {
        error: `the CI job token of job ${job.id} was revoked at ${new Date(job.revoked_at).toISOString()}; create a new one with \`verdict ci-tokens create\``,
      };
    if (job.expires_at <= now)
      return {
        error: `the CI job token of job ${job.id} expired at ${new Date(job.expires_at).toISOString()}; create a new one with \`verdict ci-tokens create\` (--ttl sets its lifetime)`,
      };
    return { job: toJob(job) };
  }

  list(): CiJob[] {
    return (
      this.db.prepare('SELECT id, project, environment, ref, protected, created_at, expires_at, revoked_at FROM ci_job_tokens ORDER BY id').all() as Row[]
    ).map(toJob);
  }

  /** Revokes a job's token; false when it is unknown or already revoked. */
  revoke(id: number, now = Date.now()): boolean {
    return this.db.prepare('UPDATE ci_job_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes > 0;
  }

  /** Deletes rows expired for over a day; they can never authenticate again. */
  purgeExpired(now = Date.now()): number {
    return this.db.prepare('DELETE FROM ci_job_tokens WHERE expires_at < ?').run(now - 24 * 3600_000).changes;
  }
}
