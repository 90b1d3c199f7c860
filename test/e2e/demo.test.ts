import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, killAll, spawnVerdict, tempDir, until } from '../helpers/processes.js';

// `npm start` is `verdict demo`: the main job on its embedded default. It must
// work on other ports and data dirs, and show both sources end to end.

describe('verdict demo', () => {
  afterAll(killAll);

  it('runs server, agent and both built-in sources, and the feed shows their alerts', async () => {
    const dir = tempDir('verdict-demo-');
    const [http, grpc, falco] = [await freePort(), await freePort(), await freePort()];
    const demo = spawnVerdict(['demo', '--data-dir', dir, '--http-addr', `127.0.0.1:${http}`, '--grpc-addr', `127.0.0.1:${grpc}`,
      '--falco-addr', `127.0.0.1:${falco}`, '--interval', '200'], 'demo');
    await demo.waitForStdout(/Verdict demo is running/, 30_000);
    const token = readFileSync(join(dir, 'feed-token'), 'utf8').trim();
    expect(demo.stdout).toContain(token);
    expect(demo.stdout).toContain(`http://127.0.0.1:${http}/`);

    type A = { source: string; title: string; policies: { name: string }[]; rule: string };
    const alerts = await until(async () => {
      const res = await fetch(`http://127.0.0.1:${http}/api/v1/alerts`, { headers: { authorization: `Bearer ${token}` } });
      const a = ((await res.json()) as { alerts: A[] }).alerts;
      const complete = a.some((x) => x.policies.some((p) => p.name === 'deny-cloud-metadata'))
        && a.some((x) => x.rule === 'Terminal shell in container')
        && a.some((x) => x.title.includes('<script>'));
      return complete ? a : undefined;
    }, 45_000, 'cilium and falco alerts from the demo');

    const policies = new Set(alerts.flatMap((a) => a.policies.map((p) => p.name)));
    expect(policies).toContain('deny-cloud-metadata');
    expect(alerts.some((a) => a.source === 'falco' && a.rule === 'Terminal shell in container')).toBe(true);
    // Allowed flows and the drop no policy explains (frontend -> cart:8080) raise nothing.
    expect(alerts.some((a) => a.title.includes('cart:8080'))).toBe(false);
    // Hostile pod names arrive as plain data.
    expect(alerts.some((a) => a.title.includes('<script>alert(1)</script>'))).toBe(true);
    await demo.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
  });
});
