import * as grpc from '@grpc/grpc-js';
import Fastify, { type FastifyInstance } from 'fastify';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runAlertPublisher } from '../../agent/tunnel/alert-publisher.js';
import { Tunnel } from '../../agent/tunnel/connection.js';
import { parseKasAddress } from '../../agent/tunnel/kas-address.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';
import { Spool } from '../../agent/spool/spool.js';
import { AgentConfigurationClient, AlertPublisherClient, type AlertAck, type AlertBatch, type ConfigurationResponse } from '../../gen/verdict/agent.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { ConfigProject } from '../../../test/helpers/processes.js';
import { VERSION } from '../../shared/version.js';
import { AgentRegistry } from '../agents/agent-registry.js';
import { RevocationWatcher } from '../agents/revocation-watcher.js';
import { ProjectPollers } from '../config/project-poller.js';
import { AlertStore, type IncomingEvent } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload } from '../store/test-payloads.js';
import type { AlertSink } from './alert-sink.js';
import { addTunnelServices, StreamRegistry } from './grpc-service.js';
import { RateLimiter } from './rate-limit.js';
import { registerAgentWebSocket } from './ws-route.js';

// The agent API in one process, with the agent's own publisher and spool on
// the other end: acknowledgements only after the sink committed, deletion
// only of what was acknowledged, idempotent re-sends, per-token connection
// limits, revocation closing open streams, and per-address failure limits
// over the WebSocket transport too.

const silent = createRootLogger({ level: 'silent' });
const project = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-project-'))).dir;
const fast = { initialMs: 20, maxMs: 50, jitter: false };

interface Harness {
  agents: AgentRegistry;
  store: AlertStore;
  streams: StreamRegistry;
  token: string;
  tokenId: number;
  target: string;
  http?: FastifyInstance;
  close(): Promise<void>;
}

const open: Harness[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

async function start(
  o: { sink?: (store: AlertStore) => AlertSink; limits?: { token: RateLimiter; failures: RateLimiter }; ws?: boolean; project?: string } = {},
): Promise<Harness> {
  const db = openServerDb(':memory:');
  const agents = new AgentRegistry(db);
  const { token, tokenId } = agents.register('edge', o.project ?? project);
  const store = new AlertStore(db);
  const streams = new StreamRegistry();
  const server = new grpc.Server();
  addTunnelServices(
    server,
    {
      agents,
      pollers: new ProjectPollers(20_000, silent),
      log: silent,
      sink: o.sink ? o.sink(store) : { accept: async (agent, events) => store.ingest(agent, events) },
      ...(o.limits ? { limits: o.limits } : {}),
    },
    streams,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  let http: FastifyInstance | undefined;
  let ws: { close(): void } | undefined;
  if (o.ws) {
    http = Fastify();
    ws = await registerAgentWebSocket(http, { grpcServer: server, log: silent });
    await http.listen({ host: '127.0.0.1', port: 0 });
  }
  const h: Harness = {
    agents,
    store,
    streams,
    token,
    tokenId,
    target: `127.0.0.1:${port}`,
    ...(http ? { http } : {}),
    async close() {
      ws?.close();
      await http?.close();
      server.forceShutdown();
      db.close();
    },
  };
  open.push(h);
  return h;
}

function md(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  m.set('verdict-version', VERSION);
  return m;
}

const events = (n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => ({ id: `${tag}-${i}`, payload: Buffer.from(JSON.stringify(ciliumPayload({ fp: `fp-${tag}-${i % 3}` }))) }));

/** One PublishAlerts call: sends batches, collects acks, ends with the call's status. */
function publish(target: string, token: string, batches: AlertBatch[]): Promise<{ acks: AlertAck[]; error?: grpc.ServiceError }> {
  const client = new AlertPublisherClient(target, grpc.credentials.createInsecure());
  const call = client.publishAlerts(md(token));
  const acks: AlertAck[] = [];
  return new Promise((resolve) => {
    call.on('data', (a: AlertAck) => {
      acks.push(a);
      if (acks.length === batches.length) call.end();
    });
    call.on('error', (error: grpc.ServiceError) => {
      client.close();
      resolve({ acks, error });
    });
    call.on('end', () => {
      client.close();
      resolve({ acks });
    });
    for (const b of batches) call.write(b);
    if (batches.length === 0) call.end();
  });
}

function storedEvents(h: Harness): number {
  return (h.store as unknown as { db: { prepare(s: string): { get(): { n: number } } } }).db.prepare('SELECT count(*) AS n FROM alert_events').get().n;
}

async function until(fn: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('PublishAlerts', () => {
  it('stores a re-sent batch once: event ids make re-sends idempotent', async () => {
    const h = await start();
    const batch = { batch_id: 1, alerts: events(5, 'a') };
    const first = await publish(h.target, h.token, [batch]);
    expect(first.error).toBeUndefined();
    expect(first.acks).toEqual([{ batch_id: 1, stored: 5, duplicates: 0 }]);
    const again = await publish(h.target, h.token, [
      { ...batch, batch_id: 7 },
      { batch_id: 8, alerts: [...events(2, 'a'), ...events(1, 'b')] },
    ]);
    expect(again.acks).toEqual([
      { batch_id: 7, stored: 0, duplicates: 5 },
      { batch_id: 8, stored: 1, duplicates: 2 },
    ]);
    expect(storedEvents(h)).toBe(6);
  });

  it('acknowledges only after the sink committed, and the agent deletes only acknowledged alerts', async () => {
    let mode: 'hold' | 'fail' | 'pass' = 'hold';
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let calls = 0;
    const h = await start({
      sink: (store) => ({
        accept: async (agent, evs: IncomingEvent[]) => {
          calls++;
          if (mode === 'hold') await held;
          if (mode === 'fail') throw new Error('disk I/O error');
          return store.ingest(agent, evs);
        },
      }),
    });
    const outbox = new Spool(openAgentDb(':memory:'), { maxBytes: 1e9, log: silent });
    outbox.add(Array.from({ length: 12 }, (_, i) => ciliumPayload({ fp: `fp-${i % 4}` })));
    const ids = outbox.read(0, 100).map((r) => r.id);
    const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${h.target}`), token: h.token, log: silent });
    const abort = new AbortController();
    const loop = runAlertPublisher(tunnel, outbox, fast, silent, abort.signal, { batchSize: 5, maxInFlight: 4, pollMs: 50 });
    try {
      // The server holds the first batch in its sink: nothing is acknowledged, nothing leaves the spool.
      await until(() => calls === 1, 5000, 'the first batch in the sink');
      await new Promise((r) => setTimeout(r, 200));
      expect(calls).toBe(1); // batches are stored one after another, in order
      expect(outbox.size).toBe(12);
      expect(storedEvents(h)).toBe(0);

      // The sink fails: the stream fails, the agent keeps every alert and sends them again.
      mode = 'fail';
      release();
      await until(() => calls >= 2, 5000, 'the sink to fail');
      await new Promise((r) => setTimeout(r, 100));
      expect(outbox.size).toBe(12);
      expect(storedEvents(h)).toBe(0);

      mode = 'pass';
      await until(() => outbox.size === 0, 10_000, 'the spool to drain');
      expect(storedEvents(h)).toBe(12);
      const stored = new Set(
        (h.store as unknown as { db: { prepare(s: string): { all(): { event_id: string }[] } } }).db
          .prepare('SELECT event_id FROM alert_events')
          .all()
          .map((r) => r.event_id),
      );
      expect(ids.every((id) => stored.has(id))).toBe(true);
    } finally {
      abort.abort();
      await loop;
      await tunnel.close();
    }
  });
});

describe('PublishAlerts: a failing spool', () => {
  it('ends the stream with the error and sends everything once the spool reads again', async () => {
    const h = await start();
    const outbox = new Spool(openAgentDb(':memory:'), { maxBytes: 1e9, log: silent });
    outbox.add(Array.from({ length: 6 }, (_, i) => ciliumPayload({ fp: `spool-${i}` })));
    const read = outbox.read.bind(outbox);
    let failures = 0;
    outbox.read = (...args) => {
      if (failures < 2) {
        failures++;
        throw new Error('database disk image is malformed');
      }
      return read(...args);
    };
    const { log, logs: lines } = capturingLogger();
    const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${h.target}`), token: h.token, log: silent });
    const abort = new AbortController();
    const loop = runAlertPublisher(tunnel, outbox, fast, log, abort.signal, { batchSize: 5, maxInFlight: 4, pollMs: 50 });
    try {
      await until(() => outbox.size === 0, 10_000, 'the spool to drain');
      expect(storedEvents(h)).toBe(6);
      expect(lines.filter((l) => l.msg.startsWith('Alert stream to the server failed')).map((l) => l.error)).toEqual([
        'database disk image is malformed',
        'database disk image is malformed',
      ]);
    } finally {
      abort.abort();
      await loop;
      await tunnel.close();
    }
  });
});

describe('GetConfiguration', () => {
  it('ends the stream with UNAVAILABLE when the configuration status cannot be recorded, and serves the next call', async () => {
    const repo = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-config-')));
    const commit = repo.commit({ '.gitlab/agents/edge/config.yaml': 'observability:\n  logging:\n    level: debug\n' });
    const h = await start({ project: repo.dir });
    const recordConfig = h.agents.recordConfig.bind(h.agents);
    const recordConfigInvalid = h.agents.recordConfigInvalid.bind(h.agents);
    const broken = () => {
      throw new Error('database is locked');
    };
    h.agents.recordConfig = broken;
    h.agents.recordConfigInvalid = broken;
    const first = await getConfiguration(h.target, h.token);
    expect(first.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(first.error?.details).toBe('server could not send the configuration: database is locked');
    h.agents.recordConfig = recordConfig;
    h.agents.recordConfigInvalid = recordConfigInvalid;
    const second = await getConfiguration(h.target, h.token);
    expect(second.error?.details).toBeUndefined();
    expect(second.commits).toEqual([commit]);
  });
});

/** One GetConfiguration call: the commits it got until the first one (then cancelled), or the error that ended it. */
function getConfiguration(target: string, token: string): Promise<{ commits: string[]; error?: grpc.ServiceError }> {
  const client = new AgentConfigurationClient(target, grpc.credentials.createInsecure());
  const call = client.getConfiguration({ commit_id: '', agent_meta: undefined, invalid_in_stream: false }, md(token));
  const commits: string[] = [];
  return new Promise((resolve) => {
    call.on('data', (r: ConfigurationResponse) => {
      commits.push(r.commit_id);
      call.cancel();
    });
    call.on('error', (error: grpc.ServiceError) => {
      client.close();
      resolve(error.code === grpc.status.CANCELLED && commits.length ? { commits } : { commits, error });
    });
    call.on('end', () => {
      client.close();
      resolve({ commits });
    });
  });
}

describe('agent authentication on the tunnel', () => {
  it('refuses with UNAVAILABLE, not an exception out of the handler, when the token store fails', async () => {
    const h = await start();
    const authenticate = h.agents.authenticate.bind(h.agents);
    h.agents.authenticate = () => {
      throw new Error('database is locked');
    };
    const refused = await publish(h.target, h.token, [{ batch_id: 1, alerts: events(1, 'store-down') }]);
    expect(refused.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(refused.error?.details).toBe('server could not check the agent token: database is locked');
    h.agents.authenticate = authenticate;
    const ok = await publish(h.target, h.token, [{ batch_id: 2, alerts: events(1, 'store-up') }]);
    expect(ok.error).toBeUndefined();
    expect(ok.acks.map((a) => a.batch_id)).toEqual([2]);
  });

  it('rate limits connection attempts per token, leaving other tokens alone', async () => {
    const h = await start({ limits: { token: new RateLimiter({ burst: 3, perSecond: 0.001 }), failures: new RateLimiter({ burst: 100, perSecond: 1 }) } });
    for (let i = 0; i < 3; i++) expect((await publish(h.target, h.token, [])).error).toBeUndefined();
    const limited = await publish(h.target, h.token, []);
    expect(limited.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(limited.error?.details).toMatch(
      new RegExp(`too many connection attempts with token ${h.tokenId} of agent "edge" \\(limit: 3 at once, then 1 every 1000 s\\); retry in \\d+ s`),
    );
    const other = h.agents.createToken('edge', 'second').token;
    expect((await publish(h.target, other, [])).error).toBeUndefined();
  });

  it('refuses a revoked token on the next call and closes the streams already open with it', async () => {
    const h = await start();
    const watcher = new RevocationWatcher(h.agents, h.streams, silent, 60_000);
    const client = new AlertPublisherClient(h.target, grpc.credentials.createInsecure());
    const call = client.publishAlerts(md(h.token));
    const closed = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.write({ batch_id: 1, alerts: events(1, 'r') });
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    expect(h.streams.size).toBe(1);

    expect(h.agents.revokeToken('edge', h.tokenId)).toBe(true);
    expect(watcher.check()).toBe(1);
    const e = await closed;
    client.close();
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e.details).toMatch(/the agent token was revoked/);
    expect(h.streams.size).toBe(0);

    const next = await publish(h.target, h.token, [{ batch_id: 2, alerts: events(1, 's') }]);
    expect(next.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(next.error?.details).toBe(
      'unauthenticated: the agent token is unknown or revoked; create a new one with `verdict agents tokens create <agent>` (or POST /api/v1/admin/agents/<agent>/tokens) and update the token Secret (or --token-file)',
    );
    expect(storedEvents(h)).toBe(1);
  });

  it('applies the same per-token limit to calls arriving over ws://', async () => {
    const h = await start({
      ws: true,
      limits: { token: new RateLimiter({ burst: 2, perSecond: 0.001 }), failures: new RateLimiter({ burst: 100, perSecond: 1 }) },
    });
    const a = h.http!.server.address();
    const kas = parseKasAddress(`ws://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/-/kubernetes-agent/`);
    const tunnel = await Tunnel.open({ address: kas, token: h.token, log: silent });
    const client = new AlertPublisherClient(tunnel.target, tunnel.credentials, tunnel.options);
    try {
      const attempt = () =>
        new Promise<grpc.ServiceError | undefined>((resolve) => {
          const call = client.publishAlerts(tunnel.metadata());
          call.on('error', (e: grpc.ServiceError) => resolve(e.code === grpc.status.CANCELLED ? undefined : e));
          call.on('status', (st: grpc.StatusObject) => st.code === grpc.status.OK && resolve(undefined));
          call.on('metadata', () => call.end());
          call.resume();
        });
      expect(await attempt()).toBeUndefined();
      expect(await attempt()).toBeUndefined();
      const limited = await attempt();
      expect(limited?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(tunnel.describe(limited)).toMatch(/^rate limited by the server: too many connection attempts with token \d+ of agent "edge"/);
    } finally {
      client.close();
      await tunnel.close();
    }
  });
});
