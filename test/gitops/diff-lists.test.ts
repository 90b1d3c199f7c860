import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/gitops.js';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi } from '../../src/modules/gitops/kube/api.js';
import { Discovery } from '../../src/modules/gitops/kube/discovery.js';
import { synchronize } from '../../src/modules/gitops/sync.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { ConfigProject, tempDir } from '../helpers/processes.js';
import { defaultsForTest } from './sync-defaults.js';

// `verdict gitops diff` of a Deployment against a real API server: a change
// inside one container (its image, an env var added) shows as that field of
// that container, matched by name as strategic merge matches it, not as the
// whole containers list removed and added.

const dir = tempDir('verdict-gitops-diff-lists-');
let kube: Kube;
let app: ConfigProject;

const deployment = (appImage: string, env: string) =>
  `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: ${appImage}
          args: [serve, --port, "8080"]
          env: [${env}]
          ports: [{name: http, containerPort: 8080}]
        - name: sidecar
          image: busybox:1.36
          env: [{name: MODE, value: tail}]
`;

beforeAll(async () => {
  kube = await startKube();
  await kube.kubectl(['create', 'namespace', 'web']);
  mkdirSync(join(dir, 'projects', 'group'), { recursive: true });
  app = new ConfigProject(join(dir, 'projects', 'group', 'web'));
  const first = deployment('nginx:1.25', '{name: LEVEL, value: info}');
  app.commit({ 'deploy.yaml': first });
  const api = new KubeApi({
    server: kube.server,
    requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
  });
  await synchronize(
    [{ source: 'deploy.yaml', data: Buffer.from(first) }],
    'c1',
    { ...defaultsForTest, defaultNamespace: 'web' },
    { api, discovery: new Discovery(api), inventory: inventoryRef('edge', 'group/web', 'web') },
  );
  api.close();
}, 300_000);

afterAll(async () => {
  await kube?.stop();
});

/** `verdict gitops diff` of group/web at HEAD: its exit status and what it printed. */
async function diff(): Promise<{ code: number; text: string }> {
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out.push(String(s));
    return true;
  });
  try {
    const code = await run(['diff', '--project', 'group/web', '--projects-dir', join(dir, 'projects'), '--namespace', 'web', '--kubeconfig', kube.kubeconfig]);
    return { code, text: out.join('') };
  } finally {
    spy.mockRestore();
  }
}

/** The lines under the Deployment's configure line. */
const changesOf = (text: string) => {
  const m = /^configure apps\/Deployment web\/web {2}\(deploy\.yaml#1\)\n((?: {4}.*\n)*)/m.exec(text);
  expect(m, text).not.toBeNull();
  return m![1]!.split('\n').filter(Boolean);
};

describe('verdict gitops diff of lists', () => {
  it("shows a container's new image as that container's field", async () => {
    app.commit({ 'deploy.yaml': deployment('nginx:1.27', '{name: LEVEL, value: info}') });
    const { code, text } = await diff();
    expect(changesOf(text)).toEqual(['    spec.template.spec.containers[name=app].image: "nginx:1.25" -> "nginx:1.27"']);
    expect(text).toContain('Summary: 0 to create, 1 to configure, 0 unchanged, 0 to prune, 0 kept on removal, 0 failed');
    expect(code).toBe(1);
  });

  it('shows an env var added as that variable, a changed one and a changed arg as their fields', async () => {
    app.commit({ 'deploy.yaml': deployment('nginx:1.25', '{name: LEVEL, value: debug}, {name: REGION, value: eu}').replace('"8080"]', '"9090"]') });
    const { code, text } = await diff();
    expect(changesOf(text)).toEqual([
      '    spec.template.spec.containers[name=app].args[2]: "8080" -> "9090"',
      '    spec.template.spec.containers[name=app].env[name=LEVEL].value: "info" -> "debug"',
      '    spec.template.spec.containers[name=app].env[name=REGION]: (none) -> {"name":"REGION","value":"eu"}',
    ]);
    expect(text).not.toContain('sidecar');
    expect(code).toBe(1);
  });

  it('exits 0 and prints no change when the manifest is what the cluster holds', async () => {
    app.commit({ 'deploy.yaml': deployment('nginx:1.25', '{name: LEVEL, value: info}') });
    const { code, text } = await diff();
    expect(text).toContain('unchanged apps/Deployment web/web  (deploy.yaml#1)\n');
    expect(code).toBe(0);
  });
});
