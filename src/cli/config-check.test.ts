import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../cli.js';

// `verdict config check` as a pre-commit hook or CI job runs it: through the
// command table, on files and on a configuration project's directory.

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function check(...args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const collect = (c: string | Uint8Array) => {
    out += String(c);
    return true;
  };
  vi.spyOn(process.stdout, 'write').mockImplementation(collect);
  vi.spyOn(process.stderr, 'write').mockImplementation(collect);
  const code = await main(['config', 'check', ...args]);
  return { code, out };
}

function project(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'verdict-config-check-'));
  dirs.push(d);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(d, path, '..'), { recursive: true });
    writeFileSync(join(d, path), text);
  }
  return d;
}

const testdata = join(import.meta.dirname, '../server/config/testdata');

describe('verdict config check', () => {
  it('passes real GitLab agent files, printing their warnings as file:line: path: message', async () => {
    const file = join(testdata, 'gitlab-15-ci-access.yaml');
    const { code, out } = await check(file);
    expect(code).toBe(0);
    expect(out.split('\n')).toEqual([
      `warning: ${file}:44: user_access: not used by Verdict (Verdict has no Kubernetes API proxy for users); accepted and ignored`,
      `warning: ${file}:54: observability.logging.grpc_level: not used by Verdict (Verdict logs gRPC at observability.logging.level); accepted and ignored`,
      `warning: ${file}:55: observability.google_profiler: not used by Verdict (Verdict has no Google Cloud Profiler integration); accepted and ignored`,
      `${file}: valid (0 errors, 3 warnings)`,
      '',
    ]);
  });

  it('finds every agent of a configuration project and fails for an invalid one, naming line and path', async () => {
    const d = project({
      '.gitlab/agents/prod/config.yaml': 'cilium:\n  hubble_relay_address: hubble-relay.kube-system.svc:80\n',
      '.gitlab/agents/edge/config.yaml': 'gitops:\n  charts: []\ncilium:\n  hubble_relay_address: relay\n',
      'deploy/config.yaml': 'not: an agent config\n',
    });
    const { code, out } = await check(d);
    expect(code).toBe(1);
    const edge = join(d, '.gitlab/agents/edge/config.yaml');
    const prod = join(d, '.gitlab/agents/prod/config.yaml');
    expect(out).toContain(`warning: ${edge}:2: gitops.charts: not used by Verdict`);
    expect(out).toContain(`error: ${edge}:4: cilium.hubble_relay_address: "relay" is not valid: Hubble Relay's gRPC host:port, usually port 80`);
    expect(out).toContain(`${edge}: invalid (1 error, 1 warning)`);
    expect(out).toContain(`${prod}: valid (0 errors, 0 warnings)`);
    expect(out).not.toContain('deploy/config.yaml');
  });

  it('checks a config.yaml directly in the directory given, and fails for a directory without any', async () => {
    const d = project({ 'config.yaml': 'observability:\n  logging:\n    level: debug\n' });
    expect((await check(d)).code).toBe(0);
    const empty = project({ 'README.md': 'nothing here\n' });
    const r = await check(empty);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`error: ${empty}: no .gitlab/agents/*/config.yaml or config.yaml in this directory`);
  });

  it('fails for a file that cannot be read, and asks for a path when given none', async () => {
    expect((await check('/nonexistent/config.yaml')).code).toBe(1);
    const r = await check();
    expect(r.code).toBe(2);
    expect(r.out).toContain('verdict config check: give config.yaml files or directories to check');
  });

  it('says in its help which findings are errors and which are warnings, as checking files shows', async () => {
    let help = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      help += String(c);
      return true;
    });
    let code: number;
    try {
      code = await main(['config', 'check', '--help']);
    } finally {
      // The checks below write to stdout themselves, and a throw must not leave it swallowed.
      vi.restoreAllMocks();
    }
    expect(code).toBe(0);
    const flat = help.replace(/\s+/g, ' ');
    const [errors, warnings] = flat.split('Warnings leave it valid:') as [string, string];
    // What each part of the help claims, and a file showing it.
    const cases: { part: string; claim: string; file: string; code: number }[] = [
      { part: errors, claim: 'ci_access', file: 'ci_access:\n  projects: 3\n', code: 1 },
      { part: errors, claim: 'gitops.manifest_projects', file: 'gitops:\n  manifest_projects:\n    - id: a/b\n      prune: maybe\n', code: 1 },
      { part: errors, claim: 'observability.logging.level', file: 'observability:\n  logging:\n    level: loud\n', code: 1 },
      { part: errors, claim: 'unknown key in cilium', file: 'cilium:\n  hubble_relay_address: relay.example:80\n  polices: []\n', code: 1 },
      { part: errors, claim: 'gitops.manifest_projects entry', file: 'gitops:\n  manifest_projects:\n    - id: a/b\n      prnue: true\n', code: 1 },
      { part: errors, claim: 'misspelt key in a ci_access entry', file: 'ci_access:\n  projects:\n    - id: a/b\n      environment: [x]\n', code: 1 },
      { part: warnings, claim: 'gitops.charts', file: 'gitops:\n  charts: 3\n', code: 0 },
      { part: warnings, claim: 'user_access', file: 'user_access:\n  access_as: 3\n', code: 0 },
      { part: warnings, claim: 'at the top level', file: 'frobnicate: 1\n', code: 0 },
      { part: warnings, claim: 'in observability', file: 'observability:\n  loging: {}\n', code: 0 },
      { part: warnings, claim: 'in ci_access', file: 'ci_access:\n  projects:\n    - id: a/b\n      protected_branches: true\n', code: 0 },
    ];
    for (const c of cases) {
      expect(c.part, c.claim).toContain(c.claim);
      const d = project({ 'config.yaml': c.file });
      expect((await check(join(d, 'config.yaml'))).code, c.claim).toBe(c.code);
    }
  });
});

describe('verdict config check --server', () => {
  it('checks a server config as `verdict server` loads it: a webhook on a loopback IP not allowed, KAS keys', async () => {
    const d = project({
      'server.yaml':
        'agent:\n  listen:\n    address: 0.0.0.0:8150\nwebhooks:\n  integrations:\n    - name: a\n      type: generic\n      url: http://127.0.0.1:9000/hook\n      secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n',
      'ok.yaml':
        'webhooks:\n  allow_private_addresses: [127.0.0.1]\n  integrations:\n    - name: a\n      type: generic\n      url: http://127.0.0.1:9000/hook\n      secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n',
    });
    const bad = join(d, 'server.yaml');
    const { code, out } = await check('--server', bad);
    expect(code).toBe(1);
    expect(out.split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^error: ${bad}:1: agent: unknown key; .*instead of agent\\.listen\\.address, write grpc_addr`)),
      expect.stringMatching(
        new RegExp(
          `^error: ${bad}:8: webhooks\\.integrations\\[0\\]\\.url: refused to deliver to 127\\.0\\.0\\.1: it is a loopback address.*webhooks\\.allow_private_addresses`,
        ),
      ),
      `${bad}: invalid (2 errors, 0 warnings); \`verdict server\` would refuse to start with it`,
      '',
    ]);
    expect(await check('--server', join(d, 'ok.yaml'))).toEqual({ code: 0, out: `${join(d, 'ok.yaml')}: valid (0 errors, 0 warnings)\n` });
  });
});
