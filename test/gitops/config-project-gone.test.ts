import * as grpc from '@grpc/grpc-js';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GitOpsClient } from '../../src/gen/verdict/gitops.js';
import type { RunningServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { VERSION } from '../../src/shared/version.js';
import { agentConfigStream } from '../helpers/config-stream.js';
import { tempDir, until } from '../helpers/processes.js';
import { capturingLogger, startGitopsServer } from './harness.js';

// The configuration project moved (or deleted) on the server's disk: the server up, git failing there. The agent's
// GitOps is refused with NOT_FOUND and what to do (`verdict agents set-project`), not UNAVAILABLE (which the agent
// reports as "server unavailable" and waits out), and the server's poller says the same, not to `git init` a
// directory that is gone. Real server, the agent's own configuration stream, GetObjectsToSynchronize as it calls it.

const root = tempDir('verdict-gitops-project-gone-');
const { log, logs } = capturingLogger('info');
const closers: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

function objects(server: RunningServer, token: string): Promise<grpc.ServiceError> {
  const client = new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure());
  closers.push(() => client.close());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', VERSION);
  return new Promise((resolve, reject) => {
    const call = client.getObjectsToSynchronize({ project_id: '', commit_id: '', paths: [], ref: undefined }, md);
    call.on('data', () => {});
    call.on('error', resolve);
    call.on('end', () => reject(new Error('the stream ended without an error')));
  });
}

const SET_PROJECT =
  "if it moved, point its agents to the new path with `verdict agents set-project <agent> <path>` (`verdict agents list` shows each agent's project), or put it back";

describe('a configuration project moved away on the server', () => {
  it.each([
    ['while the agent runs its configuration', true],
    ['before the agent connected (a restarted server)', false],
  ])('%s: GitOps is refused with NOT_FOUND saying to run verdict agents set-project', async (name, connected) => {
    const dir = join(root, connected ? 'connected' : 'fresh');
    const from = logs.length;
    const { server, config, token } = await startGitopsServer(dir, log, {
      agentConfig: 'gitops:\n  manifest_projects:\n    - {}\n',
      settings: { config_poll_interval: 100 },
    });
    closers.push(() => server.close());
    if (connected) {
      const stream = await agentConfigStream(server, token, createRootLogger({ level: 'silent' }), 60_000);
      closers.push(() => stream.close());
      await until(() => stream.updates[0], 10_000, 'the first configuration');
    }
    const moved = `${config.dir}-moved`;
    renameSync(config.dir, moved);
    const err = await objects(server, token);
    expect(err.code, name).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toContain(`GitOps: configuration project ${config.dir} does not exist (moved or deleted?); ${SET_PROJECT}`);
    expect(err.details).not.toContain('git init');
    if (connected) {
      // The poller of the agent's configuration says the same.
      const polled = await until(
        () => logs.slice(from).find((l) => l.msg === 'Config: failed to read the configuration project'),
        10_000,
        'the poller noticing',
      );
      expect(String(polled.error)).toContain(SET_PROJECT);
      expect(String(polled.error)).not.toContain('git init');
    }
  });
});
