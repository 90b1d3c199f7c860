import { afterAll, describe, expect, it } from 'vitest';
import { killAll, spawnDemo, spawnVerdict, tempDir } from '../helpers/processes.js';
import { SECRET } from './helpers.js';
import { Receiver } from './receiver.js';
import { verifyStandardWebhook } from './standard-webhooks.js';

// `verdict demo --webhook <url> --webhook-secret <whsec_...>`: one command, and
// signed deliveries arrive at a local receiver.

describe('verdict demo --webhook', () => {
  const receiver = new Receiver();
  afterAll(async () => {
    await killAll();
    await receiver.close();
  });

  it('delivers the demo alerts as signed generic webhooks', async () => {
    await receiver.listen();
    const demo = await spawnDemo(tempDir('verdict-wh-demo-'), ['--webhook', receiver.url('/verdict'), '--webhook-secret', SECRET]);
    await demo.waitForStdout(/webhook: +http:\/\/127\.0\.0\.1:\d+\/verdict \(signed/, 30_000);
    await receiver.waitForCount(1, 30_000);
    const req = receiver.requests[0]!;
    expect(req.path).toBe('/verdict');
    await verifyStandardWebhook(SECRET, req.headers, req.body);
    expect(JSON.parse(req.body)).toMatchObject({ type: 'alert.triggered', data: { integration: 'demo-webhook' } });
    await demo.kill();
  });

  it('says which flag is wrong', async () => {
    const demo = spawnVerdict(
      ['demo', '--data-dir', tempDir('verdict-wh-demo-'), '--webhook', 'http://127.0.0.1:9/x', '--webhook-secret', 'secret'],
      'demo-bad',
    );
    expect(await demo.exited).not.toBe(0);
    expect(demo.stderr).toMatch(/--webhook-secret: must be "whsec_" followed by base64/);
  });
});
