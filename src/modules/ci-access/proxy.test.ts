import * as grpc from '@grpc/grpc-js';
import { mkdtempSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesApiTunnelClient, type AgentFrame, type RequestHeader, type ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { startServer, type RunningServer } from '../../server/server.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { VERSION } from '../../shared/version.js';
import { CiAccessConfigs } from './agent-configs.js';
import { AgentTunnels } from './agent-tunnels.js';
import { JobTokens } from './job-tokens.js';
import { KubernetesApiProxy } from './proxy.js';
import { ReplicaForwarder } from './replica-forward.js';
import { freePort, until } from '../../../test/helpers/processes.js';

// The server's half of the CI tunnel in one process: the proxy listener and
// the agent API's Connect calls, with a stand-in agent that answers over the
// tunnel as the real one does (header, body chunks, end; or all in the header
// frame), so what the proxy
// does with credentials, refusals, concurrency and a vanishing agent is seen
// without an API server. The real agent and kubectl: test/ci-tunnel.

interface Seen {
  header: RequestHeader;
  body: string;
}

/**
 * A stand-in agent: keeps `idle` Connect calls open; answers each request with what it received, as JSON.
 * keep: as the agent does when a request is answered soon, it keeps the call for the next request (End.next) instead of opening another.
 */
function standInAgent(
  address: string,
  token: string,
  idle: number,
  onRequest?: (call: grpc.ClientDuplexStream<AgentFrame, ServerFrame>, h: RequestHeader) => boolean,
  keep = false,
) {
  const client = new KubernetesApiTunnelClient(address, grpc.credentials.createInsecure());
  let stopped = false;
  const calls = new Set<grpc.ClientDuplexStream<AgentFrame, ServerFrame>>();
  const seen: Seen[] = [];
  const open = () => {
    if (stopped) return;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    md.set('verdict-version', VERSION);
    const call = client.connect(md);
    calls.add(call);
    let header: RequestHeader | undefined;
    let body = '';
    call.on('error', () => undefined);
    call.on('data', (f: ServerFrame) => {
      const m = f.msg;
      if (m?.$case === 'header') {
        header = m.value;
        body = '';
        if (!keep) open();
        if (onRequest?.(call, m.value)) header = undefined;
      } else if (m?.$case === 'data') body += m.value.toString();
      else if (m?.$case === 'end' && header) {
        seen.push({ header, body });
        const out = Buffer.from(JSON.stringify({ header, body }));
        const headers = { 'content-type': { values: ['application/json'] } };
        // Every other answer whole, in the header frame, when the server reads it so (as the agent sends a small one).
        if (header.whole_responses && seen.length % 2 === 0) {
          call.write({ msg: { $case: 'header', value: { status: 200, headers, body: out, end: { trailers: {}, next: keep } } } });
        } else {
          call.write({ msg: { $case: 'header', value: { status: 200, headers, body: Buffer.alloc(0), end: undefined } } });
          // In two chunks, as a streamed answer would come.
          call.write({ msg: { $case: 'data', value: out.subarray(0, 10) } });
          call.write({ msg: { $case: 'data', value: out.subarray(10) } });
          call.write({ msg: { $case: 'end', value: { trailers: {}, next: keep } } });
        }
        header = undefined;
        if (!keep) call.end();
      }
    });
  };
  for (let i = 0; i < idle; i++) open();
  return {
    seen,
    /** Connect calls opened so far. */
    opened: () => calls.size,
    stop() {
      stopped = true;
      for (const c of calls) c.cancel();
      client.close();
    },
  };
}

function send(port: number, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', headers }, (res) => {
      let b = '';
      res
        .setEncoding('utf8')
        .on('data', (d: string) => (b += d))
        .on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const message = (r: { body: string }) => (JSON.parse(r.body) as { message: string }).message;

describe('Kubernetes API proxy (server side)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-proxy-'));
  let server: RunningServer;
  let port: number;
  let agentId: number;
  let agentToken: string;
  let jobs: JobTokens;

  beforeAll(async () => {
    const project = join(dir, 'infra');
    mkdirSync(join(project, '.gitlab/agents/edge'), { recursive: true });
    writeFileSync(
      join(project, '.gitlab/agents/edge/config.yaml'),
      'ci_access:\n  projects:\n    - id: shop/app\n      access_as: {ci_job: {}}\n    - id: shop/ops\n',
    );
    const git = (...a: string[]) => execFileSync('git', ['-C', project, '-c', 'user.name=t', '-c', 'user.email=t@t', ...a]);
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-q', '-m', 'c');
    port = await freePort();
    server = await startServer(
      {
        data_dir: join(dir, 'server'),
        http_addr: '127.0.0.1:0',
        grpc_addr: '127.0.0.1:0',
        config_poll_interval: 100,
        kubernetes_api: { listen: `127.0.0.1:${port}`, url_path_prefix: '/k8s-proxy/', url: undefined },
      },
      createRootLogger({ level: 'silent' }),
    );
    const r = server.agents.register('edge', project);
    agentId = r.agent.id;
    agentToken = r.token;
    jobs = new JobTokens(server.db);
  });
  afterAll(async () => {
    await server?.close();
  });

  const bearer = (t: string) => ({ authorization: `Bearer ci:${agentId}:${t}` });

  it('refuses with a Status from the server: 401 without or with an unparseable credential, 403 for a project the agent does not allow, 503 when the agent is away', async () => {
    const none = await send(port, '/k8s-proxy/api', {});
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body)).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Unauthorized', code: 401 });
    expect(message(none)).toMatch(/^Verdict server: no credentials: .*; this listener is plain HTTP, and kubectl sends no bearer token over it/);
    expect((await send(port, '/k8s-proxy/api', { authorization: 'Bearer abc' })).status).toBe(401);
    expect(message(await send(port, '/k8s-proxy/api', bearer('vdt_ci_nope')))).toMatch(/^Verdict server: the CI job token is unknown/);
    const other = await send(port, '/k8s-proxy/api', bearer(jobs.create({ project: 'other/x', ttlMs: 60_000 }).token));
    expect(other.status).toBe(403);
    expect(message(other)).toBe(
      'Verdict server: agent is not allowed: project other/x is not in ci_access.projects, under ci_access.groups or allowed by ci_access.instance of agent "edge"; add it to that agent\'s config.yaml',
    );
    const unknownAgent = await send(port, '/k8s-proxy/api', { authorization: `Bearer ci:999:${jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token}` });
    expect(message(unknownAgent)).toMatch(/^Verdict server: agent is not allowed: no agent has id 999/);
    const away = await send(port, '/k8s-proxy/api', bearer(jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token));
    expect(away.status).toBe(503);
    expect(message(away)).toMatch(/^Verdict server: the agent "edge" is not connected to this server/);
    expect((await send(port, '/elsewhere', {})).status).toBe(404);
  });

  it('strips the credentials and the prefix, names the impersonated job, and carries the body both ways', async () => {
    const agent = standInAgent(server.grpcAddress, agentToken, 2);
    try {
      const token = jobs.create({ project: 'shop/app', ttlMs: 60_000 }).token;
      const r = await send(
        port,
        '/k8s-proxy/api/v1/namespaces/ci/configmaps?fieldManager=kubectl',
        { ...bearer(token), cookie: 'a=b', 'content-type': 'application/json' },
        '{"kind":"ConfigMap"}',
      );
      expect(r.status).toBe(200);
      const echoed = JSON.parse(r.body) as Seen;
      expect(echoed.body).toBe('{"kind":"ConfigMap"}');
      expect(echoed.header.method).toBe('POST');
      expect(echoed.header.uri).toBe('/api/v1/namespaces/ci/configmaps?fieldManager=kubectl');
      expect(Object.keys(echoed.header.headers)).not.toContain('authorization');
      expect(Object.keys(echoed.header.headers)).not.toContain('cookie');
      expect(echoed.header.headers['content-type']).toEqual({ values: ['application/json'] });
      expect(echoed.header.headers.via).toEqual({ values: ['1.1 verdict-server'] });
      expect(echoed.header.impersonation?.username).toMatch(/^gitlab:ci_job:\d+$/);
      expect(echoed.header.project).toBe('shop/app');
      expect(echoed.header.whole_responses).toBe(true);
      // access_as agent (the default): no impersonation.
      const ops = JSON.parse((await send(port, '/k8s-proxy/api', bearer(jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token))).body) as Seen;
      expect(ops.header.impersonation).toBeUndefined();
    } finally {
      agent.stop();
    }
  });

  it('serves many requests at once over one agent connection with two idle calls', async () => {
    const agent = standInAgent(server.grpcAddress, agentToken, 2);
    try {
      const token = jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token;
      // More than the per-token burst of connection attempts (60): Connect calls are not counted as connections.
      const rs = await Promise.all(Array.from({ length: 150 }, (_, i) => send(port, `/k8s-proxy/api/v1/x/${i}`, bearer(token), `body-${i}`)));
      expect(rs.map((r) => r.status)).toEqual(rs.map(() => 200));
      expect(rs.map((r) => (JSON.parse(r.body) as Seen).body)).toEqual(rs.map((_, i) => `body-${i}`));
    } finally {
      agent.stop();
    }
  });

  it('an agent that keeps its call after a request (End.next) gets the following requests on it, bodies and all', async () => {
    const agent = standInAgent(server.grpcAddress, agentToken, 1, undefined, true);
    try {
      const token = jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token;
      for (let i = 0; i < 6; i++) {
        const r = await send(port, `/k8s-proxy/api/v1/x/${i}`, bearer(token), i % 2 ? `body-${i}` : undefined);
        expect(r.status).toBe(200);
        const echoed = JSON.parse(r.body) as Seen;
        expect(echoed.header.uri).toBe(`/api/v1/x/${i}`);
        expect(echoed.body).toBe(i % 2 ? `body-${i}` : '');
      }
      expect(agent.opened()).toBe(1);
    } finally {
      agent.stop();
    }
  });

  it('an agent whose only call is busy (a watch) and that opens no other: 503 saying it is connected but busy, not "not connected"', async () => {
    let held = false;
    // keep: the stand-in opens no call in place of the one taken, as an agent shutting down with a watch open does.
    const agent = standInAgent(
      server.grpcAddress,
      agentToken,
      1,
      () => {
        held = true;
        return true;
      },
      true,
    );
    try {
      const token = jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token;
      void send(port, '/k8s-proxy/api/v1/configmaps?watch=1', bearer(token)).catch(() => undefined);
      await until(() => held || undefined, 10_000, 'the watch to take the call');
      const r = await send(port, '/k8s-proxy/api', bearer(token));
      expect(r.status).toBe(503);
      expect(message(r)).toMatch(/^Verdict server: the agent "edge" is connected, but its 1 call to this server is busy with other requests .* within 10 s/);
    } finally {
      agent.stop();
    }
  }, 30_000);

  it('an agent that goes away before answering: 502 saying so', async () => {
    const agent = standInAgent(server.grpcAddress, agentToken, 1, (call) => {
      call.cancel();
      return true;
    });
    try {
      const r = await send(port, '/k8s-proxy/api', bearer(jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token));
      expect(r.status).toBe(502);
      expect(message(r)).toMatch(/^Verdict server: the agent "edge" disconnected before it finished answering/);
    } finally {
      agent.stop();
    }
  });
  /** A watch the stand-in answers with `chunks` and holds open; resolves with what the client read once the connection ended. */
  async function heldWatch(chunks: string[]): Promise<{ jobId: number; read: Promise<string> }> {
    let held = false;
    const agent = standInAgent(server.grpcAddress, agentToken, 1, (call) => {
      call.write({
        msg: { $case: 'header', value: { status: 200, headers: { 'content-type': { values: ['application/json'] } }, body: Buffer.alloc(0), end: undefined } },
      });
      for (const c of chunks) call.write({ msg: { $case: 'data', value: Buffer.from(c) } });
      held = true;
      return true;
    });
    const { token, job } = jobs.create({ project: 'shop/ops', ttlMs: 60_000 });
    let got = '';
    const read = new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/k8s-proxy/api/v1/configmaps?watch=1', headers: bearer(token) }, (res) => {
        res.setEncoding('utf8').on('data', (d: string) => (got += d));
        res.on('close', () => resolve(got));
      });
      req.on('error', () => resolve(got));
      req.end();
    });
    await until(() => (held && got.length > 0) || undefined, 10_000, 'the watch to be answered');
    void read.finally(() => agent.stop());
    return { jobId: job.id, read };
  }

  it('a watch whose token is revoked between two events gets an ERROR event with the 401 Status; one revoked mid-line gets none, only the break', async () => {
    const between = await heldWatch(['{"type":"ADDED","object":{"kind":"ConfigMap"}}\n']);
    jobs.revoke(between.jobId);
    const lines = (await between.read).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1]!)).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 401, reason: 'Unauthorized' } });
    // A chunk ending mid-event: an ERROR event written there would make the line unreadable JSON.
    const midLine = await heldWatch(['{"type":"ADDED","object":{"kind":"ConfigMap"}}\n{"type":"MODIFIED","obj']);
    jobs.revoke(midLine.jobId);
    expect(await midLine.read).toBe('{"type":"ADDED","object":{"kind":"ConfigMap"}}\n{"type":"MODIFIED","obj');
  }, 30_000);

  it('a watch broken off while its client has stopped reading is closed after a while, not held open until the client reads again', async () => {
    let held = false;
    const line = `${JSON.stringify({ type: 'ADDED', object: { kind: 'ConfigMap', data: { x: 'y'.repeat(1000) } } })}\n`;
    const agent = standInAgent(server.grpcAddress, agentToken, 1, (call) => {
      call.write({
        msg: { $case: 'header', value: { status: 200, headers: { 'content-type': { values: ['application/json'] } }, body: Buffer.alloc(0), end: undefined } },
      });
      // More than the socket buffers on both sides take: the proxy's writes to the client wait.
      for (let i = 0; i < 32_000; i++) call.write({ msg: { $case: 'data', value: Buffer.from(line) } });
      held = true;
      return true;
    });
    try {
      const { token, job } = jobs.create({ project: 'shop/ops', ttlMs: 60_000 });
      let got = '';
      let res: import('node:http').IncomingMessage | undefined;
      const read = new Promise<string>((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/k8s-proxy/api/v1/configmaps?watch=1', headers: bearer(token) }, (r) => {
          res = r;
          r.setEncoding('utf8').once('data', (d: string) => {
            got += d;
            r.pause();
          });
          r.on('close', () => resolve(got));
        });
        req.on('error', () => resolve(got));
        req.end();
      });
      await until(() => (held && got.length > 0) || undefined, 10_000, 'the watch to be answered');
      await new Promise((r) => setTimeout(r, 1000));
      jobs.revoke(job.id);
      // Longer than the proxy gives a client to take the ERROR event; then the client reads again.
      await new Promise((r) => setTimeout(r, 7000));
      res!.on('data', (d: string) => (got += d)).resume();
      const all = await read;
      expect(all.length).toBeLessThan(32_000 * line.length);
      expect(all).not.toContain('"type":"ERROR"');
    } finally {
      agent.stop();
    }
  }, 30_000);

  it('an upgrade whose token is revoked before the agent answers gets the 401 Status whole', async () => {
    let held = false;
    const agent = standInAgent(server.grpcAddress, agentToken, 1, () => {
      held = true;
      return true;
    });
    try {
      const { token, job } = jobs.create({ project: 'shop/ops', ttlMs: 60_000 });
      const sock = connect(port, '127.0.0.1');
      let got = '';
      sock.setEncoding('utf8').on('data', (d: string) => (got += d));
      const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
      sock.on('error', () => undefined);
      sock.write(
        `GET /k8s-proxy/api/v1/namespaces/ci/pods/web/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ci:${agentId}:${token}\r\n\r\n`,
      );
      await until(() => held || undefined, 10_000, 'the upgrade to reach the agent');
      jobs.revoke(job.id);
      await closed;
      expect(got).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
      expect(JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4))).toMatchObject({ kind: 'Status', code: 401 });
    } finally {
      agent.stop();
    }
  }, 30_000);

  it('on a replica not holding the agent, a request with Impersonate-* headers is refused here, not forwarded to the holder (which may be older)', async () => {
    let holderGot = 0;
    const holder = createServer((_, res) => {
      holderGot++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const log = createRootLogger({ level: 'silent' });
    const proxy = new KubernetesApiProxy({
      jobs,
      agentById: (id) => server.agents.getById(id),
      replicas: {
        holding: () => [{ replica: 'older', address: `127.0.0.1:${(holder.address() as { port: number }).port}`, tls: false }],
        forwarder: new ReplicaForwarder(undefined, log),
        replica: 'this',
      },
      configs: new CiAccessConfigs(async () => 'HEAD', log),
      tunnels: new AgentTunnels(),
      prefix: '/k8s-proxy/',
      log,
    });
    const front = createServer((req, res) => void proxy.handle(req, res));
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    try {
      const frontPort = (front.address() as { port: number }).port;
      const token = jobs.create({ project: 'shop/ops', ttlMs: 60_000 }).token;
      const r = await send(frontPort, '/k8s-proxy/api/v1/pods', {
        ...bearer(token),
        'impersonate-user': 'system:admin',
        'impersonate-group': 'system:masters',
      });
      expect(r.status).toBe(403);
      expect(message(r)).toMatch(/^Verdict server: impersonation through the CI tunnel is not allowed \(the request sends impersonate-user, impersonate-group/);
      expect(holderGot).toBe(0);
      // Without them the request is the holder's to decide.
      expect((await send(frontPort, '/k8s-proxy/api/v1/pods', bearer(token))).status).toBe(200);
      expect(holderGot).toBe(1);
    } finally {
      front.close();
      holder.close();
    }
  });
  it('on a replica not knowing what a moved agent runs, a request waits for the route of the replica the agent went to instead of deciding with the registered project; the replica it left answers a forwarded one with a retryable 503', async () => {
    const holderGot: string[] = [];
    const holder = createServer((req, res) => {
      holderGot.push(req.headers.authorization ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const log = createRootLogger({ level: 'silent' });
    // The route of the replica the agent reconnected to arrives (through Kafka) after the request did.
    let lookups = 0;
    const proxy = new KubernetesApiProxy({
      jobs,
      agentById: (id) => server.agents.getById(id),
      agentByName: (name) => server.agents.get(name),
      replicas: {
        holding: () => (++lookups > 2 ? [{ replica: 'other', address: `127.0.0.1:${(holder.address() as { port: number }).port}`, tls: false }] : []),
        forwarder: new ReplicaForwarder(undefined, log),
        replica: 'this',
      },
      configs: new CiAccessConfigs(async () => 'HEAD', log),
      tunnels: new AgentTunnels(),
      prefix: '/k8s-proxy/',
      log,
    });
    const front = createServer((req, res) => void proxy.handle(req, res));
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    try {
      const frontPort = (front.address() as { port: number }).port;
      // Not allowed by the registered project's config.yaml: only the configuration the agent runs may allow it.
      const token = jobs.create({ project: 'shop/other', ttlMs: 60_000 }).token;
      const r = await send(frontPort, '/k8s-proxy/api/v1/pods', bearer(token));
      expect(r.status).toBe(200);
      expect(holderGot).toHaveLength(1);
      // The replica the agent left, forwarded a request by one that still saw it there: retry, not 403.
      const left = await send(frontPort, '/k8s-proxy/api/v1/pods', { authorization: `Bearer ci-replica:edge:${token}` });
      expect(left.status).toBe(503);
      expect(message(left)).toMatch(/the agent "edge" is not connected to this server \(replica this, .*the agent has just left it\); retry$/);
    } finally {
      front.close();
      holder.close();
    }
  });
});
