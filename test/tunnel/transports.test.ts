import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { get } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient } from '../../src/gen/verdict/agent.js';
import { killAll, tempDir, until, type LogLine } from '../helpers/processes.js';
import { makeCerts, type Certs } from '../helpers/certs.js';
import { prepareServer, ServerProc, spawnAgent, SpoolWriter, storeCounts } from './harness.js';

// Every --kas-address scheme against real server processes (plain and TLS),
// and the mistakes operators make, each with a message that names the fix.

const errorLog = (l: LogLine) => typeof l.error === 'string';

async function delivers(server: ServerProc, kas: string, tokenFile: string, dir: string, extra: string[] = []): Promise<void> {
  const agentDir = join(dir, `agent-${kas.split(':')[0]}`);
  const agent = spawnAgent(kas, tokenFile, agentDir, extra);
  await agent.waitForLog((l) => l.msg === 'Config: applying new configuration', 20_000, `configuration over ${kas}`);
  const before = storeCounts(server.data).events;
  const w = await SpoolWriter.open(agentDir);
  w.add(200);
  await until(() => (storeCounts(server.data).events === before + 200 ? true : undefined), 20_000, `200 alerts over ${kas}`);
  w.close();
  await agent.kill();
}

function configCall(target: string, token: string, version: string): Promise<grpc.ServiceError> {
  const client = new AgentConfigurationClient(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', version);
  return new Promise((resolve) => {
    const call = client.getConfiguration({ commit_id: '', agent_meta: undefined, invalid_in_stream: false }, md);
    call.on('data', () => call.cancel());
    call.on('error', (e: grpc.ServiceError) => {
      client.close();
      resolve(e);
    });
  });
}

describe('plain transports: grpc:// and ws://', () => {
  const dir = tempDir();
  let server: ServerProc;
  let tokenFile = '';
  let token = '';
  beforeAll(async () => {
    ({ tokenFile, token } = prepareServer(dir));
    server = await ServerProc.start(join(dir, 'server'));
  });
  afterAll(killAll);

  it('configures the agent and delivers alerts over grpc://', () => delivers(server, server.kasAddress('grpc'), tokenFile, dir));
  it('configures the agent and delivers alerts over ws://', () => delivers(server, server.kasAddress('ws'), tokenFile, dir));

  it('explains grpc:// pointed at the HTTP port', async () => {
    const agent = spawnAgent(`grpc://127.0.0.1:${server.http}`, tokenFile, join(dir, 'mismatch-1'));
    const l = await agent.waitForLog(errorLog);
    expect(l.error).toMatch(/answered with HTTP\/1\.1, not gRPC .*probably the server's HTTP port; use ws:\/\/127\.0\.0\.1:\d+\/-\/kubernetes-agent\//);
    await agent.kill();
  });

  it('explains ws:// pointed at the gRPC port', async () => {
    const agent = spawnAgent(`ws://127.0.0.1:${server.grpc}/-/kubernetes-agent/`, tokenFile, join(dir, 'mismatch-2'));
    const l = await agent.waitForLog(errorLog);
    expect(l.error).toMatch(/did not answer HTTP\/1\.1 .*probably the server's gRPC port; use grpc:\/\/127\.0\.0\.1:\d+/);
    await agent.kill();
  });

  it('answers 301 on the WebSocket path without its slash, and the agent refuses such an address at start-up', async () => {
    const res = await fetch(`http://127.0.0.1:${server.http}/-/kubernetes-agent`, { redirect: 'manual' });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('/-/kubernetes-agent/');
    const agent = spawnAgent(`ws://127.0.0.1:${server.http}/-/kubernetes-agent`, tokenFile, join(dir, 'noslash'));
    expect(await agent.exited).toBe(1);
    expect(agent.stdout + agent.stderr).toMatch(/must end with a slash \(e\.g\. ws:\/\/127\.0\.0\.1:\d+\/-\/kubernetes-agent\/\)/);
  });

  it('refuses an unknown scheme at start-up', async () => {
    const agent = spawnAgent(`http://127.0.0.1:${server.grpc}`, tokenFile, join(dir, 'scheme'));
    expect(await agent.exited).toBe(1);
    expect(agent.stdout).toMatch(/scheme \\"http\\" is not supported; use grpc:\/\/, grpcs:\/\/, ws:\/\/ or wss:\/\//);
  });

  it('refuses a major.minor version mismatch, naming the versions to align', async () => {
    const e = await configCall(`127.0.0.1:${server.grpc}`, token, '9.4.0');
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/agent version 9\.4\.0 and server version 0\.1\.\d+ differ in major\.minor; .*agent to 0\.1\.x, or the server to 9\.4\.x/);
    expect(e.metadata.get('verdict-refusal')).toEqual(['version']);
  });

  it('rate limits failed authentications with RESOURCE_EXHAUSTED', async () => {
    let last: grpc.ServiceError | undefined;
    for (let i = 0; i < 25; i++) {
      last = await configCall(`127.0.0.1:${server.grpc}`, 'vdt_agent_guess', '0.1.0');
      if (last.code === grpc.status.RESOURCE_EXHAUSTED) break;
      expect(last.code).toBe(grpc.status.UNAUTHENTICATED);
    }
    expect(last!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(last!.details).toMatch(/too many failed agent authentications from 127\.0\.0\.1 \(limit: 20 at once, then 1 every 3 s\); retry in \d+ s/);
    // A valid token is not punished for its neighbour's guesses.
    const ok = await configCall(`127.0.0.1:${server.grpc}`, token, '0.1.0');
    expect(ok.code).toBe(grpc.status.CANCELLED);
  });
});

describe('TLS transports: grpcs:// and wss://', () => {
  const dir = tempDir();
  let certs: Certs;
  let server: ServerProc;
  let tokenFile = '';
  beforeAll(async () => {
    certs = makeCerts(dir);
    ({ tokenFile } = prepareServer(dir));
    server = await ServerProc.start(join(dir, 'server'), certs);
  });
  afterAll(killAll);

  it('delivers over grpcs:// with --ca-cert-file', () => delivers(server, server.kasAddress('grpc'), tokenFile, dir, ['--ca-cert-file', certs.ca]));
  it('delivers over wss:// with --ca-cert-file', () => delivers(server, server.kasAddress('ws'), tokenFile, dir, ['--ca-cert-file', certs.ca]));

  it('serves the HTTP API over TLS too', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      get(`https://localhost:${server.http}/healthz`, { ca: readFileSync(certs.ca) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    expect(status).toBe(200);
  });

  it.each(['grpc', 'ws'] as const)('names --ca-cert-file when the CA is unknown (%s)', async (t) => {
    const agent = spawnAgent(server.kasAddress(t), tokenFile, join(dir, `noca-${t}`));
    const l = await agent.waitForLog(errorLog);
    expect(l.error).toMatch(/not signed by a CA the agent trusts .*pass the CA certificate that signed it with --ca-cert-file/);
    await agent.kill();
  });

  it('explains plain grpc:// at a TLS port', async () => {
    const agent = spawnAgent(`grpc://localhost:${server.grpc}`, tokenFile, join(dir, 'plain-at-tls'));
    const l = await agent.waitForLog(errorLog);
    expect(l.error).toMatch(/if the server serves TLS there, use grpcs:\/\//);
    await agent.kill();
  });
});
