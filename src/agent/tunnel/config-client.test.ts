import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentConfigurationService, type ConfigurationRequest, type ConfigurationResponse } from '../../gen/verdict/agent.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { AgentRegistry } from '../../server/agents/agent-registry.js';
import { ProjectPollers } from '../../server/config/project-poller.js';
import { openServerDb } from '../../server/store/server-db.js';
import { addTunnelServices, StreamRegistry } from '../../server/tunnel/grpc-service.js';
import { runConfigStream, type ConfigUpdate } from './config-client.js';
import { Tunnel } from './connection.js';
import { parseKasAddress } from './kas-address.js';

// The agent's configuration stream against the server's: the server's
// findings in config.yaml reach the agent's log once per commit and the
// agent's status in the server, and a clean end of the stream reconnects at once.

const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function capture() {
  const lines: { level: string; msg: string; commit_id?: string }[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { log: createRootLogger({ level: 'info', destination }), lines };
}

function configProject(): { dir: string; commit(yaml: string): string } {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-config-client-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...a: string[]) => execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...a], { encoding: 'utf8' }).trim();
  git('init', '-q');
  mkdirSync(join(dir, '.gitlab/agents/edge'), { recursive: true });
  return {
    dir,
    commit(yaml) {
      writeFileSync(join(dir, '.gitlab/agents/edge/config.yaml'), yaml);
      git('add', '.');
      git('commit', '-qm', 'config');
      return git('rev-parse', 'HEAD');
    },
  };
}

async function until(fn: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function serve(server: grpc.Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  cleanup.push(() => void server.forceShutdown());
  return `127.0.0.1:${port}`;
}

async function startAgentStream(
  target: string,
  token: string,
  backoff: { initialMs: number; maxMs: number; jitter: false },
  apply: (u: ConfigUpdate) => Promise<void> = async () => undefined,
) {
  const { log, lines } = capture();
  const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${target}`), token, log });
  const abort = new AbortController();
  const updates: ConfigUpdate[] = [];
  const loop = runConfigStream(tunnel, backoff, log, abort.signal, async (u) => {
    updates.push(u);
    await apply(u);
  });
  cleanup.push(async () => {
    abort.abort();
    await loop;
    await tunnel.close();
  });
  return { lines, updates };
}

describe('configuration stream', () => {
  it("logs the server's findings in config.yaml once per commit, and the server shows them in the agent's status", async () => {
    const project = configProject();
    const first = project.commit('observability:\n  logging:\n    level: info\n    grpc_level: debug\nuser_access:\n  access_as:\n    agent: {}\n');
    const db = openServerDb(':memory:');
    cleanup.push(() => void db.close());
    const agents = new AgentRegistry(db);
    const { token, tokenId } = agents.register('edge', project.dir);
    const server = new grpc.Server();
    const streams = new StreamRegistry();
    const silent = createRootLogger({ level: 'silent' });
    addTunnelServices(
      server,
      { agents, pollers: new ProjectPollers(50, silent), log: silent, sink: { accept: async () => ({ stored: 0, duplicates: 0 }) } },
      streams,
    );
    const target = await serve(server);
    const { lines, updates } = await startAgentStream(target, token, { initialMs: 20, maxMs: 50, jitter: false });

    await until(() => updates.length === 1, 'the first configuration');
    const file = '.gitlab/agents/edge/config.yaml';
    const expected = [
      `Config: ${file}:4: observability.logging.grpc_level: not used by Verdict (Verdict logs gRPC at observability.logging.level); accepted and ignored`,
      `Config: ${file}:5: user_access: not used by Verdict (Verdict has no Kubernetes API proxy for users); accepted and ignored`,
    ];
    const configWarnings = () => lines.filter((l) => l.level === 'warn' && l.msg.startsWith('Config: ')).map((l) => l.msg);
    expect(configWarnings()).toEqual(expected);
    expect(updates[0]!.warnings.map((w) => w.path)).toEqual(['observability.logging.grpc_level', 'user_access']);
    expect(agents.configStatus('edge')).toMatchObject({
      commit_id: first,
      warnings: [
        { file, line: 4, path: 'observability.logging.grpc_level' },
        { file, line: 5, path: 'user_access' },
      ],
    });

    // A reconnect with the same commit brings nothing new: no second round of
    // warnings. A server that restarted meanwhile (its statuses are in memory)
    // reads the status of the commit the agent runs without sending it again.
    (agents as unknown as { configStatuses: Map<string, unknown> }).configStatuses.clear();
    expect(streams.drop(tokenId)).toBe(1);
    await until(() => agents.configStatus('edge') !== undefined, 'the status after the reconnect');
    await new Promise((r) => setTimeout(r, 200));
    expect(configWarnings()).toEqual(expected);
    expect(updates).toHaveLength(1);
    expect(agents.configStatus('edge')).toMatchObject({ commit_id: first, warnings: [{ line: 4 }, { line: 5 }] });

    // A new commit is logged again, with its own findings.
    const second = project.commit('user_access:\n  access_as:\n    agent: {}\n');
    await until(() => updates.length === 2, 'the second configuration');
    expect(configWarnings()).toEqual([
      ...expected,
      `Config: ${file}:1: user_access: not used by Verdict (Verdict has no Kubernetes API proxy for users); accepted and ignored`,
    ]);
    expect(agents.configStatus('edge')?.commit_id).toBe(second);

    // An invalid commit shows in the status beside the commit the agent keeps running.
    const bad = project.commit('observability:\n  logging:\n    level: loud\n');
    await until(() => agents.configStatus('edge')?.invalid !== undefined, 'the invalid commit in the status');
    expect(agents.configStatus('edge')).toMatchObject({
      commit_id: second,
      invalid: { commit_id: bad, error: expect.stringContaining(`${file}:3: observability.logging.level: must be one of "info", "debug", "warn", "error"`) },
    });
  });

  it('reconnects at once after a clean end of the stream, and after an error only with backoff', async () => {
    // Each call notes the backoffs the agent had logged by then: the loop waits only after logging one.
    const calls: { commit: string; backoffs: unknown[] }[] = [];
    const server = new grpc.Server();
    let lines: Awaited<ReturnType<typeof startAgentStream>>['lines'] = [];
    server.addService(AgentConfigurationService, {
      getConfiguration: (call: grpc.ServerWritableStream<ConfigurationRequest, ConfigurationResponse>) => {
        const backoffs = lines.filter((l) => 'retry_in_ms' in l).map((l) => [l.msg, (l as { retry_in_ms?: number }).retry_in_ms]);
        calls.push({ commit: call.request.commit_id, backoffs });
        if (calls.length === 1) {
          call.write({ commit_id: 'c1', config_json: '{}', files: [], agent_name: 'edge', warnings: [], invalid_reason: '' });
          call.end();
        } else if (calls.length === 2) {
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'restarting' });
        }
        // The third call stays open.
      },
    });
    const target = await serve(server);
    ({ lines } = await startAgentStream(target, 'token', { initialMs: 3000, maxMs: 3000, jitter: false }));
    await until(() => calls.length === 3, 'the third call', 20_000);
    expect(calls.map((c) => c.commit)).toEqual(['', 'c1', 'c1']);
    // The redial after the clean end came with no backoff before it; the one after the error after one, of the whole 3 s.
    const failed = 'Config: failed to get configuration from the server';
    expect(calls.map((c) => c.backoffs)).toEqual([[], [], [[failed, 3000]]]);
    expect(lines.filter((l) => l.msg === 'Config: failed to get configuration from the server')).toHaveLength(1);
  });

  it('a configuration whose apply throws is asked for again after a reconnect, and the stream goes on', async () => {
    const calls: string[] = [];
    const server = new grpc.Server();
    server.addService(AgentConfigurationService, {
      getConfiguration: (call: grpc.ServerWritableStream<ConfigurationRequest, ConfigurationResponse>) => {
        calls.push(call.request.commit_id);
        if (call.request.commit_id !== 'c1')
          call.write({ commit_id: 'c1', config_json: '{}', files: [], agent_name: 'edge', warnings: [], invalid_reason: '' });
        // The stream stays open, as the server's does.
      },
    });
    const target = await serve(server);
    let failures = 1;
    const { lines, updates } = await startAgentStream(target, 'token', { initialMs: 20, maxMs: 20, jitter: false }, async () => {
      if (failures-- > 0) throw new Error('a module would not stop');
    });
    await until(() => updates.length === 2, 'the configuration a second time');
    // The failed commit was not recorded as applied: the second call asked for it again.
    expect(calls).toEqual(['', '']);
    expect(lines.filter((l) => l.msg.startsWith('Config: applying the configuration failed'))).toHaveLength(1);
  });
});
