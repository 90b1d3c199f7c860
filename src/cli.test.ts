import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from './cli.js';
import { JobTokens } from './modules/ci-access/job-tokens.js';
import { flowJson, pod } from './modules/cilium/policy/testing.js';
import { openServerDb } from './server/store/server-db.js';

// The built CLI (bin/verdict.js) with its output piped into a reader that
// stops early, as `| head -1` does. Each command prints far more than a pipe
// holds (64 KiB), so its writes outlive the reader and fail with EPIPE. A
// command whose status is set by then keeps it; one cut off before it knows
// its answer dies of SIGPIPE (141 under a shell), never a false 0.

const BIN = join(import.meta.dirname, '../bin/verdict.js');
const POLICIES = join(import.meta.dirname, '../policies');
const dir = mkdtempSync(join(tmpdir(), 'verdict-cli-pipe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `verdict <args> | <reader>` under pipefail: the status is verdict's own unless the reader fails. */
function pipedTo(reader: string, ...args: string[]) {
  const r = spawnSync('bash', ['-c', `set -o pipefail; "$0" "$@" | ${reader}`, process.execPath, BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('verdict with its output piped into a reader that closes early', () => {
  it('replay: cut off before its status is known, it dies of SIGPIPE (141), not 0', async () => {
    const flows = join(dir, 'flows.jsonl');
    // 3,000 denied flows (about 1.3 MB of alerts), then a line replay skips.
    const denied = JSON.stringify(flowJson({ src: pod('shop', 'frontend'), dst: pod('shop', 'payments'), port: 8443, reason: 133 }));
    writeFileSync(flows, `${`${denied}\n`.repeat(3000)}not json\n`);
    const whole = spawnSync(process.execPath, [BIN, 'replay', '--policies', POLICIES, '--flows', flows], { encoding: 'utf8', timeout: 30_000 });
    expect(whole.status).toBe(1);
    expect(whole.stderr).toContain('flows.jsonl:3001: not a JSON object');
    const r = pipedTo('head -1', 'replay', '--policies', POLICIES, '--flows', flows);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(141);
    expect(r.stdout).toMatch(/^\{"line":1,.*\n$/);
    // A parent that is not a shell sees the signal itself, as from kubectl.
    const child = spawn(process.execPath, [BIN, 'replay', '--policies', POLICIES, '--flows', flows], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    child.stdout.once('data', () => child.stdout.destroy());
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGPIPE', stderr: '' });
  });

  it('config check: the first line, then a quiet exit with the status it had set (1: an error)', () => {
    const file = join(dir, 'config.yaml');
    // 5,000 unknown sections: one warning line each, about 700 KB in all; then an error.
    writeFileSync(file, `${Array.from({ length: 5000 }, (_, i) => `unknown_${i}: 1\n`).join('')}gitops: 5\n`);
    expect(pipedTo('head -1', 'config', 'check', file)).toEqual({
      status: 1,
      stdout: `warning: ${file}:1: unknown_0: unknown section, ignored: no version of the GitLab agent or of Verdict has it\n`,
      stderr: '',
    });
  });

  it('verdict --help says what a reader closing early does to the exit status', () => {
    const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('(| head -1), a command that already knows its exit status exits quietly with it;');
    expect(help).toContain('dies of SIGPIPE (141 under a shell, which pipefail reports)');
  });

  it('ci-tokens list --json: one long line, cut short by head -c, then a quiet exit with the status it had set (0)', () => {
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

describe('verdict with an unknown command', () => {
  const stderrOf = async (argv: string[]) => {
    let err = '';
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    try {
      return { code: await main(argv), first: err.split('\n')[0] };
    } finally {
      spy.mockRestore();
    }
  };

  it('names the command meant when it is a near miss (the same rule as the config typo hints), then the help; exit 2', async () => {
    expect(await stderrOf(['agnet'])).toEqual({ code: 2, first: 'verdict: unknown command "agnet" (did you mean "agent"?)' });
    expect(await stderrOf(['kubconfig', '--ci-token', 'x'])).toEqual({ code: 2, first: 'verdict: unknown command "kubconfig" (did you mean "kubeconfig"?)' });
    expect(await stderrOf(['frobnicate'])).toEqual({ code: 2, first: 'verdict: unknown command "frobnicate"' });
  });
});
