import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, until } from '../helpers/processes.js';
import { cilium, harness, SECRET, type Harness } from './helpers.js';

// The receiver example in docs/ works against real deliveries.

describe('docs/examples/webhook-receiver.mjs', () => {
  const proc = spawn(process.execPath, [join(REPO, 'docs/examples/webhook-receiver.mjs')], {
    env: { ...process.env, WEBHOOK_SECRET: SECRET, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  let h: Harness | undefined;
  afterAll(async () => {
    proc.kill();
    await h?.close();
  });

  it('accepts a signed delivery once and refuses a forged one', async () => {
    const url = await until(() => /listening on (\S+)/.exec(out)?.[1], 10_000, 'the example to listen');
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'hook', type: 'generic', url: `${url}verdict`, secrets: [SECRET], retry_schedule: ['50ms'] }],
    });
    const a = h.ingest(cilium());
    await until(() => (out.includes('alert.triggered') ? true : undefined), 10_000, 'the example to print the alert');
    expect(out).toContain(`[high] ${a.title}`);
    const [d] = h.svc.outbox.list({ integrationId: h.svc.registry.byName('hook')!.id, limit: 1 });
    await until(() => (h!.svc.outbox.get(d!.id)!.state === 'delivered' ? true : undefined), 5000, 'delivered');
    // A redelivery (same webhook-id) is acknowledged but not handled twice.
    h.svc.outbox.redeliver(d!.id);
    await until(() => (h!.svc.outbox.get(d!.id)!.state === 'delivered' ? true : undefined), 5000, 'delivered again');
    expect(out.match(/alert\.triggered/g)).toHaveLength(1);
    const forged = await fetch(`${url}verdict`, {
      method: 'POST',
      headers: { 'webhook-id': 'msg_x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' },
      body: '{}',
    });
    expect(forged.status).toBe(401);
  });
});
