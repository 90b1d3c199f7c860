import { type CiJob, type JobInputNames, JobTokens, jobRefusal, jobView, type NewJob } from '../modules/ci-access/job-tokens.js';
import { parseDuration } from '../shared/config/duration.js';
import { parseSubcommand, usageError } from './args.js';
import { openExistingServerDb, SERVER_DB_FLAGS, SERVER_DB_FLAGS_HELP, serverDataDir } from './server-db.js';

const HELP = `Usage:
  verdict ci-tokens create --project <path> [--environment <name>] [--ref <branch or tag>
                           [--protected]] [--ttl <duration>] [--data-dir <dir> | --config <file>]
      Issues the credential of one CI/CD job of project <path> (as ci_access names it:
      group/project) and prints it, alone on stdout, once; only its SHA-256 hash is
      stored. It expires after --ttl (default 1h, at least 1m, at most 24h; give a
      unit: 90s, 30m, 1h). Turn it into a
      KUBECONFIG with \`verdict kubeconfig --ci-token <token>\`.
      --environment: the job's environment (ci_access environments rules);
      --protected: the job runs on a protected --ref (protected_branches_only).
  verdict ci-tokens list [--json] [--data-dir <dir> | --config <file>]
      Job ids, projects, environments, refs, expiry and revocation; never the secrets.
  verdict ci-tokens revoke <job-id> [--data-dir <dir> | --config <file>]
      The job's requests through the tunnel are refused with 401 from now on, and its
      open ones (watches, logs -f, exec) end within about a second.

${SERVER_DB_FLAGS_HELP}
On Kafka replicas any one replica's (running the proxy) is enough: the others accept
its tokens and revocations within about a second. The same operations are
in the admin HTTP API: /api/v1/admin/ci-tokens.
`;

/** The flags' names, and --ttl given back as typed. */
const flags = (ttl: string): JobInputNames => ({
  project: '--project',
  environment: '--environment',
  ref: '--ref',
  protected: '--protected',
  ttl: { name: '--ttl', example: '--ttl 1h', given: () => `--ttl ${ttl}`, range: 'at least 1m and at most 24h' },
});

export function jobLine(j: CiJob, now = Date.now()): string {
  const v = jobView(j, now);
  const state = v.revoked_at !== null ? `revoked ${v.revoked_at}` : v.state;
  return `${j.id}\t${j.project}\t${j.environment || '-'}\t${j.ref || '-'}${j.protected ? ' (protected)' : ''}\texpires ${new Date(j.expires_at).toISOString()}\t${state}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseSubcommand('ci-tokens', argv, ['create', 'list', 'revoke'], HELP, {
    project: { type: 'string' },
    environment: { type: 'string' },
    ref: { type: 'string' },
    protected: { type: 'boolean' },
    ttl: { type: 'string', default: '1h' },
    json: { type: 'boolean' },
    ...SERVER_DB_FLAGS,
  });
  if (typeof args === 'number') return args;
  const { sub, values, positionals } = args;
  let job: NewJob | undefined;
  if (sub === 'create') {
    const ttl = values.ttl.trim();
    // parseDuration reads bare digits as milliseconds (config files' rule); here a user means seconds as
    // often as not (the admin API takes ttl_seconds), so either reading could make a token they did not mean.
    if (/^\d+(\.\d+)?$/.test(ttl)) throw usageError(`verdict ci-tokens create: --ttl ${ttl} has no unit; give one, e.g. --ttl ${ttl}s (seconds) or --ttl 1h`);
    let ttlMs: number;
    try {
      ttlMs = parseDuration(ttl, '--ttl');
    } catch (e) {
      throw usageError(`verdict ci-tokens create: ${(e as Error).message}`);
    }
    job = {
      project: values.project ?? '',
      ttlMs,
      ...(values.environment ? { environment: values.environment } : {}),
      ...(values.ref ? { ref: values.ref } : {}),
      protected: Boolean(values.protected),
    };
    // The rule JobTokens.create applies, checked before the database is opened and told as a usage error.
    const refusal = jobRefusal(job, flags(ttl));
    if (refusal) throw usageError(`verdict ci-tokens create: ${refusal}`);
  }
  const db = openExistingServerDb(serverDataDir(values, `ci-tokens ${sub}`), `ci-tokens ${sub}`);
  try {
    const jobs = new JobTokens(db);
    if (job) {
      const { token } = jobs.create(job);
      process.stdout.write(`${token}\n`);
      return 0;
    }
    if (sub === 'list') {
      const list = jobs.list();
      process.stdout.write(values.json ? `${JSON.stringify(list.map((j) => jobView(j)))}\n` : list.map((j) => jobLine(j)).join(''));
      return 0;
    }
    const id = Number(positionals[0]);
    if (!Number.isInteger(id)) throw usageError('verdict ci-tokens revoke: give the job id from `verdict ci-tokens list`');
    if (!jobs.revoke(id)) throw usageError(`verdict ci-tokens revoke: no active CI job token with id ${id}; see \`verdict ci-tokens list\``);
    process.stdout.write(`revoked ${id}\n`);
    return 0;
  } finally {
    db.close();
  }
}
