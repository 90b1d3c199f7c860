import type Database from 'better-sqlite3';
import { randomInt } from 'node:crypto';
import { hashSecret, newSecret, secretMatches } from '../../server/auth/secret.js';
import { VerdictError } from '../../shared/errors.js';
import { migrate, preparedCache, type DB } from '../../shared/sqlite/open.js';

// Credentials of CI/CD jobs. GitLab gives every job a token that dies with
// the job; Verdict has no CI server of its own, so it issues one per job
// (`verdict ci-tokens create`): short-lived, stored as its SHA-256 hash only
// (the agent tokens' scheme, server/auth/secret.ts), revocable. The row id is
// the job id the impersonated user `gitlab:ci_job:<id>` carries. It is drawn
// at random rather than counted, because Kafka replicas each issue tokens into
// their own SQLite and share the rows (replica-sync.ts): a job must have one
// id on every replica, for impersonation and for revoking it anywhere.

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
  // What this replica has published to the other replicas (replica-sync.ts): the row, and whether revoked.
  'CREATE TABLE ci_job_tokens_published (token_hash TEXT PRIMARY KEY, revoked INTEGER NOT NULL);',
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

/** A token row as replicas share it: the hash, never the secret. */
export type SharedJobToken = CiJob & { token_hash: string };

// Ids below 2^40: kept in a JSON number without loss, and a collision among a day's tokens is as unlikely as it gets.
const MAX_JOB_ID = 2 ** 40;

export const MAX_TTL_MS = 24 * 3600_000;
/** The shortest lifetime: a token for a job, not one that expires while kubectl starts. */
export const MIN_TTL_MS = 60_000;
/** A project as ci_access names it: group/subgroup/project, or a numeric id. */
const PROJECT_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
/** One part of a GitLab path: `..`, `.` or `-x` name no project, and would let a path climb out of its group. */
const PATH_PART = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** GitLab's rule for environment names, spaces included ("Prod Env" is one; its slug is prod-env); at most 255 characters. */
const ENVIRONMENT_NAME = /^(?!\/)[A-Za-z0-9 _/${}.-]{1,255}(?<!\/)$/;
export const TOKEN_PREFIX = 'vdt_ci_';
const PURGE_AFTER_MS = 24 * 3600_000;

/** A job as the API shows it, and `verdict ci-tokens list --json`: times in ISO 8601, with its state. */
export function jobView(j: CiJob, now = Date.now()) {
  return {
    id: j.id,
    project: j.project,
    environment: j.environment,
    ref: j.ref,
    protected: j.protected,
    created_at: new Date(j.created_at).toISOString(),
    expires_at: new Date(j.expires_at).toISOString(),
    revoked_at: j.revoked_at === null ? null : new Date(j.revoked_at).toISOString(),
    state: j.revoked_at !== null ? 'revoked' : j.expires_at <= now ? 'expired' : 'active',
  };
}

/** What a caller's users call a new job's inputs, for its messages: the admin API's body fields, or the CLI's flags. */
export interface JobInputNames {
  project: string;
  environment: string;
  ref: string;
  protected: string;
  /**
   * The lifetime, written as its users write it: a good one (`--ttl 1h`), and
   * the one given, which a caller that has its text gives back as typed.
   */
  ttl: { name: string; example: string; given: (ttlMs: number) => string; range: string };
}
const API_NAMES: JobInputNames = {
  project: 'project',
  environment: 'environment',
  ref: 'ref',
  protected: 'protected',
  ttl: {
    name: 'ttl_seconds',
    example: '3600',
    given: (ttlMs) => String(ttlMs / 1000),
    range: `at least ${MIN_TTL_MS / 1000} and at most ${MAX_TTL_MS / 1000} (24h)`,
  },
};

const projectPath = (p: string) => p.trim().replace(/^\/+|\/+$/g, '');

/** Why no token can be issued for `j` (the rule JobTokens.create applies), in the caller's names for its inputs; undefined if one can. */
export function jobRefusal(j: NewJob, names: JobInputNames = API_NAMES): string | undefined {
  const project = projectPath(j.project);
  if (!project) return `give ${names.project}, the path of the job's project as ci_access names it (group/project)`;
  // Such a job could never match a ci_access entry, whose ids are paths of this form.
  if (!PROJECT_PATH.test(project))
    return `${names.project} ${JSON.stringify(j.project)} is not a project path; give it as ci_access names it (group/subgroup/project, or a numeric id)`;
  const bad = project.split('/').find((part) => !PATH_PART.test(part) || /\.(git|atom)$/i.test(part));
  if (bad !== undefined)
    return `${names.project} ${JSON.stringify(j.project)} is not a GitLab project path: each part may hold only letters, digits, '_', '-' and '.', must start with a letter, digit or '_', and must not end in .git or .atom (${JSON.stringify(bad)} does not)`;
  if (j.environment && !ENVIRONMENT_NAME.test(j.environment))
    return `${names.environment} ${JSON.stringify(j.environment)} is not a GitLab environment name: it may hold only letters, digits, spaces and '-', '_', '/', '$', '{', '}', '.', but must not start or end with '/'`;
  // protected_branches_only reads it as "the ref is protected": without a ref it says nothing.
  if (j.protected && !j.ref) return `${names.protected} says ${names.ref} is a protected branch or tag; give ${names.ref} <branch or tag> too`;
  if (!(j.ttlMs >= MIN_TTL_MS) || j.ttlMs > MAX_TTL_MS) {
    const { name, example, given, range } = names.ttl;
    return `${name} must be ${range} (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. ${example}; got ${given(j.ttlMs)}`;
  }
  return undefined;
}

/** Why a job's token may not be used now (revoked, expired), or undefined. */
function invalidity(job: Pick<CiJob, 'id' | 'expires_at' | 'revoked_at'>, now: number): string | undefined {
  if (job.revoked_at !== null)
    return `the CI job token of job ${job.id} was revoked at ${new Date(job.revoked_at).toISOString()}; create a new one with \`verdict ci-tokens create\``;
  if (job.expires_at <= now)
    return `the CI job token of job ${job.id} expired at ${new Date(job.expires_at).toISOString()}; create a new one with \`verdict ci-tokens create\` (--ttl sets its lifetime)`;
  return undefined;
}

type Row = Omit<CiJob, 'protected'> & { protected: number };
const toJob = ({ protected: p, ...r }: Row): CiJob => ({ ...r, protected: p === 1 });

/** The CI job tokens in the server's database. */
export class JobTokens {
  /** Statements of the request path, prepared once. */
  private readonly sql: (text: string) => Database.Statement<unknown[]>;

  constructor(private readonly db: DB) {
    migrate(db, 'ci_access', MIGRATIONS);
    this.sql = preparedCache(db);
  }

  /** Issues a token for one job; the secret is returned once and stored hashed. */
  create(j: NewJob, now = Date.now()): { token: string; job: CiJob } {
    const refusal = jobRefusal(j);
    if (refusal) throw new VerdictError('VERDICT_BAD_REQUEST', refusal);
    const token = newSecret(TOKEN_PREFIX);
    const row = {
      id: this.freeId(),
      project: projectPath(j.project),
      environment: j.environment ?? '',
      ref: j.ref ?? '',
      protected: j.protected ? 1 : 0,
      token_hash: hashSecret(token),
      created_at: now,
      expires_at: now + j.ttlMs,
    };
    this.db
      .prepare(
        'INSERT INTO ci_job_tokens (id, project, environment, ref, protected, token_hash, created_at, expires_at) VALUES (@id, @project, @environment, @ref, @protected, @token_hash, @created_at, @expires_at)',
      )
      .run(row);
    const { token_hash: _, ...rest } = row;
    return { token, job: toJob({ ...rest, revoked_at: null }) };
  }

  private freeId(): number {
    const taken = this.db.prepare('SELECT 1 FROM ci_job_tokens WHERE id = ?');
    for (;;) {
      const id = randomInt(1, MAX_JOB_ID);
      if (!taken.get(id)) return id;
    }
  }

  /** Rows the other replicas have not been given yet: new ones, newly revoked ones. */
  unpublished(): SharedJobToken[] {
    return (
      this.db
        .prepare(`SELECT t.* FROM ci_job_tokens t LEFT JOIN ci_job_tokens_published p ON p.token_hash = t.token_hash
          WHERE p.token_hash IS NULL OR (t.revoked_at IS NOT NULL AND p.revoked = 0)`)
        .all() as (Row & { token_hash: string })[]
    ).map((r) => ({ ...toJob(r), token_hash: r.token_hash }));
  }

  /** Hashes published once whose rows were purged here: the other replicas may forget them (a tombstone on the topic). */
  purgedPublished(): string[] {
    return (
      this.db
        .prepare('SELECT p.token_hash FROM ci_job_tokens_published p LEFT JOIN ci_job_tokens t ON t.token_hash = p.token_hash WHERE t.token_hash IS NULL')
        .all() as { token_hash: string }[]
    ).map((r) => r.token_hash);
  }

  markPublished(rows: readonly { token_hash: string; revoked_at: number | null }[], forgotten: readonly string[] = []): void {
    const mark = this.db.prepare(
      'INSERT INTO ci_job_tokens_published (token_hash, revoked) VALUES (?, ?) ON CONFLICT (token_hash) DO UPDATE SET revoked = max(revoked, excluded.revoked)',
    );
    const forget = this.db.prepare('DELETE FROM ci_job_tokens_published WHERE token_hash = ?');
    this.db.transaction(() => {
      for (const r of rows) mark.run(r.token_hash, r.revoked_at !== null ? 1 : 0);
      for (const h of forgotten) forget.run(h);
    })();
  }

  /**
   * Adds a row another replica issued, or its revocation (one-way: a revoked
   * token stays revoked whatever order the rows arrive in). Rows this replica
   * would purge anyway are not added. Marked as published, so it is not sent back.
   */
  adopt(r: SharedJobToken, now = Date.now()): void {
    if (r.expires_at < now - PURGE_AFTER_MS) return;
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO ci_job_tokens (id, project, environment, ref, protected, token_hash, created_at, expires_at, revoked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        )
        .run(r.id, r.project, r.environment, r.ref, r.protected ? 1 : 0, r.token_hash, r.created_at, r.expires_at, r.revoked_at);
      if (r.revoked_at !== null)
        this.db.prepare('UPDATE ci_job_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL').run(r.revoked_at, r.token_hash);
      this.markPublished([r]);
    })();
  }

  /** The job of a presented token, or why it is refused (unknown, expired, revoked). */
  authenticate(token: string, now = Date.now()): JobAuth {
    const row = this.sql('SELECT * FROM ci_job_tokens WHERE token_hash = ?').get(hashSecret(token)) as (Row & { token_hash: string }) | undefined;
    if (!row || !secretMatches(token, row.token_hash))
      return { error: 'the CI job token is unknown; create one with `verdict ci-tokens create --project <path>`' };
    const { token_hash: _, ...job } = row;
    const error = invalidity(job, now);
    return error ? { error } : { job: toJob(job) };
  }

  /**
   * Which of these jobs' tokens may no longer be used, with why (authenticate's words): revoked, expired, or gone.
   * For requests that began while the token was good (job-streams.ts).
   */
  invalidAmong(ids: readonly number[], now = Date.now()): Map<number, string> {
    const out = new Map<number, string>();
    if (ids.length === 0) return out;
    // One statement for any number of jobs: a placeholder each would be a new statement every second, and past
    // SQLite's 32,766 variables one that cannot be prepared at all.
    const rows = this.sql('SELECT id, expires_at, revoked_at FROM ci_job_tokens WHERE id IN (SELECT value FROM json_each(?))').all(JSON.stringify(ids)) as Pick<
      CiJob,
      'id' | 'expires_at' | 'revoked_at'
    >[];
    const found = new Map(rows.map((r) => [r.id, r]));
    for (const id of ids) {
      const r = found.get(id);
      const why = r ? invalidity(r, now) : `the CI job token of job ${id} no longer exists; create a new one with \`verdict ci-tokens create\``;
      if (why) out.set(id, why);
    }
    return out;
  }

  list(): CiJob[] {
    return (
      this.db
        .prepare('SELECT id, project, environment, ref, protected, created_at, expires_at, revoked_at FROM ci_job_tokens ORDER BY created_at, id')
        .all() as Row[]
    ).map(toJob);
  }

  /** Revokes a job's token; false when it is unknown or already revoked. */
  revoke(id: number, now = Date.now()): boolean {
    return this.db.prepare('UPDATE ci_job_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes > 0;
  }

  /** Deletes rows expired for over a day; they can never authenticate again. */
  purgeExpired(now = Date.now()): number {
    return this.db.prepare('DELETE FROM ci_job_tokens WHERE expires_at < ?').run(now - PURGE_AFTER_MS).changes;
  }
}
