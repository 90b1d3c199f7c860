import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { silent } from '../../../test/falco/helpers.js';
import { parseFalcoJson } from '../../modules/falco/parse.js';
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
    const poster = startFalcoPoster({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      intervalMs: 1,
      signal: abort.signal,
      log: silent,
      gzip: true,
    });
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
      'Terminal shell in container',
      'Write below etc',
      'Detect outbound connections to common miner pool ports',
      'Read sensitive file untrusted',
      'Attach/Exec Pod',
      'Drop and execute new binary in container',
      'Contact K8S API Server From Container',
    ]);
    // Falco's nanosecond evt.time survives as an exact integer string.
    expect(events[0]!.output_fields['evt.time']).toMatch(/^\d{19}$/);
    expect(events[SCENARIO_LENGTH]!.rule).toBe(events[0]!.rule);
  });

  it('waits quietly for an agent that is still starting, and warns when one goes away', async () => {
    const lines: { level: string; msg: string }[] = [];
    const log = {
      debug: (_o: object, msg: string) => lines.push({ level: 'debug', msg }),
      info: (_o: object, msg: string) => lines.push({ level: 'info', msg }),
      warn: (_o: object, msg: string) => lines.push({ level: 'warn', msg }),
    } as unknown as typeof silent;
    // A port nothing listens on yet: taken, then given back.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const abort = new AbortController();
    let taken = 0;
    const poster = startFalcoPoster({ url: `http://127.0.0.1:${port}/`, intervalMs: 5, signal: abort.signal, log });
    await new Promise((r) => setTimeout(r, 100));
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        taken++;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    while (taken < 2) await new Promise((r) => setTimeout(r, 5));
    expect(lines.filter((l) => l.level !== 'debug')).toEqual([]);
    expect(lines.some((l) => l.msg.includes('does not take Falco events yet'))).toBe(true);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    while (!lines.some((l) => l.level === 'warn')) await new Promise((r) => setTimeout(r, 5));
    abort.abort();
    await poster;
    expect(lines.find((l) => l.level === 'warn')!.msg).toMatch(/Posting a Falco event failed; the built-in Falco keeps trying/);
  });

  it('resolves with failures counted when nothing listens', async () => {
    const stats = await startFalcoPoster({ url: 'http://127.0.0.1:1/', intervalMs: 1, signal: new AbortController().signal, log: silent, repeat: false });
    expect(stats).toEqual({ sent: 0, failed: SCENARIO_LENGTH });
  });
});
