import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JobTokens } from './modules/ci-access/job-tokens.js';
import { openServerDb } from './server/store/server-db.js';

// The built CLI (bin/verdict.js) with its output piped into a reader that
// stops early, as `| head -1` does. Each command prints far more than a pipe
// holds (64 KiB), so its writes outlive the reader and fail with EPIPE.

const BIN = join(import.meta.dirname, '../bin/verdict.js');
const dir = mkdtempSync(join(tmpdir(), 'verdict-cli-pipe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `verdict <args> | <reader>` under pipefail: the status is verdict's own unless the reader fails. */
function pipedTo(reader: string, ...args: string[]) {
  const r = spawnSync('bash', ['-c', `set -o pipefail; "$0" "$@" | ${reader}`, process.execPath, BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('verdict with its output piped into a reader that closes early', () => {
  it('config check: the first line, then a quiet exit', () => {
    const file = join(dir, 'config.yaml');
    // 5,000 unknown sections: one warning line each, about 700 KB in all.
    writeFileSync(file, Array.from({ length: 5000 }, (_, i) => `unknown_${i}: 1\n`).join(''));
    expect(pipedTo('head -1', 'config', 'check', file)).toEqual({
      status: 0,
      stdout: `warning: ${file}:1: unknown_0: unknown section, ignored: no version of the GitLab agent or of Verdict has it\n`,
      stderr: '',
    });
  });

  it('ci-tokens list --json: one long line, cut short by head -c, then a quiet exit', () => {
    const data = join(dir, 'server');
    const db = openServerDb(data);
    const jobs = new JobTokens(db);
    for (let i = 0; i < 1000; i++) jobs.create({ project: `group/project-${i}`, ttlMs: 3600_000 });
    db.close();
    const r = pipedTo('head -c 100', 'ci-tokens', 'list', '--json', '--data-dir', data);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\[\{"id":\d+,"project":"group\/project-0",/);
  });
});
