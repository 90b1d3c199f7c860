import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { falcoConfig, fixtureLines, silent, store, tmp, type Store } from '../../../test/falco/helpers.js';
import { makeCerts } from '../../../test/helpers/certs.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { startFalcoHttpInput, type FalcoHttpInput } from './http.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(
  port: number,
  o: { method?: string; path?: string; body?: Buffer | string; headers?: Record<string, string | number>; agent?: Agent } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: o.method ?? 'POST', path: o.path ?? '/', headers: o.headers, agent: o.agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

function setup(yaml = '', maxBodyBytes = 1024 * 1024) {
  const s = store();
  const cfg = falcoConfig(`falco:\n  http: {}\n${yaml}`);
  const builder = new FalcoAlertBuilder(cfg, loadFalcoDefaults());
  const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: cfg.dedup_window, builder, log: silent });
  return {
    s,
    builder,
    sink,
    start: (tls?: { cert_file: string; key_file: string; client_ca_file?: string }) =>
      startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: maxBodyBytes, tls, builder, sink, log: silent }),
  };
}

describe('Falco HTTP input', () => {
  let s: Store;
  let input: FalcoHttpInput;
  let port: number;
  beforeAll(async () => {
    const x = setup('  dedup_window: 0s\n', 4096);
    s = x.s;
    input = await x.start();
    port = input.port;
  });
  afterAll(async () => {
    await input.close();
  });

  it('takes every fixture event on / and /falco, as Falco and Falcosidekick post them', async () => {
    const before = s.outbox.size;
    const lines = fixtureLines();
    const res = await Promise.all(lines.map((l, i) => send(port, { path: i % 2 ? '/falco' : '/', body: l, headers: { 'content-type': 'application/json' } })));
    expect(res.map((r) => r.status)).toEqual(lines.map(() => 200));
    expect(JSON.parse(res[0]!.body)).toEqual({ status: 'queued' });
    expect(s.outbox.size - before).toBe(7);
    // The alerts, in the order posted (no window: one alert per event).
    const alerts = s.outbox
      .read(0, 1e6)
      .slice(before)
      .map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    const byRule = (rule: string) => alerts.filter((a) => a.rule === rule);
    expect(alerts.map((a) => a.rule).sort()).toEqual([
      'Falco internal: syscall event drop',
      'Falco internal: syscall event drop',
      'Non sudo setuid',
      'Terminal shell in container',
      'Test rule',
      'Write below binary dir',
      'open_from_cat',
    ]);
    const write = byRule('Write below binary dir')[0]!;
    expect(write).toMatchObject({
      source: 'falco',
      severity: 'high',
      first_seen: '2019-05-17T15:31:56.746609046Z',
      last_seen: '2019-05-17T15:31:56.746609046Z',
      count: 1,
      namespace: '',
      title: 'Write below binary dir (localhost)',
    });
    expect(write.labels).toMatchObject({ priority: 'Error', source: 'syscall', hostname: 'localhost', user: 'root' });
    // evt.time exceeds 2^53: kept exact, in the alert and in its raw sample.
    expect(write.falco!.output_fields['evt.time']).toBe('1507591916746609046');
    expect((write.samples[0] as { output_fields: Record<string, unknown> }).output_fields['evt.time']).toBe('1507591916746609046');
    expect(write.description).toBe(
      '16:31:56.746609046: Error File below a known binary directory opened for writing (user=root command=touch /bin/hack file=/bin/hack)',
    );
    const test = byRule('Test rule')[0]!;
    expect(test).toMatchObject({ severity: 'info', falco: { source: 'syscall', hostname: 'test-host', priority: 'Debug', tags: ['test', 'example'] } });
    expect(test.falco!.output_fields['proc.tty']).toBe(1234);
    // Strings in one event, numbers in the other: one fingerprint, source internal.
    const drops = byRule('Falco internal: syscall event drop');
    expect(drops.map((a) => a.falco!.source)).toEqual(['internal', 'internal']);
    expect(drops[0]!.fingerprint).toBe(drops[1]!.fingerprint);
    expect(byRule('open_from_cat')[0]).toMatchObject({
      severity: 'medium',
      falco: { tags: ['filesystem', 'process', 'testing'], hostname: 'test-falco-hostname' },
    });
    const shell = byRule('Terminal shell in container')[0]!;
    expect(shell).toMatchObject({
      severity: 'low',
      title: 'Terminal shell in container (falco-74htl)',
      labels: { pod: 'falco-74htl', container: 'a98c2aa8e670', process: 'bash', user: 'root' },
    });
    expect(shell.falco!.output_fields['proc.pname']).toBeNull();
    expect(shell.falco!.tags).toEqual([]);
    expect(byRule('Non sudo setuid')[0]).toMatchObject({ severity: 'low', labels: { pod: 'falco-event-generator-6fd89678f9-cdkvz', user: 'bin' } });
  });

  it('answers what libcurl sends for Falco: TE: gzip with compress_uploads, Expect: 100-continue, text/plain without json_output', async () => {
    const before = s.outbox.size;
    // compress_uploads sets CURLOPT_TRANSFER_ENCODING: a TE header, the body itself is not compressed.
    const te = await send(port, {
      body: fixtureLines()[0]!,
      headers: { 'content-type': 'application/json', 'user-agent': 'falcosecurity/falco', te: 'gzip', connection: 'TE' },
    });
    expect(te.status).toBe(200);
    expect(s.outbox.size - before).toBe(1);
    const raw = await new Promise<string>((resolve, reject) => {
      const body = fixtureLines()[4]!;
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(
          `POST /falco HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`,
        );
      });
      let got = '';
      let sent = false;
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        got += d;
        if (!sent && got.startsWith('HTTP/1.1 100')) {
          sent = true;
          sock.write(body);
        }
        if (/\{"status":"queued"\}/.test(got)) {
          sock.destroy();
          resolve(got);
        }
      });
      sock.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 100 Continue[\s\S]*HTTP\/1\.1 200/);
    expect(s.outbox.size - before).toBe(2);
    // json_output: false sends the text line: 400 saying which Falco setting to change.
    const text = await send(port, {
      body: '16:31:56.746609046: Error File below a known binary directory opened for writing',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(400);
    expect(JSON.parse(text.body).error).toMatch(/json_output: true/);
  });

  it('takes gzip bodies (Content-Encoding: gzip)', async () => {
    const before = s.outbox.size;
    const r = await send(port, { body: gzipSync(toFalcoJson(scenarioEvent(2))), headers: { 'content-encoding': 'gzip' } });
    expect(r.status).toBe(200);
    expect(s.outbox.size - before).toBe(1);
    const bad = await send(port, { body: 'not gzip', headers: { 'content-encoding': 'gzip' } });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatch(/not valid gzip data .*; send Content-Encoding: gzip only with a body compressed whole/);
  });

  it('answers 400 with the reason for invalid events', async () => {
    const bad = await send(port, { body: '{"rule": "x", "output": "y"' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatch(/^invalid JSON/);
    const missing = await send(port, { body: '{"rule":"x","output":"y"}' });
    expect(missing.status).toBe(400);
    expect(JSON.parse(missing.body).error).toMatch(/missing "priority", "time"/);
  });

  it('answers 413 for oversized bodies, declared, chunked or inflated', async () => {
    const big = JSON.stringify({ rule: 'r', priority: 'Notice', time: '2026-01-01T00:00:00Z', output: 'x'.repeat(5000) });
    expect((await send(port, { body: big })).status).toBe(413);
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('x'.repeat(1000));
      req.end();
    });
    expect(chunked).toBe(413);
    const bomb = gzipSync(Buffer.alloc(1024 * 1024, 32));
    expect(bomb.length).toBeLessThan(4096);
    expect((await send(port, { body: bomb, headers: { 'content-encoding': 'gzip' } })).status).toBe(413);
  });

  it('answers 405 for other methods and /healthz', async () => {
    const get = await send(port, { method: 'GET' });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect((await send(port, { method: 'PUT', path: '/falco', body: '{}' })).status).toBe(405);
    expect((await send(port, { method: 'GET', path: '/other' })).status).toBe(405);
    const h = await send(port, { method: 'GET', path: '/healthz' });
    expect(h.status).toBe(200);
    expect(JSON.parse(h.body)).toEqual({ status: 'ok' });
  });

  it('takes events posted to any path, as Falco users set http_output.url (a trailing slash, /webhook, a query)', async () => {
    const before = s.outbox.size;
    const paths = ['/falco/', '/webhook', '/api/v1/events?source=falco', '//falco'];
    const res = await Promise.all(
      paths.map((path, i) => send(port, { path, body: toFalcoJson(scenarioEvent(20 + i)), headers: { 'content-type': 'application/json' } })),
    );
    expect(res.map((r) => [r.status, r.body])).toEqual(paths.map(() => [200, '{"status":"queued"}']));
    expect(s.outbox.size - before).toBe(paths.length);
    // Not an event is refused (and logged, counted) on any path as on /.
    expect((await send(port, { path: '/webhook', body: '{}' })).status).toBe(400);
  });

  it('acknowledges a repeated Falcosidekick uuid without counting it again', async () => {
    const before = s.outbox.size;
    const ev = { ...scenarioEvent(3), uuid: 'f3b8c0de-0000-4000-8000-000000000001' };
    const a = await send(port, { body: toFalcoJson(ev) });
    const b = await send(port, { body: toFalcoJson(ev) });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(JSON.parse(b.body)).toEqual({ status: 'duplicate' });
    expect(s.outbox.size - before).toBe(1);
  });

  it('answers many concurrent keep-alive posts, every one stored', async () => {
    const before = s.outbox.size;
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const res = await Promise.all(Array.from({ length: 400 }, (_, i) => send(port, { body: toFalcoJson(scenarioEvent(i)), agent })));
    agent.destroy();
    expect(res.every((r) => r.status === 200)).toBe(true);
    expect(s.outbox.size - before).toBe(400);
  });

  it('survives a client that disconnects mid-body', async () => {
    await new Promise<void>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"rule":');
        sock.destroy();
        resolve();
      });
    });
    expect((await send(port, { method: 'GET', path: '/healthz' })).status).toBe(200);
  });
});

describe('Falco HTTP input with a dedup window', () => {
  it('folds repeats into one alert with a count', async () => {
    const x = setup('  dedup_window: 1m\n');
    const input = await x.start();
    try {
      // Arriving out of order, as events of several Falco instances do: times span all of them, and the text
      // stays the first to arrive (the fold rule moves it only when the severity rises).
      const at = (t: string, output: string) => toFalcoJson({ ...scenarioEvent(0), time: t, output });
      await send(input.port, { body: at('2026-03-01T10:00:02.000000002Z', 'second') });
      await send(input.port, { body: at('2026-03-01T10:00:03.000000003Z', 'third') });
      await send(input.port, { body: at('2026-03-01T10:00:01.000000001Z', 'first') });
      await send(input.port, { body: toFalcoJson({ ...scenarioEvent(1), time: '2026-03-01T10:00:04.000000004Z' }) });
      // Answered events are staged; the sink writes them (every 500 ms, here at once) before their groups can close.
      await x.sink.settle();
      const alerts = x.s.flushed();
      expect(alerts).toHaveLength(2);
      const shell = alerts.find((a) => a.rule === 'Terminal shell in container')!;
      expect(shell).toMatchObject({
        count: 3,
        first_seen: '2026-03-01T10:00:01.000000001Z',
        last_seen: '2026-03-01T10:00:03.000000003Z',
        description: 'second',
      });
      expect(shell.samples).toHaveLength(3);
      expect(alerts.find((a) => a.rule !== shell.rule)!.count).toBe(1);
    } finally {
      await input.close();
    }
  });
});

describe('Falco HTTP input, an event nested too deep', () => {
  it('answers 400 for it and keeps taking the events after it', async () => {
    const x = setup('  dedup_window: 1m\n');
    const input = await x.start();
    try {
      // 5,000 nested lists in one output field (10 kB): writing its alert would overflow the stack.
      const nested = `${'['.repeat(5000)}1${']'.repeat(5000)}`;
      const deep = toFalcoJson(scenarioEvent(0)).replace('"output_fields":{', `"output_fields":{"x":${nested},`);
      const refused = await send(input.port, { path: '/falco', body: deep, headers: { 'content-type': 'application/json' } });
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.body).error).toMatch(/nests arrays or objects more than 32 levels deep/);
      // As deep as the limit allows: taken.
      const atLimit = toFalcoJson(scenarioEvent(1)).replace('"output_fields":{', `"output_fields":{"x":${'['.repeat(30)}1${']'.repeat(30)},`);
      expect((await send(input.port, { body: atLimit })).status).toBe(200);
      expect((await send(input.port, { body: toFalcoJson(scenarioEvent(2)) })).status).toBe(200);
      await x.sink.settle();
      expect(
        x.s
          .flushed()
          .map((a) => a.rule)
          .sort(),
      ).toEqual([scenarioEvent(1).rule, scenarioEvent(2).rule].sort());
    } finally {
      await input.close();
    }
  });
});

describe('Falco HTTP input over TLS', () => {
  it('takes events over TLS and, with a client CA, only from clients with a certificate', async () => {
    const c = makeCerts(tmp('verdict-certs-'));
    const x = setup('  dedup_window: 0s\n');
    const input = await x.start({ cert_file: c.serverCert, key_file: c.serverKey, client_ca_file: c.ca });
    const post = (withCert: boolean) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: input.port,
            method: 'POST',
            path: '/',
            ca: readFileSync(c.ca),
            ...(withCert ? { cert: readFileSync(c.clientCert), key: readFileSync(c.clientKey) } : {}),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        req.end(toFalcoJson(scenarioEvent(1)));
      });
    try {
      expect(await post(true)).toBe(200);
      await expect(post(false)).rejects.toThrow();
      expect(x.s.outbox.size).toBe(1);
    } finally {
      await input.close();
    }
  });

  it('says which TLS file it cannot read', async () => {
    const x = setup();
    await expect(x.start({ cert_file: '/nonexistent/tls.crt', key_file: '/nonexistent/tls.key' })).rejects.toThrow(
      /falco.http.tls.cert_file \/nonexistent\/tls.crt/,
    );
  });
});

describe('Falco HTTP input, an address it cannot listen on', () => {
  it('says the address is not one of this machine and which setting to change', async () => {
    const x = setup();
    await expect(startFalcoHttpInput({ listen: '192.0.2.1:2801', maxBodyBytes: 1024, builder: x.builder, sink: x.sink, log: silent })).rejects.toThrow(
      /^cannot listen for Falco events on 192\.0\.2\.1:2801: 192\.0\.2\.1 is not an address of this machine; set falco\.http\.listen to an address of this machine, e\.g\. 0\.0\.0\.0:2801/,
    );
  });
});

describe('Falco HTTP input, refused events in the agent log', () => {
  it('warns once per reason and minute with the count held back, naming json_output: true for text output', async () => {
    const { log, logs } = capturingLogger();
    const x = setup('', 4096);
    let now = 1_000_000;
    const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 4096, builder: x.builder, sink: x.sink, log, now: () => now });
    try {
      const text = '16:31:56.746609046: Error File below a known binary directory opened for writing';
      for (let i = 0; i < 3; i++) expect((await send(input.port, { body: text, headers: { 'content-type': 'text/plain' } })).status).toBe(400);
      expect((await send(input.port, { body: '{"rule":"x","output":"y"}' })).status).toBe(400);
      expect((await send(input.port, { body: 'x'.repeat(5000) })).status).toBe(413);
      expect((await send(input.port, { body: 'not gzip', headers: { 'content-encoding': 'gzip' } })).status).toBe(400);
      expect((await send(input.port, { body: '{}', headers: { 'content-encoding': 'br' } })).status).toBe(415);
      const refused = () => logs.filter((l) => l.msg.startsWith('Refused'));
      const notJson = refused().filter((l) => l.msg.startsWith('Refused Falco events posted over HTTP as text'));
      expect(notJson).toHaveLength(1);
      expect(notJson[0]).toMatchObject({ level: 'warn', status: 400, suppressed: 0 });
      expect(notJson[0]!.msg).toMatch(/set json_output: true in falco.yaml/);
      const others = refused().filter((l) => l.msg.startsWith('Refused a Falco event posted over HTTP;'));
      expect(others.map((l) => l.status)).toEqual([400, 413, 400, 415]);
      expect(others[0]!.reason).toMatch(/missing "priority", "time"/);
      expect(others[1]!.reason).toMatch(/over 4096 bytes/);
      expect(others[2]!.reason).toMatch(/not valid gzip data/);
      expect(others[3]!.reason).toMatch(/Content-Encoding br/);
      // A minute later the next one of a reason is logged with how many were held back meanwhile.
      now += 60_000;
      await send(input.port, { body: text, headers: { 'content-type': 'text/plain' } });
      expect(
        refused()
          .filter((l) => l.msg.startsWith('Refused Falco events posted over HTTP as text'))
          .map((l) => l.suppressed),
      ).toEqual([0, 2]);
    } finally {
      await input.close();
    }
  });

  it('says each POST carries one event when a body holds two', async () => {
    const x = setup('', 1024 * 1024);
    const input = await x.start();
    try {
      const two = `${toFalcoJson(scenarioEvent(0))}\n${toFalcoJson(scenarioEvent(1))}`;
      const r = await send(input.port, { body: two, headers: { 'content-type': 'application/json' } });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).error).toMatch(/^invalid JSON: .*; send one event per POST \(Falco's http_output sends one per request\)/);
    } finally {
      await input.close();
    }
  });

  it('keeps an event whose fields have types Falco never sends, reading them as meant, and warns once a minute naming them', async () => {
    const { log, logs } = capturingLogger();
    const x = setup('  dedup_window: 0s\n', 4096);
    let now = 1_000_000;
    const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 4096, builder: x.builder, sink: x.sink, log, now: () => now });
    const odd = (n: number) =>
      JSON.stringify({
        time: `2026-12-07T03:00:0${n}Z`,
        rule: `Odd ${n}`,
        priority: 'Warning',
        output: 42,
        tags: 'T1059, shell',
        hostname: 123,
        output_fields: {},
      });
    try {
      for (let i = 0; i < 3; i++) expect((await send(input.port, { body: odd(i), headers: { 'content-type': 'application/json' } })).status).toBe(200);
      now += 60_000;
      expect((await send(input.port, { body: odd(3), headers: { 'content-type': 'application/json' } })).status).toBe(200);
    } finally {
      await input.close();
      await x.sink.close();
    }
    const a = x.s.flushed().find((p) => p.rule === 'Odd 0')!;
    expect(a.description).toBe('42');
    expect(a.falco).toMatchObject({ output: '42', hostname: '123', tags: ['T1059', 'shell'] });
    expect(a.labels).toMatchObject({ hostname: '123', tags: 'T1059 shell' });
    const warned = logs.filter((l) => l.msg.startsWith('Took a Falco event with fields of a type Falco never sends'));
    expect(warned.map((l) => [l.level, l.input, l.rule, l.suppressed])).toEqual([
      ['warn', 'http', 'Odd 0', 0],
      ['warn', 'http', 'Odd 3', 2],
    ]);
    expect(warned[0]!.fields).toEqual([
      '"hostname" is a number (123), read as text; Falco sends a string',
      '"output" is a number (42), read as text; Falco sends a string',
      '"tags" is a text ("T1059, shell"), read as a comma-separated list; Falco sends a list of strings',
    ]);
  });

  it('at the largest max_body_bytes, says to shorten the rule output rather than raise the setting', async () => {
    const x = setup('', 64 * 1024 * 1024);
    const input = await x.start();
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const sock = connect(input.port, '127.0.0.1', () => {
          sock.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${64 * 1024 * 1024 + 1}\r\n\r\n`);
        });
        let text = '';
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => (text += d));
        sock.on('close', () => resolve(text));
        sock.on('error', reject);
      });
      expect(got).toMatch(/^HTTP\/1\.1 413/);
      expect(got).toMatch(/the largest size the agent accepts; shorten the output of the Falco rule/);
      expect(got).not.toMatch(/raise falco\.http\.max_body_bytes/);
    } finally {
      await input.close();
    }
  });
});
