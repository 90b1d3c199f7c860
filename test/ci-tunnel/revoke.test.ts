import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobTokens } from '../../src/modules/ci-access/job-tokens.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { until, verdictRun } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';
import { watchConfigMaps } from './watch.js';

// A job token revoked or expired while its requests are open: a watch held
// by the real kubectl through the real server and agent to a real
// kube-apiserver ends within about a second, with a Status saying why.
// Revoked by `verdict ci-tokens revoke` (another process on the server's
// SQLite file, as an operator does it); needs `npm run build`.

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/ops\n      default_namespace: shop\n', agentKubeconfig: kube.kubeconfig });
  await kube.kubectl(['create', 'namespace', 'shop']);
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

const jobId = (token: string) => {
  const a = new JobTokens(env.server.db).authenticate(token);
  if ('error' in a) throw new Error(a.error);
  return a.job.id;
};

let made = 0;

/** A watch that has listed and is in flight, with the token it runs on; issuedAt: a token issued in the past (one about to expire). */
async function openWatch(o: { ttlMs?: number; issuedAt?: number } = {}) {
  const token = env.jobToken({ project: 'shop/ops', ...(o.ttlMs ? { ttlMs: o.ttlMs } : {}) }, o.issuedAt);
  const watch = watchConfigMaps(kube, await env.kubeconfig(token));
  await until(
    () => watch.out.includes('kube-root-ca.crt') || undefined,
    15_000,
    () => `the watch to list (${watch.err})`,
  );
  // kubectl lists, prints, then opens the watch: in flight once it prints an event the list could not have had.
  const name = `in-flight-${++made}`;
  await kube.kubectl(['create', 'configmap', name, '-n', 'shop']);
  await until(
    () => watch.out.includes(name) || undefined,
    15_000,
    () => `the watch to see ${name} (${watch.err})`,
  );
  expect(watch.exitCode, watch.err).toBe(null);
  return { token, watch };
}

describe('CI tunnel: open requests of a revoked or expired job token', () => {
  it('verdict ci-tokens revoke ends an open watch; it says the token was revoked', async () => {
    const { token, watch } = await openWatch();
    try {
      const revoked = verdictRun(['ci-tokens', 'revoke', String(jobId(token)), '--data-dir', join(env.dir, 'server')]);
      expect(revoked.status, revoked.stderr).toBe(0);
      // The outcome, not its speed (a second's poll, under whatever load the machine has).
      const code = await Promise.race([watch.closed, new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
      expect(code, `${watch.out}${watch.err}`).not.toBe('still running');
      expect(`${watch.out}${watch.err}`).toMatch(/Verdict server: the CI job token of job \d+ was revoked at/);
      // Nothing more arrives for it.
      await kube.kubectl(['create', 'configmap', 'after-revoke', '-n', 'shop']);
      await new Promise((r) => setTimeout(r, 500));
      expect(watch.out).not.toContain('after-revoke');
      expect(env.logs.some((l) => l.msg === 'CI tunnel: job token revoked or expired: ended its open requests')).toBe(true);
    } finally {
      watch.kill();
    }
    // The agent is not left holding the request: a new job is served at once.
    const other = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    expect((await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: other })).code).toBe(0);
  });

  it('a token that expires ends its open watch, saying it expired', async () => {
    // The shortest lifetime (1m), issued 50 s ago.
    const { watch } = await openWatch({ ttlMs: 60_000, issuedAt: Date.now() - 50_000 });
    try {
      const code = await Promise.race([watch.closed, new Promise((r) => setTimeout(() => r('still running'), 40_000))]);
      expect(code, `${watch.out}${watch.err}`).not.toBe('still running');
      expect(`${watch.out}${watch.err}`).toMatch(/Verdict server: the CI job token of job \d+ expired at/);
    } finally {
      watch.kill();
    }
  });
});

describe('CI tunnel: a watch that kubectl ends itself', () => {
  it('is not logged as the API server breaking off a response', async () => {
    const { watch } = await openWatch();
    watch.kill();
    await watch.closed;
    // The server tells the agent, which drops the API server's response: give it the time.
    await new Promise((r) => setTimeout(r, 1500));
    expect(env.logs.filter((l) => l.msg === 'CI tunnel: the API server broke off a response')).toEqual([]);
  });
});

describe('CI tunnel: a watch whose tunnel fails', () => {
  it('is logged by the agent as the call failing, not as the client ending the request', async () => {
    const { watch } = await openWatch();
    try {
      env.cutAgent();
      await until(
        () => env.logs.some((l) => l.msg.startsWith('CI tunnel: the call to the server failed mid-response')) || undefined,
        20_000,
        'the agent to log the failed call',
      );
    } finally {
      watch.kill();
      env.restoreAgent();
    }
  });
});
