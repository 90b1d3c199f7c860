import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseAgentConfig } from '../../src/server/config/agent-config.js';
import { parseYamlConfig } from '../../src/shared/config/schema.js';
import { serverConfigSchema } from '../../src/shared/config/server-config.js';
import { REPO, verdictSync } from '../helpers/processes.js';

// deploy/ must parse and agree with the CLI: every flag a manifest passes must
// be one the command's --help lists, and embedded config files must validate.

interface Container {
  name: string;
  args?: string[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet: { path: string; port: string | number } };
  readinessProbe?: { httpGet: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string }[];
  env?: { name: string; value?: string }[];
}

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: {
    template?: {
      spec: {
        containers: Container[];
        serviceAccountName?: string;
        securityContext?: { runAsUser?: number; fsGroup?: number };
        volumes?: { name: string; secret?: { secretName: string }; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string } }[];
      };
    };
    ports?: { name: string; port: number; targetPort: string | number }[];
    /** A Service's selector, or a Deployment's { matchLabels }. */
    selector?: Record<string, string> | { matchLabels: Record<string, string> };
  };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  roleRef?: { apiGroup?: string; kind?: string; name: string };
  subjects?: { kind: string; name: string; namespace: string }[];
}

const flag = (args: string[], name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** The volume mounted at the directory holding path, and the rest of the path below it. */
function mountOf(d: K8sObject, path: string) {
  const pod = d.spec!.template!.spec;
  const m = pod.containers[0]!.volumeMounts!.filter((v) => path === v.mountPath || path.startsWith(`${v.mountPath}/`)).sort(
    (a, b) => b.mountPath.length - a.mountPath.length,
  )[0];
  expect(m, `${path} is not on a mounted volume`).toBeDefined();
  return { volume: pod.volumes!.find((v) => v.name === m!.name)!, rest: path.slice(m!.mountPath.length + 1) };
}

function load(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) expect(d.errors, `${file}: ${d.errors.map((e) => e.message).join('; ')}`).toEqual([]);
  return docs.map((d) => d.toJS() as K8sObject).filter(Boolean);
}

const manifests = ['deploy/agent/agent.yaml', 'deploy/server/server.yaml'];

describe('deploy manifests', () => {
  const helpCache = new Map<string, string>();
  const help = (cmd: string) => {
    if (!helpCache.has(cmd)) helpCache.set(cmd, verdictSync([cmd, '--help']));
    return helpCache.get(cmd)!;
  };

  it.each(manifests)('%s parses and passes only flags the CLI knows', (file) => {
    const objs = load(join(REPO, file));
    const deployments = objs.filter((o) => o.kind === 'Deployment');
    expect(deployments.length).toBeGreaterThan(0);
    for (const d of deployments) {
      // The image runs as node (uid 1000, deploy/Dockerfile); its volumes must be writable for it.
      expect(readFileSync(join(REPO, 'deploy/Dockerfile'), 'utf8')).toMatch(/^USER node$/m);
      expect(d.spec!.template!.spec.securityContext).toMatchObject({ runAsUser: 1000, fsGroup: 1000 });
      for (const c of d.spec!.template!.spec.containers) {
        const [cmd, ...args] = c.args ?? [];
        expect(['agent', 'server']).toContain(cmd);
        for (const a of args) {
          const flag = /^(--[a-z-]+)/.exec(a)?.[1];
          expect(flag, `${file}: ${a}`).toBeDefined();
          expect(help(cmd!), `${file}: ${flag} is not a flag of verdict ${cmd}`).toContain(`${flag} `);
        }
      }
    }
  });

  it('runs the agent with the flags operators of the original know', () => {
    const objs = load(join(REPO, 'deploy/agent/agent.yaml'));
    const args = objs.find((o) => o.kind === 'Deployment')!.spec!.template!.spec.containers[0]!.args!;
    expect(args.some((a) => a.startsWith('--kas-address=grpc'))).toBe(true);
    expect(args.some((a) => a.startsWith('--token-file='))).toBe(true);
    expect(objs.map((o) => o.kind)).toEqual(expect.arrayContaining(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment']));
    // The token Secret is the operator's (kubectl create secret): a Secret in the file
    // would replace the real token with its placeholder on every apply and upgrade.
    expect(objs.map((o) => o.kind)).not.toContain('Secret');
    // RBAC: listing and watching network policies only, all the policy watch does
    // (test/kube/policy-watch.test.ts proves against the real API server that each is needed).
    const role = objs.find((o) => o.kind === 'ClusterRole')!;
    expect(new Set(role.rules!.flatMap((r) => r.verbs))).toEqual(new Set(['list', 'watch']));
  });

  it('wires the agent Deployment to its Secret, volumes, RBAC and probes, and points it at the server Service', () => {
    const agent = load(join(REPO, 'deploy/agent/agent.yaml'));
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const d = agent.find((o) => o.kind === 'Deployment')!;
    const c = d.spec!.template!.spec.containers[0]!;
    const args = c.args!;
    // --token-file is the key of the token Secret, mounted from it; the header's
    // command creates that Secret, with that key, in the Deployment's namespace.
    const token = mountOf(d, flag(args, 'token-file')!);
    const secretName = token.volume.secret!.secretName;
    const header = readFileSync(join(REPO, 'deploy/agent/agent.yaml'), 'utf8').split(/^apiVersion:/m)[0]!;
    expect(header).toContain(`kubectl -n ${d.metadata.namespace} create secret generic ${secretName} --from-literal=${token.rest}=<token>`);
    // ...after the apply that creates the namespace, and after registering the agent in the server pod.
    expect(header.indexOf('kubectl apply -f deploy/agent/agent.yaml')).toBeGreaterThan(header.indexOf('agents register'));
    expect(header.indexOf('create secret generic')).toBeGreaterThan(header.indexOf('kubectl apply -f deploy/agent/agent.yaml'));
    // --data-dir (the spool) is on a persistent volume.
    const spool = mountOf(d, flag(args, 'data-dir')!);
    expect(agent.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === spool.volume.persistentVolumeClaim?.claimName)).toBe(true);
    // The pod runs as the ServiceAccount the ClusterRole is bound to, and that role only reads network policies.
    const sa = agent.find((o) => o.kind === 'ServiceAccount')!;
    expect(d.spec!.template!.spec.serviceAccountName).toBe(sa.metadata.name);
    const binding = agent.find((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name === 'verdict-agent-policy-reader')!;
    const role = agent.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'verdict-agent-policy-reader')!;
    expect(binding.roleRef!.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    // Besides it, the CI tunnel's impersonate role (test/ci-tunnel/rbac.test.ts), bound to the same ServiceAccount.
    expect(
      agent
        .filter((o) => /Role/.test(o.kind))
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .sort(),
    ).toEqual([
      'ClusterRole/verdict-agent-gitops',
      'ClusterRole/verdict-agent-impersonate',
      'ClusterRole/verdict-agent-policy-reader',
      'ClusterRoleBinding/verdict-agent-gitops',
      'ClusterRoleBinding/verdict-agent-impersonate',
      'ClusterRoleBinding/verdict-agent-policy-reader',
    ]);
    const impersonate = agent.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'verdict-agent-impersonate')!;
    expect(new Set(impersonate.rules!.flatMap((r) => r.verbs))).toEqual(new Set(['impersonate']));
    expect(new Set(role.rules!.flatMap((r) => r.resources))).toEqual(new Set(['ciliumnetworkpolicies', 'ciliumclusterwidenetworkpolicies', 'networkpolicies']));
    // GitOps writes what its manifests hold: the original's grant (every verb it uses on every kind), bound cluster-wide...
    const gitops = agent.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'verdict-agent-gitops')!;
    expect(gitops.rules).toEqual([{ apiGroups: ['*'], resources: ['*'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] }]);
    const gitopsBinding = agent.find((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name === 'verdict-agent-gitops')!;
    expect(gitopsBinding.roleRef!.name).toBe(gitops.metadata.name);
    expect(gitopsBinding.subjects).toEqual(binding.subjects);
    // ...or narrowed: the same role bound per namespace (no namespace in the file: kubectl apply -n <ns>).
    const narrowed = load(join(REPO, 'deploy/agent/gitops-namespace.yaml'));
    expect(narrowed.map((o) => `${o.kind}/${o.metadata.name}/${o.metadata.namespace ?? ''}`)).toEqual(['RoleBinding/verdict-agent-gitops/']);
    expect(narrowed[0]!.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: gitops.metadata.name });
    expect(narrowed[0]!.subjects).toEqual(binding.subjects);
    // Probes hit the --observability-addr port.
    const obsPort = Number(/:(\d+)$/.exec(flag(args, 'observability-addr')!)![1]);
    for (const probe of [c.livenessProbe!, c.readinessProbe!]) {
      expect(c.ports!.find((p) => p.name === probe.httpGet.port || p.containerPort === probe.httpGet.port)!.containerPort).toBe(obsPort);
    }
    expect([c.livenessProbe!.httpGet.path, c.readinessProbe!.httpGet.path]).toEqual(['/healthz', '/readyz']);
    // --kas-address names the server Service and its gRPC port, which reaches the server's grpc_addr.
    const kas = new URL(flag(args, 'kas-address')!);
    const svc = server.find((o) => o.kind === 'Service')!;
    expect(kas.protocol).toBe('grpc:');
    expect(kas.hostname.split('.').slice(0, 3)).toEqual([svc.metadata.name, svc.metadata.namespace, 'svc']);
    const grpcPort = svc.spec!.ports!.find((p) => p.port === Number(kas.port));
    expect(grpcPort, `the server Service has no port ${kas.port}`).toBeDefined();
    const sd = server.find((o) => o.kind === 'Deployment')!;
    const sc = sd.spec!.template!.spec.containers[0]!;
    const cfg = server.find((o) => o.kind === 'ConfigMap')!.data!['server.yaml']!;
    const serverCfg = parseYamlConfig(cfg, 'server.yaml', serverConfigSchema).value;
    expect(sc.ports!.find((p) => p.name === grpcPort!.targetPort)?.containerPort).toBe(Number(/:(\d+)$/.exec(serverCfg.grpc_addr)![1]));
  });

  it('wires the server Deployment to its config, SQLite volume and Service', () => {
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const d = server.find((o) => o.kind === 'Deployment')!;
    const c = d.spec!.template!.spec.containers[0]!;
    // --config is the ConfigMap's key, mounted from it.
    const config = mountOf(d, flag(c.args!, 'config')!);
    const cm = server.find((o) => o.kind === 'ConfigMap')!;
    expect(config.volume.configMap?.name).toBe(cm.metadata.name);
    const cfg = parseYamlConfig(cm.data![config.rest]!, config.rest, serverConfigSchema).value;
    // data_dir (SQLite) is on a persistent volume.
    const data = mountOf(d, cfg.data_dir);
    expect(server.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === data.volume.persistentVolumeClaim?.claimName)).toBe(true);
    // Both listeners listen on all interfaces, on the ports the Service targets.
    const svc = server.find((o) => o.kind === 'Service')!;
    expect(svc.spec!.selector).toEqual((d.spec!.selector as { matchLabels: Record<string, string> }).matchLabels);
    for (const addr of [cfg.http_addr, cfg.grpc_addr]) {
      const [host, port] = [addr.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(addr)![1])];
      expect(host).toBe('0.0.0.0');
      const named = c.ports!.find((p) => p.containerPort === port)!;
      expect(named, `no containerPort ${port}`).toBeDefined();
      expect(svc.spec!.ports!.some((p) => p.targetPort === named.name || p.targetPort === port)).toBe(true);
    }
    expect(c.readinessProbe!.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe!.httpGet.path).toBe('/healthz');
    // git reads configuration projects owned by another user (safe.directory, global config only).
    const gitconfig = mountOf(d, c.env!.find((e) => e.name === 'GIT_CONFIG_GLOBAL')!.value!);
    expect(gitconfig.volume.configMap?.name).toBe(cm.metadata.name);
    expect(cm.data![gitconfig.rest]).toMatch(/^\[safe\]\n\s+directory = \S+/);
  });

  it('embeds a server config that validates', () => {
    const cm = load(join(REPO, 'deploy/server/server.yaml')).find((o) => o.kind === 'ConfigMap')!;
    expect(parseYamlConfig(cm.data!['server.yaml']!, 'server.yaml', serverConfigSchema).value.grpc_addr).toBe('0.0.0.0:8150');
  });

  it('ships example configs that validate', () => {
    const dir = join(REPO, 'deploy/examples');
    expect(readdirSync(dir).sort()).toEqual(['agent-config.yaml', 'server.yaml']);
    expect(parseAgentConfig(readFileSync(join(dir, 'agent-config.yaml'), 'utf8'), 'agent-config.yaml').warnings).toEqual([]);
    parseYamlConfig(readFileSync(join(dir, 'server.yaml'), 'utf8'), 'server.yaml', serverConfigSchema);
  });
  it('registers agents inside the server pod with a command that matches the image and the server Deployment', () => {
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const d = server.find((o) => o.kind === 'Deployment')!;
    const c = d.spec!.template!.spec.containers[0]!;
    const dockerfile = readFileSync(join(REPO, 'deploy/Dockerfile'), 'utf8');
    const entrypoint = (JSON.parse(/^ENTRYPOINT (.+)$/m.exec(dockerfile)![1]!) as string[]).join(' ');
    const projects = c.volumeMounts!.find((m) => m.name === 'projects')!.mountPath;
    const cmd = `kubectl -n ${d.metadata.namespace} exec deploy/${d.metadata.name} -- ${entrypoint}`;
    for (const file of ['deploy/agent/agent.yaml', 'deploy/server/server.yaml', 'README.md']) {
      const text = readFileSync(join(REPO, file), 'utf8').replace(/\s*\\\n[#\s]*/g, ' ');
      expect(text, file).toContain(`${cmd} agents register <name> --config-project ${projects}/<repo> --config ${flag(c.args!, 'config')}`);
    }
    expect(help('agents')).toContain('--config <file>');
  });

  it('sets projects_dir to the mounted projects volume, so a gitops id: group/app resolves out of the box', () => {
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const d = server.find((o) => o.kind === 'Deployment')!;
    const cm = server.find((o) => o.kind === 'ConfigMap')!;
    const cfg = parseYamlConfig(cm.data!['server.yaml']!, 'server.yaml', serverConfigSchema).value;
    expect(cfg.projects_dir).toBeDefined();
    expect(mountOf(d, `${cfg.projects_dir}/group/app`).volume.name).toBe('projects');
  });

  it('carries the CI tunnel: the server Deployment and Service name the kubernetes_api port the docs use', () => {
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const c = server.find((o) => o.kind === 'Deployment')!.spec!.template!.spec.containers[0]!;
    const svc = server.find((o) => o.kind === 'Service')!;
    const docPort = Number(/^\s+listen: 0\.0\.0\.0:(\d+)/m.exec(readFileSync(join(REPO, 'docs/ci-tunnel.md'), 'utf8'))![1]);
    expect(docPort).toBe(8154);
    const named = c.ports!.find((p) => p.containerPort === docPort);
    expect(named?.name).toBe('kubernetes-api');
    expect(svc.spec!.ports).toContainEqual({ name: 'kubernetes-api', port: docPort, targetPort: 'kubernetes-api' });
  });

  it('turning the CI tunnel on in deploy/server-tls changes only the ConfigMap, so its comment and docs/ci-tunnel.md restart the server Deployment', () => {
    const server = load(join(REPO, 'deploy/server/server.yaml'));
    const d = server.find((o) => o.kind === 'Deployment')!;
    // The server reads its config at start, and nothing in the pod template names the ConfigMap's content.
    const restart = `kubectl -n ${d.metadata.namespace} rollout restart deploy/${d.metadata.name}`;
    const tls = readFileSync(join(REPO, 'deploy/server-tls/kustomization.yaml'), 'utf8');
    expect(tls.indexOf(restart)).toBeGreaterThan(tls.indexOf('uncomment kubernetes_api'));
    const doc = readFileSync(join(REPO, 'docs/ci-tunnel.md'), 'utf8');
    expect(doc.indexOf(restart)).toBeGreaterThan(doc.indexOf('uncomment `kubernetes_api`'));
  });

  it.each(manifests)('%s: every Deployment passes Pod Security "restricted" as written', (file) => {
    // The real API server's verdict is in test/deploy/api-server.test.ts; this names the fields.
    for (const d of load(join(REPO, file)).filter((o) => o.kind === 'Deployment')) {
      const pod = d.spec!.template!.spec as {
        securityContext?: Record<string, unknown>;
        containers: (Container & { securityContext?: Record<string, unknown> })[];
      };
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      for (const c of pod.containers) expect(c.securityContext, c.name).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
  });

  it("the example agent config listens for Falco on the port the agent's Falco Service targets", () => {
    const agent = load(join(REPO, 'deploy/agent/agent.yaml'));
    const svc = agent.find((o) => o.kind === 'Service' && o.metadata.name === 'verdict-agent-falco')!;
    const c = agent.find((o) => o.kind === 'Deployment')!.spec!.template!.spec.containers[0]!;
    const target = c.ports!.find((p) => p.name === svc.spec!.ports![0]!.targetPort)!.containerPort;
    const cfg = parseAgentConfig(readFileSync(join(REPO, 'deploy/examples/agent-config.yaml'), 'utf8'), 'agent-config.yaml').value;
    expect(cfg.falco?.http?.listen).toBe(`0.0.0.0:${target}`);
  });
  it('the AppArmor profile verdict-deny-write allows writes exactly where its comment says (a deny rule would win over them)', () => {
    const cm = load(join(REPO, 'deploy/host-security/apparmor.yaml')).find((o) => o.kind === 'ConfigMap')!;
    const rules = [...cm.data!['verdict-deny-write']!.matchAll(/^\s*(audit\s+)?(deny\s+)?(\/\S*)\s+([rwaklmix]+),\s*$/gm)].map((m) => ({
      deny: Boolean(m[2]),
      path: new RegExp(
        `^${m[3]!
          .replace(/[.+^$()|[\]\\]/g, '\\$&')
          .replace(/\{([^}]*)\}/g, (_, alts: string) => `(?:${alts.split(',').join('|')})`)
          .replace(/\*\*/g, '\u0000')
          .replace(/\*/g, '[^/]*')
          .replaceAll('\u0000', '.*')}$`,
      ),
      perms: m[4]!,
    }));
    expect(rules.length).toBeGreaterThan(0);
    // AppArmor subtracts every deny rule from the allow rules, whatever their order.
    const may = (perm: string, path: string) =>
      rules.some((r) => !r.deny && r.perms.includes(perm) && r.path.test(path)) && !rules.some((r) => r.deny && r.perms.includes(perm) && r.path.test(path));
    const agentArgs = load(join(REPO, 'deploy/agent/agent.yaml')).find((o) => o.kind === 'Deployment')!.spec!.template!.spec.containers[0]!.args!;
    const serverCfg = parseYamlConfig(
      load(join(REPO, 'deploy/server/server.yaml')).find((o) => o.kind === 'ConfigMap')!.data!['server.yaml']!,
      'server.yaml',
      serverConfigSchema,
    ).value;
    for (const dir of ['/tmp', '/dev/shm', flag(agentArgs, 'data-dir')!, serverCfg.data_dir]) expect(may('w', `${dir}/file`), dir).toBe(true);
    for (const path of ['/etc/passwd', '/app/bin/verdict.js', '/usr/bin/node', '/root/.bashrc']) {
      expect(may('w', path), path).toBe(false);
      expect(may('r', path), path).toBe(true);
    }
    const comment = readFileSync(join(REPO, 'deploy/host-security/apparmor.yaml'), 'utf8');
    expect(comment).toMatch(/# Writes only under \/tmp, \/dev\/shm and \/var\/lib/);
  });
});
