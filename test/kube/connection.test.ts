// The agent's connection factory (src/agent/kubernetes/connection.ts) against
// a real API server: kubeconfig files as kubectl reads them (KUBECONFIG
// merging, relative paths, CA files and data, client certificates, tokens,
// token files, exec plugins) and a pod's service account, each proven by a
// request the real server authenticates.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConnection, kubernetesConfigured, SERVICE_ACCOUNT_DIR, type KubeConnection } from '../../src/agent/kubernetes/connection.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { apply, installCrds, must, namespace, until, watch } from './policies.js';

let kube: Kube;
beforeAll(async () => {
  kube = await startKube();
  await installCrds(kube);
  await apply(kube, namespace('verdict-agent'));
  await must(kube, ['apply', '-f', 'deploy/agent/agent.yaml']);
  await must(kube, ['create', 'serviceaccount', 'nobody', '-n', 'verdict-agent']);
}, 300_000);
afterAll(async () => {
  await kube?.stop();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

// Scratch files of this file's tests, removed after them.
const scratch = mkdtempSync(join(tmpdir(), 'verdict-kube-conn-'));
const tmp = () => mkdtempSync(join(scratch, 'case-'));
const json = (o: object) => JSON.stringify(o);
/** What to do without credentials: every caller of kubeConnection says its own. */
const ADVICE = 'pass --kubeconfig to the cluster under test';

/** GET through the connection; resolves with the HTTP status and the user the server saw (SelfSubjectReview). */
async function get(conn: KubeConnection, path: string): Promise<number> {
  const { headers, ...tls } = await conn.requestOptions();
  return new Promise((resolve, reject) => {
    // Resolved once the body is read: a kept-alive connection is free for the next request only then.
    const req = request(`${conn.server}${path}`, { ...tls, headers }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function whoami(conn: KubeConnection): Promise<string> {
  const { headers, ...tls } = await conn.requestOptions();
  const body = json({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
  return new Promise((resolve, reject) => {
    const req = request(
      `${conn.server}/apis/authentication.k8s.io/v1/selfsubjectreviews`,
      { ...tls, method: 'POST', headers: { ...headers, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (text += d))
          .on('end', () => {
            if (res.statusCode !== 201) return reject(new Error(`SelfSubjectReview: HTTP ${res.statusCode}: ${text}`));
            resolve((JSON.parse(text) as { status: { userInfo: { username: string } } }).status.userInfo.username);
          });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A kubeconfig in dir for the test's API server with one user (and more cluster fields than server and CA); returns its path. */
function kubeconfigFile(dir: string, user: object, cluster: object = {}): string {
  const file = join(dir, 'kubeconfig');
  writeFileSync(
    file,
    json({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'k',
      clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': kube.caFile, ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'k', context: { cluster: 'c', user: 'u' } }],
    }),
  );
  return file;
}

/** A client certificate from the cluster's client CA, in system:masters: client.key and client.crt in dir. */
function clientCert(dir: string, user: string): void {
  const pki = join(kube.stateDir, 'pki');
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'client.key')]);
  execFileSync('openssl', ['req', '-new', '-key', join(dir, 'client.key'), '-subj', `/CN=${user}/O=system:masters`, '-out', join(dir, 'client.csr')]);
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      join(dir, 'client.csr'),
      '-CA',
      join(pki, 'ca.crt'),
      '-CAkey',
      join(pki, 'ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      join(dir, 'client.crt'),
    ],
    { stdio: 'ignore' },
  );
}

const token = async (sa: string) => (await must(kube, ['create', 'token', sa, '-n', 'verdict-agent'])).trim();
const CNPS = '/apis/cilium.io/v2/ciliumnetworkpolicies';

describe('kubeconfig, as kubectl reads it', () => {
  it('KUBECONFIG lists merge first-wins, as kubectl merges them (the library alone throws on the repeated name)', async () => {
    const dir = tmp();
    const admin = JSON.parse(await must(kube, ['config', 'view', '--raw', '-o', 'json'])) as { clusters: { cluster: Record<string, string> }[] };
    const cluster = admin.clusters[0]!.cluster;
    // a.yaml: the real cluster and user, and no current-context.
    writeFileSync(
      join(dir, 'a.yaml'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c1', cluster }],
        users: [{ name: 'u1', user: { token: kube.adminToken } }],
        contexts: [{ name: 'work', context: { cluster: 'c1', user: 'u1' } }],
      }),
    );
    // b.yaml: the same names pointing elsewhere, and the current-context.
    writeFileSync(
      join(dir, 'b.yaml'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'work',
        clusters: [{ name: 'c1', cluster: { server: 'https://127.0.0.1:1' } }],
        users: [{ name: 'u1', user: { token: 'wrong' } }],
        contexts: [
          { name: 'work', context: { cluster: 'c1', user: 'u1', namespace: 'from-b' } },
          { name: 'other', context: { cluster: 'c1', user: 'u1' } },
        ],
      }),
    );
    const KUBECONFIG = `${join(dir, 'a.yaml')}:${join(dir, 'missing.yaml')}:${join(dir, 'b.yaml')}`;
    const view = spawnSync(join(kube.binDir, 'kubectl'), ['config', 'view', '--minify', '--raw', '-o', 'json'], {
      env: { ...process.env, KUBECONFIG, KUBERC: 'off' },
      encoding: 'utf8',
    });
    expect(view.status, view.stderr).toBe(0);
    const kubectlSees = JSON.parse(view.stdout) as {
      clusters: { cluster: { server: string } }[];
      users: { user: { token: string } }[];
      contexts: { context: { namespace?: string } }[];
    };
    const conn = kubeConnection({ env: { KUBECONFIG }, noCredentials: ADVICE });
    expect(conn.server).toBe(kubectlSees.clusters[0]!.cluster.server);
    expect(conn.server).toBe(kube.server);
    expect((await conn.requestOptions()).headers.Authorization).toBe(`Bearer ${kubectlSees.users[0]!.user.token}`);
    expect(conn.namespace).toBe(kubectlSees.contexts[0]!.context.namespace);
    expect(await whoami(conn)).toBe('verdict-admin');
    // --kubeconfig is one file and KUBECONFIG is then ignored, as with kubectl.
    expect(kubeConnection({ kubeconfig: kube.kubeconfig, env: { KUBECONFIG } }).source).toBe(`kubeconfig ${kube.kubeconfig} (context verdict)`);
  });

  it('client certificates and a CA file, by paths relative to the kubeconfig', async () => {
    const dir = tmp();
    clientCert(dir, 'cert-user');
    writeFileSync(join(dir, 'ca.crt'), readFileSync(kube.caFile));
    writeFileSync(
      join(dir, 'kubeconfig'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'cert',
        clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': 'ca.crt' } }],
        users: [{ name: 'cert-user', user: { 'client-certificate': 'client.crt', 'client-key': 'client.key' } }],
        contexts: [{ name: 'cert', context: { cluster: 'c', user: 'cert-user' } }],
      }),
    );
    const conn = kubeConnection({ kubeconfig: join(dir, 'kubeconfig') });
    expect(await whoami(conn)).toBe('cert-user');
    expect(await get(conn, CNPS)).toBe(200);
  });

  it('a tokenFile relative to the kubeconfig is read again for each request', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'token'), await token('nobody'));
    writeFileSync(
      join(dir, 'kubeconfig'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'sa',
        clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': kube.caFile } }],
        users: [{ name: 'sa', user: { tokenFile: 'token' } }],
        contexts: [{ name: 'sa', context: { cluster: 'c', user: 'sa' } }],
      }),
    );
    const conn = kubeConnection({ kubeconfig: join(dir, 'kubeconfig') });
    expect(await whoami(conn)).toBe('system:serviceaccount:verdict-agent:nobody');
    writeFileSync(join(dir, 'token'), await token('verdict-agent'));
    expect(await whoami(conn)).toBe('system:serviceaccount:verdict-agent:verdict-agent');
  });

  it('an exec plugin runs for the first request and again once its credential has expired; relative command and KUBERNETES_EXEC_INFO as kubectl', async () => {
    const dir = tmp();
    const plugin = join(dir, 'plugin.sh');
    // Counts its runs and keeps what it was told; the credential expires 2 s after it is issued.
    writeFileSync(
      plugin,
      `#!/bin/sh\necho run >> "${join(dir, 'runs')}"\nprintf '%s' "$KUBERNETES_EXEC_INFO" > "${join(dir, 'info.json')}"\nexp=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}' "$TOKEN" "$exp"\n`,
    );
    chmodSync(plugin, 0o755);
    const file = kubeconfigFile(dir, {
      exec: {
        apiVersion: 'client.authentication.k8s.io/v1',
        // Relative with a slash: to the kubeconfig's directory, not the working directory.
        command: './plugin.sh',
        provideClusterInfo: true,
        env: [{ name: 'TOKEN', value: await token('verdict-agent') }],
        interactiveMode: 'Never',
      },
    });
    const conn = kubeConnection({ kubeconfig: file });
    const runs = () => readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length;
    expect(await whoami(conn)).toBe('system:serviceaccount:verdict-agent:verdict-agent');
    expect(await get(conn, CNPS)).toBe(200);
    expect(runs()).toBe(1);
    const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
      apiVersion: string;
      spec: { interactive: boolean; cluster: Record<string, string> };
    };
    expect(info.apiVersion).toBe('client.authentication.k8s.io/v1');
    expect(info.spec.interactive).toBe(false);
    expect(info.spec.cluster.server).toBe(kube.server);
    expect(info.spec.cluster['certificate-authority-data']).toBe(readFileSync(kube.caFile).toString('base64'));
    await new Promise((r) => setTimeout(r, 2500));
    expect(await get(conn, CNPS)).toBe(200);
    expect(runs()).toBe(2);
  });

  it('an exec plugin that answers with a client certificate: requests go as its user, with one pooled agent for the credential', async () => {
    const dir = tmp();
    clientCert(dir, 'exec-cert-user');
    const plugin = join(dir, 'plugin.sh');
    // ExecCredential's status.clientCertificateData and clientKeyData: PEM, as kubectl takes them.
    writeFileSync(
      plugin,
      `#!/bin/sh\nnode -e 'const fs=require("fs");process.stdout.write(JSON.stringify({apiVersion:"client.authentication.k8s.io/v1",kind:"ExecCredential",status:{clientCertificateData:fs.readFileSync(process.argv[1],"utf8"),clientKeyData:fs.readFileSync(process.argv[2],"utf8")}}))' "${join(dir, 'client.crt')}" "${join(dir, 'client.key')}"\n`,
    );
    chmodSync(plugin, 0o755);
    const conn = kubeConnection({
      kubeconfig: kubeconfigFile(dir, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, interactiveMode: 'Never' } }),
    });
    expect(await whoami(conn)).toBe('exec-cert-user');
    expect(await get(conn, CNPS)).toBe(200);
    // The same credential is the same TLS material: the pool's agent, and so its connections, are shared.
    const a = await conn.requestOptions();
    const b = await conn.requestOptions();
    expect(a.agent).toBeDefined();
    expect(b.agent).toBe(a.agent);
  });

  it('a proxy-url: requests go through the HTTP proxy by CONNECT, over kept-alive tunnels', async () => {
    // A forward proxy as corporate networks run them: CONNECT host:port, then bytes both ways.
    const connects: string[] = [];
    const tunnels = new Set<Socket>();
    const proxy = createHttpServer();
    proxy.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
      connects.push(req.url ?? '');
      tunnels.add(client);
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connectTcp(Number(port), host!, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) upstream.write(head);
        upstream.pipe(client).pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const dir = tmp();
      const file = kubeconfigFile(dir, { token: kube.adminToken }, { 'proxy-url': `http://127.0.0.1:${(proxy.address() as { port: number }).port}` });
      const conn = kubeConnection({ kubeconfig: file });
      expect(await get(conn, CNPS)).toBe(200);
      expect(await whoami(conn)).toBe('verdict-admin');
      // Both requests went through one tunnel: the pool keeps the proxied connection alive.
      expect(connects).toEqual([new URL(kube.server).host]);
    } finally {
      // The pool keeps its tunnels open; the proxy lets go of them only when they close.
      for (const t of tunnels) t.destroy();
      await new Promise((r) => proxy.close(r));
    }
  });

  it('an exec credential the server rejects (401) before its expiry is fetched again: the policy watch recovers', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'current'), 'revoked-token');
    const plugin = join(dir, 'plugin.sh');
    // The credential claims an hour of validity; the server refuses it at once.
    writeFileSync(
      plugin,
      `#!/bin/sh\necho run >> "${join(dir, 'runs')}"\nexp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}' "$(cat "${join(dir, 'current')}")" "$exp"\n`,
    );
    chmodSync(plugin, 0o755);
    writeFileSync(
      join(dir, 'kubeconfig'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'exec',
        clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': kube.caFile } }],
        users: [{ name: 'e', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin } } }],
        contexts: [{ name: 'exec', context: { cluster: 'c', user: 'e' } }],
      }),
    );
    const w = watch(join(dir, 'kubeconfig'), { kinds: ['CiliumNetworkPolicy'] });
    try {
      const err = await until(() => w.logs.find((l) => l.level === 'error'), 'the 401');
      expect(String(err.obj.error)).toMatch(/HTTP 401 Unauthorized/);
      // The plugin now hands out a good token; the cached one would be used for an hour.
      writeFileSync(join(dir, 'current'), await token('verdict-agent'));
      expect(await w.watcher.waitReady(10_000)).toBe(true);
    } finally {
      await w.stop();
    }
  });

  it('an exec plugin that fails is named with its user', async () => {
    const dir = tmp();
    writeFileSync(
      join(dir, 'kubeconfig'),
      json({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'exec',
        clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': kube.caFile } }],
        users: [
          {
            name: 'e',
            user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh', args: ['-c', 'echo "login expired: run my-login" >&2; exit 1'] } },
          },
        ],
        contexts: [{ name: 'exec', context: { cluster: 'c', user: 'e' } }],
      }),
    );
    await expect(kubeConnection({ kubeconfig: join(dir, 'kubeconfig') }).requestOptions()).rejects.toThrow(
      /cannot get credentials for user "e": login expired: run my-login/,
    );
  });

  it('says what to do when the kubeconfig has no usable context', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'none'), json({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
    expect(() => kubeConnection({ kubeconfig: join(dir, 'none') })).toThrow(/sets no current-context; set one with: kubectl config use-context/);
    writeFileSync(join(dir, 'dangling'), json({ apiVersion: 'v1', kind: 'Config', 'current-context': 'gone', clusters: [], users: [], contexts: [] }));
    expect(() => kubeConnection({ kubeconfig: join(dir, 'dangling') })).toThrow(/current-context "gone" is not among its contexts/);
    expect(() => kubeConnection({ kubeconfig: join(dir, 'absent') })).toThrow(/cannot load the kubeconfig .*absent \(--kubeconfig\)/);
    expect(() => kubeConnection({ env: { KUBECONFIG: join(dir, 'absent') }, noCredentials: ADVICE })).toThrow(/none of the files in KUBECONFIG/);
    expect(() => kubeConnection({ env: { HOME: dir }, noCredentials: ADVICE })).toThrow(
      /not running in a pod .*; pass --kubeconfig to the cluster under test$/,
    );
  });
});

describe('in a pod: the service account mount', () => {
  function podMount(): { prefix: string; dir: string; env: NodeJS.ProcessEnv } {
    const prefix = tmp();
    const dir = join(prefix, SERVICE_ACCOUNT_DIR);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'ca.crt'), readFileSync(kube.caFile));
    writeFileSync(join(dir, 'namespace'), 'verdict-agent');
    const port = new URL(kube.server).port;
    return { prefix, dir, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port } };
  }

  it('uses KUBERNETES_SERVICE_HOST/PORT, the CA and the token, and reads a rotated token at the next request (the library alone waits a minute)', async () => {
    const { prefix, dir, env } = podMount();
    writeFileSync(join(dir, 'token'), await token('nobody'));
    expect(kubernetesConfigured({ env })).toBe(true);
    const conn = kubeConnection({ env, pathPrefix: prefix, noCredentials: ADVICE });
    expect(conn.source).toBe('in-cluster service account');
    expect(conn.namespace).toBe('verdict-agent');
    expect(await get(conn, CNPS)).toBe(403);
    // kubelet rotates the projected token in place.
    writeFileSync(join(dir, 'token'), await token('verdict-agent'));
    expect(await get(conn, CNPS)).toBe(200);
  });

  it('says which file is missing when the token is not mounted', () => {
    const { prefix, env } = podMount();
    expect(() => kubeConnection({ env, pathPrefix: prefix, noCredentials: ADVICE })).toThrow(
      /serviceaccount\/token is missing; mount the service account token \(automountServiceAccountToken: true\)/,
    );
  });

  it('auto watches only when told where Kubernetes is', () => {
    expect(kubernetesConfigured({ env: {} })).toBe(false);
    expect(kubernetesConfigured({ env: { KUBECONFIG: ':' } })).toBe(false);
    expect(kubernetesConfigured({ env: { KUBECONFIG: '/x' } })).toBe(true);
    expect(kubernetesConfigured({ env: {}, kubeconfig: '/x' })).toBe(true);
  });
});
