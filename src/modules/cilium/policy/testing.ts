import type { Flow } from '../../../gen/flow/flow.js';
import { flowFromJson } from '../flow-json.js';
import { parsePolicyManifests } from './parse.js';
import type { Policy } from './policy.js';

// Small builders for tests and the benchmark: endpoints and flows written the
// way Hubble reports them, policies from YAML text.

export interface EpSpec {
  identity: number;
  labels: string[];
  namespace?: string;
  pod?: string;
  ip: string;
}

const identities = new Map<string, number>();
let nextIdentity = 10_000;
let nextIp = 1;

function identityFor(labels: string[]): number {
  const k = [...labels].sort().join(',');
  let id = identities.get(k);
  if (id === undefined) identities.set(k, (id = nextIdentity++));
  return id;
}

/** A pod: `k8s:` labels plus the namespace label, a stable identity per label set. */
export function pod(namespace: string, labels: Record<string, string> | string, ip?: string): EpSpec {
  const l = typeof labels === 'string' ? { app: labels } : labels;
  const list = [...Object.entries(l).map(([k, v]) => (k.includes(':') ? `${k}=${v}` : `k8s:${k}=${v}`)), `k8s:io.kubernetes.pod.namespace=${namespace}`];
  const n = nextIp++;
  return {
    identity: identityFor(list),
    labels: list,
    namespace,
    pod: `${Object.values(l)[0] ?? 'pod'}-${n}`,
    ip: ip ?? `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
  };
}

export function world(ip: string): EpSpec {
  return { identity: 2, labels: ['reserved:world'], ip };
}

export function reserved(name: string, identity: number, ip = '192.168.0.1'): EpSpec {
  return { identity, labels: [`reserved:${name}`], ip };
}

export interface FlowSpec {
  src: EpSpec;
  dst: EpSpec;
  dir?: 'ingress' | 'egress' | 'unknown';
  proto?: 'TCP' | 'UDP' | 'SCTP' | 'ICMPv4' | 'ICMPv6' | 'none';
  port?: number;
  srcPort?: number;
  icmpType?: number;
  verdict?: 'DROPPED' | 'FORWARDED' | 'AUDIT';
  /** Drop reason code; DROPPED flows default to 133. */
  reason?: number;
  http?: { method: string; url: string; headers?: { key: string; value: string }[] };
  dns?: string;
  dstNames?: string[];
  deniedBy?: { name: string; namespace: string; kind?: string }[];
  reply?: boolean;
  /** TCP flags; default SYN alone (a connection opening). */
  tcpFlags?: ('SYN' | 'ACK' | 'FIN' | 'RST' | 'PSH')[];
  dstService?: { name: string; namespace: string };
}

function ep(e: EpSpec): Record<string, unknown> {
  const o: Record<string, unknown> = { identity: e.identity, labels: e.labels };
  if (e.namespace) o.namespace = e.namespace;
  if (e.pod) o.pod_name = e.pod;
  return o;
}

/** A flow object in `hubble observe -o json` form. */
export function flowJson(s: FlowSpec): Record<string, unknown> {
  const proto = s.proto ?? 'TCP';
  const verdict = s.verdict ?? 'DROPPED';
  const f: Record<string, unknown> = {
    verdict,
    IP: { source: s.src.ip, destination: s.dst.ip, ipVersion: s.src.ip.includes(':') ? 'IPv6' : 'IPv4' },
    source: ep(s.src),
    destination: ep(s.dst),
    Type: s.http || s.dns ? 'L7' : 'L3_L4',
    node_name: 'node-1',
    traffic_direction: s.dir === 'unknown' ? undefined : (s.dir ?? 'ingress').toUpperCase(),
  };
  if (proto === 'ICMPv4' || proto === 'ICMPv6') f.l4 = { [proto]: { type: s.icmpType ?? 8 } };
  else if (proto !== 'none')
    f.l4 = {
      [proto]: {
        source_port: s.srcPort ?? 40000,
        destination_port: s.port ?? 80,
        ...(proto === 'TCP' ? { flags: Object.fromEntries((s.tcpFlags ?? ['SYN']).map((n) => [n, true])) } : {}),
      },
    };
  if (verdict !== 'FORWARDED' && !s.http && !s.dns) {
    const reason = s.reason ?? 133;
    f.drop_reason_desc = reason;
    f.event_type = { type: 5 };
  } else if (s.reason !== undefined) {
    f.drop_reason_desc = s.reason;
  }
  if (s.http) f.l7 = { type: 'REQUEST', http: { method: s.http.method, url: s.http.url, headers: s.http.headers ?? [] } };
  if (s.dns) f.l7 = { type: 'REQUEST', dns: { query: s.dns } };
  if (s.dstNames) f.destination_names = s.dstNames;
  if (s.reply !== undefined) f.is_reply = s.reply;
  if (s.dstService) f.destination_service = s.dstService;
  if (s.deniedBy) f[(s.dir ?? 'ingress') === 'egress' ? 'egress_denied_by' : 'ingress_denied_by'] = s.deniedBy.map((d) => ({ ...d, labels: [] }));
  return { flow: f };
}

export function flow(s: FlowSpec): Flow {
  return flowFromJson(flowJson(s));
}

/** Policies from YAML; throws with every parse error, so a test never runs on half a set. */
export function policies(yaml: string, source = 'test.yaml'): Policy[] {
  const r = parsePolicyManifests([{ path: source, data: yaml }]);
  if (r.errors.length > 0) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.policies;
}

/** `kind/ns/name` strings of an attribution's policies, for compact assertions. */
export function names(a: { policies: { kind: string; namespace: string; name: string }[] } | null): string[] | null {
  if (a === null) return null;
  return a.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name));
}
