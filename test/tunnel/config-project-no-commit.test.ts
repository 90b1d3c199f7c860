import * as grpc from '@grpc/grpc-js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../src/gen/verdict/agent.js';
import type { RunningServer } from '../../src/server/server.js';
import { NO_COMMIT_ID } from '../../src/shared/agent-api.js';
import { VERSION } from '../../src/shared/version.js';
import { startLocalServer } from '../helpers/config-stream.js';
import { capturingLogger } from '../helpers/logs.js';
import { ConfigProject, tempDir } from '../helpers/processes.js';

// A configuration project the server cannot read a commit of: only one that
// is a git repository without a commit yet (just created, one an agent was
// moved to) keeps the agent's configuration stream open to be polled. A
// missing directory, or one that is no repository, ends the stream with the
// error as before, and the agent's reconnect is the retry. The report on the
// stream names what to commit, never the server's path, and its commit id is
// not '': agents of the release before it take '' for an invalid commit they
// logged already, and would say nothing.

const dir = tempDir('verdict-config-no-commit-');
let server: RunningServer;
let configs: AgentConfigurationClient;
const open: grpc.ClientReadableStream<unknown>[] = [];

function metadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', VERSION);
  return md;
}

/** The first message of an agent's configuration stream that asks for invalid commits on the stream, or the status ending it. */
function firstAnswer(token: string): Promise<ConfigurationResponse | grpc.ServiceError> {
  const call = configs.getConfiguration({ commit_id: '', agent_meta: undefined, invalid_in_stream: true }, metadata(token));
  open.push(call);
  return new Promise((resolve) => {
    call.once('data', resolve);
    call.on('error', resolve);
  });
}

beforeAll(async () => {
  server = await startLocalServer(dir, capturingLogger('info').log, { config_poll_interval: 200 });
  configs = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure());
});

afterAll(async () => {
  for (const c of open) c.cancel();
  configs?.close();
  await server?.close();
});

describe('a configuration project without a readable commit', () => {
  it('is reported on the open stream when it is a repository without a commit yet: what to commit, with a non-empty commit id', async () => {
    const empty = new ConfigProject(join(dir, 'empty'));
    const { token } = server.agents.register('fresh', empty.dir);
    const first = (await firstAnswer(token)) as ConfigurationResponse;
    expect(first.commit_id).toBe(NO_COMMIT_ID);
    expect(first.commit_id).not.toBe('');
    expect(first.invalid_reason).toBe('the configuration project has no commit on its default branch yet: commit .gitlab/agents/fresh/config.yaml there');
    expect(first.invalid_reason).not.toContain(dir);
  });

  it('ends the stream with FAILED_PRECONDITION when the directory is missing', async () => {
    const { token } = server.agents.register('missing', join(dir, 'nowhere'));
    const end = await firstAnswer(token);
    expect((end as grpc.ServiceError).code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('ends the stream with FAILED_PRECONDITION when the directory is no git repository', async () => {
    const plain = join(dir, 'plain');
    mkdirSync(plain, { recursive: true });
    const { token } = server.agents.register('plain', plain);
    const end = await firstAnswer(token);
    expect((end as grpc.ServiceError).code).toBe(grpc.status.FAILED_PRECONDITION);
  });
});
