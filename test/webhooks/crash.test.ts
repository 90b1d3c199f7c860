import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AlertPublisherClient, type AlertAck } from '../../src/gen/verdict/agent.js';
import { ConfigProject, freePort, killAll, spawnVerdict, tempDir, verdictSync, type VerdictProcess } from '../helpers/processes.js';
import { cilium, SECRET } from './helpers.js';
import { Receiver } from './receiver.js';
import { verifyStandardWebhook } from './standard-webhooks.js';

// The outbox survives kill -9: a server process stores an alert (acknowledged
// to the agent) but cannot deliver it yet, is killed, and delivers it after a
// restart. The guarantee is at-least-once: a try cut off by the kill is made
// again, under the same webhook-id, which is what receivers de-duplicate on.

/** Sends one alert over the real agent API, like an agent would, and waits for the ack. */
async function publish(grpcAddr: string, token: string, id: string, payload: unknown): Promise<AlertAck> {
  const client = new AlertPublisherClient(grpcAddr, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  try {
    return await new Promise<AlertAck>((resolve, reject) => {
      const call = client.publishAlerts(md);
      call.on('data', (ack: AlertAck) => {
        resolve(ack);
        call.end();
      });
      call.on('error', reject);
      call.write({ batch_id: 1, alerts: [{ id, payload: Buffer.from(JSON.stringify(payload)) }] });
    });
  } finally {
    client.close();
  }
}

describe('webhook outbox across kill -9', () => {
  const dir = tempDir('verdict-wh-crash-');
  const receiver = new Receiver();
  afterAll(async () => {
    await killAll();
    await receiver.close();
  });

  it('delivers an alert stored before the kill, with the same webhook-id, after the restart', async () => {
    const data = join(dir, 'server');
    const project = new ConfigProject(join(dir, 'project'));
    project.commit({ 'README.md': 'agents\n' });
    const token = verdictSync(['agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', data]).trim();
    const hookPort = await freePort();
    const [http, grpcPort] = [await freePort(), await freePort()];
    const config = join(dir, 'server.yaml');
    writeFileSync(
      config,
      `data_dir: ${data}
http_addr: 127.0.0.1:${http}
grpc_addr: 127.0.0.1:${grpcPort}
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: hook
      type: generic
      url: http://127.0.0.1:${hookPort}/hook
      secrets: [env:VERDICT_CRASH_SECRET]
      timeout: 30s
      retry_schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]
`,
    );
    const start = async (): Promise<VerdictProcess> => {
      const p = spawnVerdict(['server', '--config', config], 'server', { VERDICT_CRASH_SECRET: SECRET });
      await p.waitForLog((l) => l.msg === 'Verdict server started');
      return p;
    };

    // 1. Nothing listens at the endpoint: the alert is stored and acknowledged, every try fails.
    let server = await start();
    const payload = cilium();
    const ack = await publish(`127.0.0.1:${grpcPort}`, token, 'crash-event-1', payload);
    expect(ack).toMatchObject({ stored: 1 });
    await server.waitForLog((l) => l.msg === 'Webhook delivery failed; it will be tried again' && String(l.error).includes('ECONNREFUSED'), 10_000);
    server.proc.kill('SIGKILL');
    await server.exited;

    // 2. The endpoint is up but hangs: the try is in flight when the server is killed again.
    receiver.answer = () => 'hang';
    await receiver.listen(hookPort);
    server = await start();
    await receiver.waitForCount(1, 15_000);
    server.proc.kill('SIGKILL');
    await server.exited;

    // 3. The endpoint answers: the delivery completes after the second restart.
    receiver.answer = () => ({ status: 200 });
    server = await start();
    await receiver.waitForCount(2, 15_000);
    // Nothing more arrives once it succeeded.
    await new Promise((ok) => setTimeout(ok, 1000));
    expect(receiver.requests).toHaveLength(2);
    const [cut, done] = receiver.requests;
    expect(done!.headers['webhook-id']).toBe(cut!.headers['webhook-id']);
    expect(done!.body).toBe(cut!.body);
    await verifyStandardWebhook(SECRET, done!.headers, done!.body);
    const doc = JSON.parse(done!.body) as { type: string; data: { alerts: { fingerprint: string; agent: string }[] } };
    expect(doc.type).toBe('alert.triggered');
    expect(doc.data.alerts[0]).toMatchObject({ fingerprint: payload.fingerprint, agent: 'edge' });
    await server.kill();
  });
});
