import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { AgentRegistry } from '../server/agents/agent-registry.js';
import { openServerDb } from '../server/store/server-db.js';

import { run as ciTokens } from './ci-tokens.js';
import { proxyUrl, run as kubeconfig } from './kubeconfig.js';
import { VerdictError } from '../shared/errors.js';

// `verdict ci-tokens` and `verdict kubeconfig` as a CI pipeline calls them:
// flags, what is printed on stdout (the secret alone; the kubeconfig), and
// refusals that say what to do. Through the proxy with kubectl: test/ci-tunnel.

async function stdoutOf(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    return { code: await fn(), out };
  } finally {
    spy.mockRestore();
  }
}

/** stdout and stderr of a command that fails: stdout is where `> kubeconfig` writes, so it must stay empty. */
async function outputsOf(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
  try {
    return { ...(await stdoutOf(fn)), err };
  } finally {
    spy.mockRestore();
  }
}

describe('verdict ci-tokens and verdict kubeconfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-cli-'));
  const data = join(dir, 'server');
  const project = join(dir, 'config-projects', 'acme', 'infra');
  mkdirSync(join(project, '.gitlab/agents/prod'), { recursive: true });
  writeFileSync(
    join(project, '.gitlab/agents/prod/config.yaml'),
    'ci_access:\n  groups:\n    - id: shop\n      default_namespace: web\n      environments: [production]\n',
  );
  const git = (...a: string[]) => execFileSync('git', ['-C', project, '-c', 'user.name=t', '-c', 'user.email=t@t', ...a]);
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'c');
  const db = openServerDb(data);
  const agentId = new AgentRegistry(db).register('prod', project).agent.id;
  db.close();
  afterEach(() => vi.restoreAllMocks());

  it("create prints the token alone; kubeconfig turns it into the job's KUBECONFIG; list and revoke", async () => {
    const created = await stdoutOf(() => ciTokens(['create', '--project', 'shop/web', '--environment', 'production', '--ttl', '30m', '--data-dir', data]));
    expect(created.code).toBe(0);
    expect(created.out).toMatch(/^vdt_ci_[\w-]{43}\n$/);
    const token = created.out.trim();
    const server = join(dir, 'server.yaml');
    writeFileSync(
      server,
      `data_dir: ${data}\nprojects_dir: ${join(dir, 'config-projects')}\nkubernetes_api: {listen: "0.0.0.0:8154", url_path_prefix: /k8s-proxy/}\ntls: {cert_file: a, key_file: b}\n`,
    );
    const k = await stdoutOf(() => kubeconfig(['--ci-token', token, '--config', server]));
    expect(k.code).toBe(0);
    const cfg = parse(k.out) as {
      clusters: { cluster: { server: string } }[];
      users: { name: string; user: { token: string } }[];
      contexts: { name: string; context: { namespace: string } }[];
    };
    expect(cfg.clusters[0]!.cluster.server).toBe('https://127.0.0.1:8154/k8s-proxy');
    expect(cfg.users).toEqual([{ name: `agent:${agentId}`, user: { token: `ci:${agentId}:${token}` } }]);
    // The configuration project's path under projects_dir, as GitLab names projects.
    expect(cfg.contexts.map((c) => [c.name, c.context.namespace])).toEqual([['acme/infra:prod', 'web']]);
    const list = await stdoutOf(() => ciTokens(['list', '--data-dir', data]));
    expect(list.out).toMatch(/^\d+\tshop\/web\tproduction\t-\texpires \S+\tactive\n$/);
    expect(list.out).not.toContain(token);
    // --json as the admin API lists them (GET /api/v1/admin/ci-tokens) and as `verdict tokens list --json`: ISO times, the state.
    const json = JSON.parse((await stdoutOf(() => ciTokens(['list', '--json', '--data-dir', data]))).out) as Record<string, unknown>[];
    expect(json).toEqual([
      {
        id: Number(list.out.split('\t')[0]),
        project: 'shop/web',
        environment: 'production',
        ref: '',
        protected: false,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
        expires_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
        revoked_at: null,
        state: 'active',
      },
    ]);
    const id = list.out.split('\t')[0]!;
    expect((await stdoutOf(() => ciTokens(['revoke', id, '--data-dir', data]))).out).toBe(`revoked ${id}\n`);
    const revoked = await outputsOf(() => kubeconfig(['--ci-token', token, '--config', server]));
    expect(revoked).toEqual({ code: 1, out: '', err: expect.stringMatching(/^verdict kubeconfig: .*was revoked at/) });
  });

  it('refuses what it cannot do, saying what to give', async () => {
    await expect(ciTokens(['create', '--data-dir', data])).rejects.toThrow(VerdictError);
    await expect(ciTokens(['create', '--project', 'a/b', '--protected', '--data-dir', data])).rejects.toThrow(/give --ref/);
    await expect(ciTokens(['create', '--project', 'a/b', '--ttl', '48h', '--data-dir', data])).rejects.toThrow(/at most 24h/);
    await expect(kubeconfig(['--ci-token', 'x', '--data-dir', data])).rejects.toThrow(/give --server/);
    // Usage errors (exit 2), not failures of the command.
    const usage = (e: unknown) => e instanceof VerdictError && e.code === 'VERDICT_USAGE';
    for (const bad of [
      ['create', '--project', 'a/b', '--ttl', '0s'],
      ['create', '--project', ' / '],
      ['create', '--project', 'shop app'],
    ]) {
      const e = await ciTokens([...bad, '--data-dir', data]).catch((x: unknown) => x);
      expect(usage(e), String(e)).toBe(true);
    }
    // JobTokens.create's rule, in the flags' names.
    for (const [bad, message] of [
      [['create'], "give --project, the path of the job's project as ci_access names it (group/project)"],
      [['create', '--project', ' / '], "give --project, the path of the job's project as ci_access names it (group/project)"],
      [
        ['create', '--project', 'shop app'],
        '--project "shop app" is not a project path; give it as ci_access names it (group/subgroup/project, or a numeric id)',
      ],
      // GitLab's path and environment name rules: a path cannot climb (..) or start a part with '-' or '.'.
      [
        ['create', '--project', 'a/../b'],
        `--project "a/../b" is not a GitLab project path: each part may hold only letters, digits, '_', '-' and '.', must start with a letter, digit or '_', and must not end in .git or .atom (".." does not)`,
      ],
      [
        ['create', '--project', 'shop/../platform/x'],
        `--project "shop/../platform/x" is not a GitLab project path: each part may hold only letters, digits, '_', '-' and '.', must start with a letter, digit or '_', and must not end in .git or .atom (".." does not)`,
      ],
      [
        ['create', '--project', 'a/b', '--environment', 'prod:eu'],
        `--environment "prod:eu" is not a GitLab environment name: it may hold only letters, digits, spaces and '-', '_', '/', '$', '{', '}', '.', but must not start or end with '/'`,
      ],
      [
        ['create', '--project', 'a/b', '--environment', 'review/'],
        `--environment "review/" is not a GitLab environment name: it may hold only letters, digits, spaces and '-', '_', '/', '$', '{', '}', '.', but must not start or end with '/'`,
      ],
      [['create', '--project', 'a/b', '--protected'], '--protected says --ref is a protected branch or tag; give --ref <branch or tag> too'],
      [
        ['create', '--project', 'a/b', '--ttl', '0s'],
        '--ttl must be at least 1m and at most 24h (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. --ttl 1h; got --ttl 0s',
      ],
      // Bare digits would be milliseconds (parseDuration's rule for config files): 3600 meant an hour, not 3.6 s.
      [['create', '--project', 'a/b', '--ttl', '3600'], '--ttl 3600 has no unit; give one, e.g. --ttl 3600s (seconds) or --ttl 1h'],
      [['create', '--project', 'a/b', '--ttl', '90'], '--ttl 90 has no unit; give one, e.g. --ttl 90s (seconds) or --ttl 1h'],
      [
        ['create', '--project', 'a/b', '--ttl', '500ms'],
        '--ttl must be at least 1m and at most 24h (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. --ttl 1h; got --ttl 500ms',
      ],
      [
        ['create', '--project', 'a/b', '--ttl', '59s'],
        '--ttl must be at least 1m and at most 24h (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. --ttl 1h; got --ttl 59s',
      ],
      [
        ['create', '--project', 'a/b', '--ttl', '48h'],
        '--ttl must be at least 1m and at most 24h (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. --ttl 1h; got --ttl 48h',
      ],
      // As typed, not as a number of seconds.
      [
        ['create', '--project', 'a/b', '--ttl', '1500m'],
        '--ttl must be at least 1m and at most 24h (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. --ttl 1h; got --ttl 1500m',
      ],
    ] as const) {
      const e = await ciTokens([...bad, '--data-dir', data]).catch((x: unknown) => x);
      expect(usage(e), String(e)).toBe(true);
      expect((e as Error).message).toBe(`verdict ci-tokens create: ${message}`);
    }
    // A mistyped --data-dir is refused, not made into an empty database that knows no token and no agent.
    const wrong = join(dir, 'no-such-dir');
    for (const call of [
      () => ciTokens(['create', '--project', 'a/b', '--data-dir', wrong]),
      () => ciTokens(['list', '--data-dir', wrong]),
      () => kubeconfig(['--ci-token', 'x', '--server', 'https://x', '--data-dir', wrong]),
    ]) {
      const e = await call().catch((x: unknown) => x);
      expect(usage(e), String(e)).toBe(true);
      expect(String(e)).toContain(
        `there is no Verdict server database at ${join(wrong, 'server.db')}; give --data-dir the server's data_dir, or --config its server.yaml`,
      );
    }
    expect(existsSync(wrong)).toBe(false);
    const other = (await stdoutOf(() => ciTokens(['create', '--project', 'shop/web', '--environment', 'staging', '--data-dir', data]))).out.trim();
    // Job ids are drawn at random (job-tokens.ts).
    expect(await outputsOf(() => kubeconfig(['--ci-token', other, '--server', 'https://x', '--data-dir', data]))).toEqual({
      code: 1,
      out: '',
      err: expect.stringMatching(
        /^verdict kubeconfig: no agent allows project shop\/web \(job \d+\): agent "prod": ci_access\.groups\[0\] \(shop\) allows only environments production, not "staging"\n$/,
      ),
    });
    // An unknown token, and a server config that does not load: plain text on stderr too, nothing on stdout.
    expect(await outputsOf(() => kubeconfig(['--ci-token', 'vdt_ci_nope', '--server', 'https://x', '--data-dir', data]))).toEqual({
      code: 1,
      out: '',
      err: expect.stringMatching(/^verdict kubeconfig: the CI job token is unknown; .*\n$/),
    });
    const badConfig = join(dir, 'bad-server.yaml');
    writeFileSync(badConfig, 'data_dir: [\n');
    // A --config that does not load (or is missing) is a usage error (exit 2), as for the other commands on the
    // server's database (server-db.ts), with nothing on stdout.
    for (const file of [badConfig, join(dir, 'missing.yaml')]) {
      const r = await outputsOf(() => kubeconfig(['--ci-token', 'x', '--config', file])).catch((x: unknown) => x);
      expect(usage(r), String(r)).toBe(true);
      expect((r as Error).message).toMatch(
        new RegExp(`^verdict kubeconfig: --config: .*${basename(file).replace('.', '\\.')}.*; give --config the server's server\\.yaml$`),
      );
    }
  });

  it('with several agents allowing the job, the kubeconfig has no current context and stderr says how to choose one', async () => {
    writeFileSync(join(project, '.gitlab/agents/prod/config.yaml'), 'ci_access:\n  projects:\n    - id: two/app\n');
    mkdirSync(join(project, '.gitlab/agents/stage'), { recursive: true });
    writeFileSync(join(project, '.gitlab/agents/stage/config.yaml'), 'ci_access:\n  projects:\n    - id: two/app\n');
    git('add', '-A');
    git('commit', '-q', '-m', 'two agents');
    const db2 = openServerDb(data);
    new AgentRegistry(db2).register('stage', project);
    db2.close();
    const token = (await stdoutOf(() => ciTokens(['create', '--project', 'two/app', '--data-dir', data]))).out.trim();
    let err = '';
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    const k = await stdoutOf(() => kubeconfig(['--ci-token', token, '--server', 'https://x', '--data-dir', data])).finally(() => spy.mockRestore());
    const cfg = parse(k.out) as { contexts: { name: string }[]; 'current-context'?: string };
    // Without projects_dir the configuration project is named by its directory.
    expect(cfg.contexts.map((c) => c.name)).toEqual(['infra:prod', 'infra:stage']);
    expect(cfg['current-context']).toBeUndefined();
    expect(err).toBe(
      'verdict kubeconfig: 2 agents allow this job, so the kubeconfig has no current context; choose one with `kubectl config use-context <name>`: infra:prod, infra:stage\n',
    );
  });

  it('warns on stderr when the proxy URL is plain HTTP: kubectl sends no bearer token over it', async () => {
    const token = (await stdoutOf(() => ciTokens(['create', '--project', 'two/app', '--data-dir', data]))).out.trim();
    const stderrOf = async (server: string) => {
      let err = '';
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
        err += String(chunk);
        return true;
      });
      await stdoutOf(() => kubeconfig(['--ci-token', token, '--server', server, '--data-dir', data])).finally(() => spy.mockRestore());
      return err.split('\n').filter((l) => l.includes('plain HTTP'));
    };
    expect(await stderrOf('http://127.0.0.1:8154')).toEqual([
      expect.stringMatching(/^verdict kubeconfig: the server http:\/\/127\.0\.0\.1:8154 is plain HTTP, and kubectl sends no bearer token over it/),
    ]);
    expect(await stderrOf('https://kas.example.com/k8s-proxy')).toEqual([]);
  });

  it('the proxy URL from the server config: url, else listen (0.0.0.0 as 127.0.0.1) and the prefix', () => {
    const base = { data_dir: 'd', http_addr: 'h:1', grpc_addr: 'g:1', config_poll_interval: 1 };
    expect(proxyUrl(base)).toBeUndefined();
    expect(proxyUrl({ ...base, kubernetes_api: { listen: '10.0.0.1:8154', url_path_prefix: '/', url: undefined } })).toBe('http://10.0.0.1:8154');
    expect(proxyUrl({ ...base, kubernetes_api: { listen: ':8154', url_path_prefix: '/', url: 'https://kas.example/k8s-proxy' } })).toBe(
      'https://kas.example/k8s-proxy',
    );
  });
});
