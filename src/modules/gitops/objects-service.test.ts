import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigProject, gitCalls, tempDir } from '../../../test/helpers/processes.js';
import { GitOpsClient } from '../../gen/verdict/gitops.js';
import { startServer, type RunningServer } from '../../server/server.js';
import { SERVER_DEFAULTS } from '../../shared/config/server-config.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { VERSION } from '../../shared/version.js';

// Every GetObjectsToSynchronize checks the agent's config.yaml for two entries
// naming one repository. The configuration is the latest value only: it is read
// once per commit of the configuration project, not on every request.

const dir = tempDir('verdict-gitops-objects-');
let server: RunningServer;
let client: GitOpsClient;
let config: ConfigProject;
let token: string;

/** One request for the configuration project's manifests; resolves with the commit sent, or the refusal. */
function fetchHeader(): Promise<string> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', VERSION);
  const call = client.getObjectsToSynchronize(
    { project_id: '', commit_id: '', paths: [{ path: { $case: 'glob', value: 'manifests/*.yaml' } }], ref: undefined },
    md,
  );
  return new Promise((resolve, reject) => {
    let commit = '';
    call.on('data', (m: { message?: { $case: string; value: { commit_id?: string } } }) => {
      if (m.message?.$case === 'header') commit = m.message.value.commit_id ?? '';
    });
    call.on('end', () => resolve(commit));
    call.on('error', reject);
  });
}

const configReads = (calls: string[]) => calls.filter((c) => c.includes('.gitlab/agents/prod/config.yaml'));

beforeAll(async () => {
  config = new ConfigProject(join(dir, 'config-project'));
  config.commit({
    '.gitlab/agents/prod/config.yaml': 'gitops:\n  manifest_projects:\n    - paths: [{glob: "manifests/*.yaml"}]\n',
    'manifests/cm.yaml': 'kind: ConfigMap\n',
  });
  server = await startServer(
    { ...SERVER_DEFAULTS, data_dir: join(dir, 'server'), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', projects_dir: join(dir, 'projects') },
    createRootLogger({ level: 'silent' }),
  );
  token = server.agents.register('prod', config.dir).token;
  client = new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

describe('GetObjectsToSynchronize', () => {
  it("reads the agent's config.yaml once per configuration-project commit, and again once the commit changes", async () => {
    const first = config.git('rev-parse', 'HEAD');
    const atFirst = await gitCalls(async () => {
      expect(await fetchHeader()).toBe(first);
      expect(await fetchHeader()).toBe(first);
    });
    // ls-tree, then cat-file: one read, for two requests.
    expect(configReads(atFirst)).toHaveLength(2);

    const second = config.commit({ 'manifests/cm.yaml': 'kind: ConfigMap\nmetadata: {name: two}\n' });
    const atSecond = await gitCalls(async () => {
      expect(await fetchHeader()).toBe(second);
      expect(await fetchHeader()).toBe(second);
    });
    expect(configReads(atSecond)).toHaveLength(2);
  });
});
