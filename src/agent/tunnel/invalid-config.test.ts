import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { ConfigProject, tempDir, until } from '../../../test/helpers/processes.js';
import { AgentConfigurationClient } from '../../gen/verdict/agent.js';
import { agentConfigStream, startLocalServer } from '../../../test/helpers/config-stream.js';
import type { RunningServer } from '../../server/server.js';
import { VERSION } from '../../shared/version.js';
import type { ConfigUpdate } from './config-client.js';

// An invalid commit of config.yaml does not cost the agent its stream: the
// server reports it on the open stream, the agent logs it once and keeps its
// last good configuration, and the fix arrives with the server's next poll,
// not after the agent's reconnect backoff (a minute here, so only the open
// stream can bring it in time). An agent that does not ask for the report (an
// older one) has the stream ended with FAILED_PRECONDITION, as before.

const file = '.gitlab/agents/edge/config.yaml';
const level = (l: string) => ({ [file]: `observability:\n  logging:\n    level: ${l}\n` });

describe('an invalid config.yaml commit, then a fixed one', () => {
  const dir = tempDir('verdict-invalid-config-');
  const project = new ConfigProject(join(dir, 'config'));
  const good = project.commit(level('info'));
  const agentLog = capturingLogger();
  const serverLog = capturingLogger();
  let updates: ConfigUpdate[] = [];
  let server: RunningServer;
  let admin: string;
  let token: string;
  let stream: Awaited<ReturnType<typeof agentConfigStream>>;

  beforeAll(async () => {
    server = await startLocalServer(dir, serverLog.log, { config_poll_interval: 100 });
    admin = server.tokens.create('ops', 'admin').token;
    ({ token } = server.agents.register('edge', project.dir));
    stream = await agentConfigStream(server, token, agentLog.log, 60_000);
    updates = stream.updates;
  });
  afterAll(async () => {
    await stream?.close();
    await server?.close();
  });

  const listed = async () => {
    const res = await fetch(`http://${server.httpAddress}/api/v1/agents`, { headers: { authorization: `Bearer ${admin}` } });
    const body = (await res.json()) as { agents: { name: string; config: { commit_id: string; invalid?: { commit_id: string; error: string } } }[] };
    return body.agents.find((a) => a.name === 'edge')!.config;
  };
  const invalidLines = () => agentLog.logs.filter((l) => l.msg === 'Config: the new configuration is invalid; keeping the last good configuration');

  it('reaches the connected agent with the next poll, and the agent logs the invalid commit once', async () => {
    await until(() => updates.length === 1 || undefined, 10_000, 'the first configuration');
    expect(updates[0]!.commitId).toBe(good);

    const bad = project.commit(level('loud'));
    await until(() => invalidLines().length === 1 || undefined, 10_000, 'the agent logging the invalid commit');
    expect(invalidLines()[0]).toMatchObject({ level: 'error', commit_id: bad });
    expect(String(invalidLines()[0]!.error)).toContain(`${file}:3: observability.logging.level: must be one of`);
    const status = await listed();
    expect(status).toMatchObject({ commit_id: good, invalid: { commit_id: bad } });
    expect(status.invalid?.error).toContain(`${file}:3: observability.logging.level`);

    // A reconnect (a clean end of the stream, redialled at once) brings the invalid commit again: not logged again.
    expect(server.streams.endConfigStreams('edge', 'another project')).toBe(1);
    await until(() => server.streams.configStreamAgents().includes('edge') || undefined, 10_000, 'the agent reconnecting');
    const serverInvalid = () => serverLog.logs.filter((l) => l.msg === 'Config: invalid configuration; the agent keeps its last good one');
    await until(() => serverInvalid().length === 2 || undefined, 10_000, 'the invalid commit sent on the new stream');

    const fixed = project.commit(level('debug'));
    await until(() => updates.length === 2 || undefined, 10_000, 'the fixed configuration');
    expect(updates[1]).toMatchObject({ commitId: fixed, config: { observability: { logging: { level: 'debug' } } } });
    expect(updates.map((u) => u.commitId)).toEqual([good, fixed]);
    expect(invalidLines()).toHaveLength(1);
    // The stream never ended with an error: no backoff was logged.
    expect(agentLog.logs.filter((l) => 'retry_in_ms' in l)).toEqual([]);
    expect(await listed()).toMatchObject({ commit_id: fixed });
    expect((await listed()).invalid).toBeUndefined();

    // HEAD back to the invalid commit (a reset, a force-push) after a valid one: logged again.
    project.git('reset', '-q', '--hard', bad);
    await until(() => invalidLines().length === 2 || undefined, 10_000, 'the agent logging the invalid commit again');
    expect(invalidLines()[1]).toMatchObject({ commit_id: bad });
    project.git('reset', '-q', '--hard', fixed);
  });

  it('ends the stream with FAILED_PRECONDITION for an agent that does not ask for invalid commits on the stream', async () => {
    project.commit(level('loud'));
    await until(async () => (await listed()).invalid !== undefined || undefined, 10_000, 'the invalid commit');
    const client = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    md.set('verdict-version', VERSION);
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.getConfiguration({ commit_id: updates.at(-1)!.commitId, agent_meta: undefined, invalid_in_stream: false }, md);
      call.on('data', () => undefined);
      call.on('error', resolve);
    });
    client.close();
    expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error.details).toMatch(/^invalid configuration at commit [0-9a-f]{12}: .*observability\.logging\.level/);
  });
});
