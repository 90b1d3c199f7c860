import * as grpc from '@grpc/grpc-js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigProject } from '../../../test/helpers/processes.js';
import { GitOpsClient } from '../../gen/verdict/gitops.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { VERSION } from '../../shared/version.js';
import { AgentRegistry } from '../agents/agent-registry.js';
import { ProjectPollers } from '../config/project-poller.js';
import { openServerDb } from '../store/server-db.js';
import { addTunnelServices, StreamRegistry } from './grpc-service.js';

// The lines the agent API writes, as an operator's log pipeline reads them:
// the tunnel's under mod_name "tunnel", a module's gRPC services' under the
// module's name, and one mod_name per line (JSON.parse keeps the last of two
// equal keys, so a duplicate shows only in the raw line).

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function start() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const log = createRootLogger({ level: 'info', name: 'verdict-server', destination });
  const db = openServerDb(':memory:');
  const agents = new AgentRegistry(db);
  const { token } = agents.register('edge', new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-project-'))).dir);
  const server = new grpc.Server();
  addTunnelServices(
    server,
    { agents, pollers: new ProjectPollers(20_000, log), log, sink: { accept: async () => ({ stored: 0, duplicates: 0 }) } },
    new StreamRegistry(),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const client = new GitOpsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  closers.push(() => {
    client.close();
    server.forceShutdown();
    db.close();
  });
  const objects = (bearer: string, paths: number) =>
    new Promise<void>((resolve) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${bearer}`);
      md.set('verdict-version', VERSION);
      const call = client.getObjectsToSynchronize(
        { project_id: '', commit_id: '', paths: Array.from({ length: paths }, () => ({ path: { $case: 'glob' as const, value: '*.yaml' } })), ref: undefined },
        md,
      );
      call.on('data', () => {});
      call.on('error', () => resolve());
      call.on('end', () => resolve());
    });
  return { lines, token, objects };
}

const count = (line: string, key: string) => line.split(`"${key}":`).length - 1;

describe('agent API logs', () => {
  it("write the tunnel's lines under mod_name tunnel and a module's under its own name, once per line", async () => {
    const { lines, token, objects } = await start();
    await objects('vdt_not-a-token', 0);
    await objects(token, 101);
    const refused = lines.find((l) => l.includes('Refused an agent call: the token is unknown'));
    const gitops = lines.find((l) => l.includes('GitOps: refused to send objects'));
    expect(JSON.parse(String(refused))).toMatchObject({ level: 'info', name: 'verdict-server', mod_name: 'tunnel' });
    expect(JSON.parse(String(gitops))).toMatchObject({
      level: 'warn',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      mod_name: 'gitops',
      agent_name: 'edge',
      error: expect.stringContaining('no more than 100 item(s)'),
    });
    for (const line of [refused, gitops].map(String)) for (const key of ['mod_name', 'name', 'level', 'time', 'msg']) expect(count(line, key), line).toBe(1);
  });
});
