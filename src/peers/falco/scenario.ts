import { randomUUID } from 'node:crypto';

// A small attack story told in Falco events, for the demo, the benchmark and
// tests: someone gets a shell in the shop's frontend, tampers with /etc, pulls a
// miner that dials a mining pool, reads the database pod's secrets and finally
// execs into the database pod through the API server. Field names, outputs and
// priorities follow Falco's default rules; pods live in the demo's namespaces
// shop and db.

export interface FalcoJsonEvent {
  uuid?: string;
  time: string;
  rule: string;
  priority: string;
  source: string;
  hostname: string;
  output: string;
  tags: string[];
  output_fields: Record<string, unknown>;
}

interface Pod {
  ns: string;
  pod: string;
  container: string;
  id: string;
  image: string;
  node: string;
}

const PODS = {
  frontend: { ns: 'shop', pod: 'frontend-7d4b9c6f5-x2k4p', container: 'frontend', id: '3f1c9a7be2d4', image: 'ghcr.io/verdict-demo/frontend', node: 'node-a' },
  cart: { ns: 'shop', pod: 'cart-5c8d7b9f4-q9zl2', container: 'cart', id: '8a2e4c6d1f3b', image: 'ghcr.io/verdict-demo/cart', node: 'node-a' },
  checkout: { ns: 'shop', pod: 'checkout-6f9c8d7b5-m3wt8', container: 'checkout', id: 'c47e1b9a5d20', image: 'ghcr.io/verdict-demo/checkout', node: 'node-b' },
  postgres: { ns: 'db', pod: 'postgres-0', container: 'postgres', id: 'e5b3d9f7a1c8', image: 'docker.io/library/postgres', node: 'node-b' },
} satisfies Record<string, Pod>;

function clock(t: Date): string {
  return `${t.toISOString().slice(11, 23)}000000`;
}

function containerFields(p: Pod): Record<string, unknown> {
  return {
    'container.id': p.id,
    'container.name': p.container,
    'container.image.repository': p.image,
    'container.image.tag': '1.4.2',
    'k8s.ns.name': p.ns,
    'k8s.pod.name': p.pod,
  };
}

type Step = (t: Date, i: number) => FalcoJsonEvent;

const STEPS: Step[] = [
  (t) => {
    const p = PODS.frontend;
    return {
      time: t.toISOString(),
      rule: 'Terminal shell in container',
      priority: 'Notice',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Notice A shell was spawned in a container with an attached terminal (evt_type=execve user=root user_uid=0 process=bash proc_exepath=/bin/bash parent=runc command=bash terminal=34816 exe_flags=EXE_WRITABLE container_id=${p.id} container_name=${p.container} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1059', 'container', 'maturity_stable', 'mitre_execution', 'shell'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'execve',
        'proc.name': 'bash',
        'proc.cmdline': 'bash',
        'proc.exepath': '/bin/bash',
        'proc.pname': 'runc',
        'proc.tty': 34816,
        'user.name': 'root',
        'user.uid': 0,
        'user.loginuid': -1,
      },
    };
  },
  (t) => {
    const p = PODS.frontend;
    return {
      time: t.toISOString(),
      rule: 'Write below etc',
      priority: 'Error',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Error File below /etc opened for writing (file=/etc/ld.so.preload pcmdline=bash proc_pcmdline=bash evt_type=openat user=root user_uid=0 process=sh command=sh -c echo /tmp/.x/libhide.so > /etc/ld.so.preload container_id=${p.id} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1098', 'filesystem', 'maturity_sandbox', 'mitre_persistence'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'openat',
        'fd.name': '/etc/ld.so.preload',
        'proc.name': 'sh',
        'proc.cmdline': 'sh -c echo /tmp/.x/libhide.so > /etc/ld.so.preload',
        'proc.pname': 'bash',
        'proc.aname[2]': 'runc',
        'user.name': 'root',
        'user.uid': 0,
      },
    };
  },
  (t, i) => {
    const p = PODS.checkout;
    const port = [3333, 4444, 14444][i % 3];
    return {
      time: t.toISOString(),
      rule: 'Detect outbound connections to common miner pool ports',
      priority: 'Critical',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Critical Outbound connection to IP/Port flagged by https://cryptoioc.ch (ip=198.51.100.23 port=${port} command=xmrig --donate-level 1 -o pool.example.net:${port} container_id=${p.id} image=${p.image} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1496', 'maturity_sandbox', 'mitre_impact', 'network'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'connect',
        'fd.sip': '198.51.100.23',
        'fd.sport': port,
        'fd.name': `10.0.2.17:41234->198.51.100.23:${port}`,
        'proc.name': 'xmrig',
        'proc.cmdline': `xmrig --donate-level 1 -o pool.example.net:${port}`,
        'user.name': 'www-data',
      },
    };
  },
  (t) => {
    const p = PODS.postgres;
    return {
      time: t.toISOString(),
      rule: 'Read sensitive file untrusted',
      priority: 'Warning',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Warning Sensitive file opened for reading by non-trusted program (file=/etc/shadow gparent=runc ggparent=containerd-shim evt_type=openat user=postgres user_uid=999 process=cat command=cat /etc/shadow container_id=${p.id} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1555', 'container', 'filesystem', 'host', 'maturity_stable', 'mitre_credential_access'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'openat',
        'fd.name': '/etc/shadow',
        'proc.name': 'cat',
        'proc.cmdline': 'cat /etc/shadow',
        'proc.aname[2]': 'runc',
        'proc.aname[3]': 'containerd-shim',
        'user.name': 'postgres',
        'user.uid': 999,
        'proc.pname': null,
      },
    };
  },
  (t) => {
    const p = PODS.postgres;
    return {
      time: t.toISOString(),
      rule: 'Attach/Exec Pod',
      priority: 'Notice',
      source: 'k8s_audit',
      hostname: 'falco-k8saudit',
      output: `${clock(t)}: Notice Attach/Exec to pod (user=dev@example.com pod=${p.pod} resource=pods ns=${p.ns} action=exec command=psql -U postgres)`,
      tags: ['k8s'],
      output_fields: {
        'ka.user.name': 'dev@example.com',
        'ka.verb': 'create',
        'ka.target.namespace': p.ns,
        'ka.target.name': p.pod,
        'ka.target.resource': 'pods',
        'ka.target.subresource': 'exec',
        'ka.uri.param[command]': 'psql -U postgres',
        'ka.user.groups': ['system:authenticated', 'developers'],
        'ka.response.code': 101,
      },
    };
  },
  (t) => {
    const p = PODS.cart;
    return {
      time: t.toISOString(),
      rule: 'Drop and execute new binary in container',
      priority: 'Critical',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Critical Executing binary not part of base image (proc_exe=/tmp/.x/kworkerd proc_sname=bash gparent=runc evt_type=execve user=root process=kworkerd command=/tmp/.x/kworkerd container_id=${p.id} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1610', 'container', 'maturity_stable', 'mitre_persistence', 'process'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'execve',
        'proc.exe': '/tmp/.x/kworkerd',
        'proc.name': 'kworkerd',
        'proc.cmdline': '/tmp/.x/kworkerd',
        'proc.is_exe_upper_layer': true,
        'user.name': 'root',
      },
    };
  },
  (t) => {
    const p = PODS.cart;
    return {
      time: t.toISOString(),
      rule: 'Contact K8S API Server From Container',
      priority: 'Notice',
      source: 'syscall',
      hostname: p.node,
      output: `${clock(t)}: Notice Unexpected connection to K8s API Server from container (connection=10.0.1.9:52144->10.96.0.1:443 lport=443 rport=52144 fd_type=ipv4 evt_type=connect user=root process=curl command=curl -sk https://kubernetes.default/api/v1/namespaces/db/secrets container_id=${p.id} k8s_ns=${p.ns} k8s_pod_name=${p.pod})`,
      tags: ['T1565', 'container', 'k8s', 'maturity_stable', 'mitre_discovery', 'network'],
      output_fields: {
        ...containerFields(p),
        'evt.type': 'connect',
        'fd.name': '10.0.1.9:52144->10.96.0.1:443',
        'proc.name': 'curl',
        'proc.cmdline': 'curl -sk https://kubernetes.default/api/v1/namespaces/db/secrets',
        'user.name': 'root',
      },
    };
  },
];

export const SCENARIO_LENGTH = STEPS.length;

/** The i-th event of the scenario (cycling), stamped with `now`. */
export function scenarioEvent(i: number, now: Date = new Date(), opts: { uuid?: boolean } = {}): FalcoJsonEvent {
  const ev = STEPS[i % STEPS.length]!(now, Math.floor(i / STEPS.length));
  // Falco's timestamps have nanoseconds.
  ev.time = ev.time.replace(/\.(\d{3})Z$/, (_m, ms: string) => `.${ms}${String(i % 1_000_000).padStart(6, '0')}Z`);
  if (opts.uuid) ev.uuid = randomUUID();
  return ev;
}

/**
 * JSON text of an event as Falco writes it, including `evt.time` as a
 * nanosecond integer beyond 2^53 (which JSON.parse would round).
 */
export function toFalcoJson(ev: FalcoJsonEvent): string {
  const ns = nanosOf(ev.time);
  const text = JSON.stringify({ ...ev, output_fields: { 'evt.time': '\u0000EVT_TIME\u0000', ...ev.output_fields } });
  return text.replace('"\\u0000EVT_TIME\\u0000"', ns);
}

function nanosOf(time: string): string {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(time);
  const secs = BigInt(Math.floor(Date.parse(`${m?.[1] ?? time}Z`) / 1000));
  const frac = (m?.[2] ?? '').padEnd(9, '0').slice(0, 9);
  return (secs * 1_000_000_000n + BigInt(frac)).toString();
}
