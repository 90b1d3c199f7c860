import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lingering, ModuleContext } from '../../agent/module.js';
import type { Tunnel } from '../../agent/tunnel/connection.js';
import type { AgentFrame, End, ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { createCiAccessModule } from './agent.js';
import type { CiAccessConfig } from './config.js';
import { TunnelService } from './wire.js';

// The agent part of the CI tunnel against a stand-in server that speaks
// Connect both ways a server may: without End.next (it ends each call after
// its request), and with it (it gives a call whose End says next the next
// request, and reads a whole response in the header frame): the agent answers
// each way. The real server and kubectl: test/ci-tunnel.

type ServerCall = grpc.ServerDuplexStream<AgentFrame, ServerFrame>;

describe('CI tunnel agent part: one request per call (older servers) or many (End.next)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-agent-'));
  const api = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello ${req.url}`);
  });
  const server = new grpc.Server();
  const waiting: ServerCall[] = [];
  let opened = 0;
  const abort = new AbortController();
  let running: Promise<unknown> | undefined;

  beforeAll(async () => {
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:${(api.address() as AddressInfo).port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
    );
    server.addService(TunnelService, {
      connect: (call: ServerCall) => {
        opened++;
        waiting.push(call);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const tunnel = {
      target: `127.0.0.1:${port}`,
      credentials: grpc.credentials.createInsecure(),
      options: {},
      metadata: () => new grpc.Metadata(),
      checkServerVersion: () => undefined,
      describe: (e: unknown) => String(e),
    } as unknown as Tunnel;
    const log = createRootLogger({ level: 'silent' });
    const mod = createCiAccessModule({ kubeconfig, backoff: { initialMs: 10, maxMs: 100, factor: 2, jitter: false, resetAfterMs: 1000 } });
    running = mod.run({} as CiAccessConfig, { tunnel, log } as unknown as ModuleContext, abort.signal);
  });
  afterAll(async () => {
    abort.abort();
    await running;
    server.forceShutdown();
    api.close();
  });

  /**
   * Sends one GET on a waiting call; ends the call after it (an older server) or, when the agent says next, puts it back.
   * whole: the header says the server reads a whole response in the header frame. frames: the kinds of frame the answer came in.
   */
  async function ask(
    uri: string,
    older: boolean,
    whole = false,
    headers: Record<string, { values: string[] }> = {},
  ): Promise<{ body: string; next: boolean; frames?: string[] }> {
    for (const until = Date.now() + 10_000; waiting.length === 0; ) {
      if (Date.now() > until) throw new Error('no call from the agent');
      await new Promise((r) => setTimeout(r, 10));
    }
    const call = waiting.shift()!;
    return new Promise((resolve, reject) => {
      let body = '';
      const frames: string[] = [];
      const ended = (end: End) => {
        call.off('data', onData);
        if (older || !end.next) call.end();
        else waiting.push(call);
        resolve({ body, next: end.next, ...(whole ? { frames } : {}) });
      };
      const onData = (f: AgentFrame) => {
        const m = f.msg;
        frames.push(m?.$case ?? 'none');
        if (m?.$case === 'header') {
          body += Buffer.from(m.value.body).toString();
          if (m.value.end) ended(m.value.end);
        } else if (m?.$case === 'data') body += Buffer.from(m.value).toString();
        else if (m?.$case === 'end') ended(m.value);
      };
      call.on('data', onData);
      call.once('error', reject);
      call.write({
        msg: { $case: 'header', value: { method: 'GET', uri, headers, impersonation: undefined, job_id: 1, project: 'p', whole_responses: whole } },
      });
      call.write({ msg: { $case: 'end', value: { trailers: {}, next: false } } });
    });
  }

  it('answers a server that ends every call after its request, opening new calls (more requests than idle calls)', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await ask(`/older/${i}`, true);
      expect(r.body).toBe(`hello /older/${i}`);
    }
    expect(opened).toBeGreaterThanOrEqual(12);
  });

  it("refuses a request carrying the job's own Impersonate-* headers (a server that let them through), with access_as agent too", async () => {
    for (const name of ['impersonate-group', 'Impersonate-Extra-Scopes', 'impersonate-uid']) {
      const r = await ask('/api/v1/secrets', true, false, { [name]: { values: ['system:masters'] } });
      expect(JSON.parse(r.body)).toMatchObject({
        code: 403,
        message: expect.stringContaining('Verdict agent: impersonation through the CI tunnel is not allowed'),
      });
      expect(r.body).not.toContain('hello');
    }
  });

  it('keeps a call for the next request when the server takes End.next: no new calls', async () => {
    await ask('/warm', false);
    // The calls a previous test's ended ones were replaced with are all open by now.
    await new Promise((r) => setTimeout(r, 200));
    const before = opened;
    for (let i = 0; i < 12; i++) {
      const r = await ask(`/kept/${i}`, false);
      expect(r).toEqual({ body: `hello /kept/${i}`, next: true });
    }
    expect(opened).toBe(before);
  });

  it('answers in one frame, header with body and end, when the server reads whole responses, and still keeps the call', async () => {
    const before = opened;
    for (let i = 0; i < 3; i++) {
      expect(await ask(`/whole/${i}`, false, true)).toEqual({ body: `hello /whole/${i}`, next: true, frames: ['header'] });
    }
    expect(await ask('/framed', false)).toEqual({ body: 'hello /framed', next: true });
    expect(opened).toBe(before);
  });
});

/** An API server whose watch the test ends, a stand-in server, and the module run against them, with a watch in flight on one call. */
async function withWatchInFlight(): Promise<{
  abort: AbortController;
  result: Promise<unknown>;
  returned: () => boolean;
  body: () => string;
  ended: Promise<void>;
  failed: Promise<void>;
  finish: () => void;
  close: () => Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-agent-stop-'));
  // A watch the test ends: the API server sends its first event and holds the response open.
  let finish: (() => void) | undefined;
  const api = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"type":"ADDED"}\n');
    finish = () => res.end('{"type":"DELETED"}\n');
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:${(api.address() as AddressInfo).port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
  );
  const server = new grpc.Server();
  const waiting: ServerCall[] = [];
  server.addService(TunnelService, { connect: (call: ServerCall) => waiting.push(call) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const tunnel = {
    target: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    options: {},
    metadata: () => new grpc.Metadata(),
    checkServerVersion: () => undefined,
    describe: (e: unknown) => String(e),
  } as unknown as Tunnel;
  const abort = new AbortController();
  const mod = createCiAccessModule({ kubeconfig, backoff: { initialMs: 10, maxMs: 100, factor: 2, jitter: false, resetAfterMs: 1000 } });
  let returned = false;
  const result = mod.run({} as CiAccessConfig, { tunnel, log: createRootLogger({ level: 'silent' }) } as unknown as ModuleContext, abort.signal);
  void result.then(() => (returned = true));
  const close = async () => {
    finish?.();
    abort.abort();
    await result;
    server.forceShutdown();
    api.close();
  };
  try {
    for (const until = Date.now() + 10_000; waiting.length === 0; ) {
      if (Date.now() > until) throw new Error('no call from the agent');
      await new Promise((r) => setTimeout(r, 10));
    }
    const call = waiting.shift()!;
    let body = '';
    let resolveEnd: (() => void) | undefined;
    const ended = new Promise<void>((r) => (resolveEnd = r));
    const failed = new Promise<void>((r) => {
      call.on('error', () => r());
      call.on('cancelled', () => r());
    });
    call.on('data', (f: AgentFrame) => {
      const m = f.msg;
      if (m?.$case === 'header') body += Buffer.from(m.value.body).toString();
      else if (m?.$case === 'data') body += Buffer.from(m.value).toString();
      if (m?.$case === 'end' || (m?.$case === 'header' && m.value.end)) resolveEnd?.();
    });
    call.write({
      msg: {
        $case: 'header',
        value: { method: 'GET', uri: '/api/v1/configmaps?watch=1', headers: {}, impersonation: undefined, job_id: 1, project: 'p', whole_responses: false },
      },
    });
    call.write({ msg: { $case: 'end', value: { trailers: {}, next: false } } });
    for (const until = Date.now() + 10_000; !body.includes('ADDED'); ) {
      if (Date.now() > until) throw new Error(`no first event: ${body}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return { abort, result, returned: () => returned, body: () => body, ended, failed, finish: () => finish?.(), close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function returnsSoon(w: { returned: () => boolean }): Promise<void> {
  for (const until = Date.now() + 3000; !w.returned(); ) {
    if (Date.now() > until) throw new Error('the module did not return while a request was in flight');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('CI tunnel agent part: stopping it (a new ci_access block, shutdown)', () => {
  it('returns at once and leaves a request in flight (a watch) to finish on its own call', async () => {
    const w = await withWatchInFlight();
    try {
      w.abort.abort();
      // Before, the module waited for the watch: a new ci_access block (and any configuration after it) waited for hours.
      await returnsSoon(w);
      const left = (await w.result) as Lingering;
      w.finish();
      await w.ended;
      await left.done;
      expect(w.body()).toBe('{"type":"ADDED"}\n{"type":"DELETED"}\n');
    } finally {
      await w.close();
    }
  });

  it('ends the request left in flight when the agent stops (end()): the server sees its call broken', async () => {
    const w = await withWatchInFlight();
    try {
      w.abort.abort();
      await returnsSoon(w);
      const left = (await w.result) as Lingering;
      left.end();
      await w.failed;
      await left.done;
      expect(w.body()).toBe('{"type":"ADDED"}\n');
    } finally {
      await w.close();
    }
  });
});
