import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { silent } from '../../../test/falco/helpers.js';
import { parseFalcoJson } from '../../agent/sources/falco/parse.js';
import { startFalcoPoster } from './falco-poster.js';
import { SCENARIO_LENGTH } from './scenario.js';

describe('startFalcoPoster', () => {
  it('posts the scenario as Falco does, one event per request, until aborted', async () => {
    const bodies: string[] = [];
    const headers: string[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        headers.push(`${req.method} ${req.headers['content-type']} ${req.headers['content-encoding'] ?? ''}`);
        bodies.push((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString());
        // One refusal in between: the poster counts it and keeps going.
        res.statusCode = bodies.length === 2 ? 500 : 200;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const abort = new AbortController();
    const poster = startFalcoPoster({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, intervalMs: 1, signal: abort.signal, log: silent, gzip: true });
    // The poster is sequential: once the server holds body n, the answers to
    // bodies 1..n-1 have reached it; the last one may still be in flight.
    while (bodies.length < SCENARIO_LENGTH + 3) await new Promise((r) => setTimeout(r, 10));
    abort.abort();
    const stats = await poster;
    server.close();
    expect(stats.failed).toBe(1);
    expect(stats.sent).toBeGreaterThanOrEqual(SCENARIO_LENGTH + 1);
    expect(headers[0]).toBe('POST application/json gzip');
    const events = bodies.map(parseFalcoJson);
    expect(events.slice(0, SCENARIO_LENGTH).map((e) => e.rule)).toEqual([
      'Terminal shell in container', 'Write below etc', 'Detect outbound connections to common miner pool ports', 'Read sensitive file untrusted',
      'Attach/Exec Pod', 'Drop and execute new binary in container', 'Contact K8S API Server From Container',
    ]);
    // Falco's nanosecond evt.time survives as an exact integer string.
    expect(events[0]!.output_fields['evt.time']).toMatch(/^\d{19}$/);
    expect(events[SCENARIO_LENGTH]!.rule).toBe(events[0]!.rule);
  });

  it('resolves with failures counted when nothing listens', async () => {
    const stats = await startFalcoPoster({ url: 'http://127.0.0.1:1/', intervalMs: 1, signal: new AbortController().signal, log: silent, repeat: false });
    expect(stats).toEqual({ sent: 0, failed: SCENARIO_LENGTH });
  });
});
