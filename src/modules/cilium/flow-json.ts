import {
  FlowType,
  IPVersion,
  L7FlowType,
  TrafficDirection,
  Verdict,
  type Endpoint,
  type Flow,
  type HTTP,
  type DNS,
  type Kafka,
  type Layer4,
  type Layer7,
  type Policy,
  type Service,
  type TCPFlags,
  type Workload,
} from '../../gen/flow/flow.js';
import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import { podNamespace } from './endpoint-name.js';

// A little over 500 lines on purpose: one mapping of every Flow field Verdict
// models, both directions side by side, so a field cannot be read one way and
// written another.
//
// `hubble observe -o json` prints protojson with the proto field names, enums as
// names and 64-bit integers as strings. ts-proto here generates binary codecs
// only, so this module is the one JSON mapping of the project, in both
// directions. Other protojson writers use lowerCamelCase names; both are read.
// Fields this subset does not model are ignored, as the binary decoder does.

/** DropReason names of flow.proto; the enum is open, unknown codes stay numbers. */
export const DROP_REASONS: Readonly<Record<number, string>> = Object.freeze({
  0: 'DROP_REASON_UNKNOWN',
  130: 'INVALID_SOURCE_MAC',
  131: 'INVALID_DESTINATION_MAC',
  132: 'INVALID_SOURCE_IP',
  133: 'POLICY_DENIED',
  134: 'INVALID_PACKET_DROPPED',
  135: 'CT_TRUNCATED_OR_INVALID_HEADER',
  136: 'CT_MISSING_TCP_ACK_FLAG',
  137: 'CT_UNKNOWN_L4_PROTOCOL',
  138: 'CT_CANNOT_CREATE_ENTRY_FROM_PACKET',
  139: 'UNSUPPORTED_L3_PROTOCOL',
  140: 'MISSED_TAIL_CALL',
  141: 'ERROR_WRITING_TO_PACKET',
  142: 'UNKNOWN_L4_PROTOCOL',
  143: 'UNKNOWN_ICMPV4_CODE',
  144: 'UNKNOWN_ICMPV4_TYPE',
  145: 'UNKNOWN_ICMPV6_CODE',
  146: 'UNKNOWN_ICMPV6_TYPE',
  147: 'ERROR_RETRIEVING_TUNNEL_KEY',
  148: 'ERROR_RETRIEVING_TUNNEL_OPTIONS',
  149: 'INVALID_GENEVE_OPTION',
  150: 'UNKNOWN_L3_TARGET_ADDRESS',
  151: 'STALE_OR_UNROUTABLE_IP',
  152: 'NO_MATCHING_LOCAL_CONTAINER_FOUND',
  153: 'ERROR_WHILE_CORRECTING_L3_CHECKSUM',
  154: 'ERROR_WHILE_CORRECTING_L4_CHECKSUM',
  155: 'CT_MAP_INSERTION_FAILED',
  156: 'INVALID_IPV6_EXTENSION_HEADER',
  157: 'IP_FRAGMENTATION_NOT_SUPPORTED',
  158: 'SERVICE_BACKEND_NOT_FOUND',
  160: 'NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT',
  161: 'FAILED_TO_INSERT_INTO_PROXYMAP',
  162: 'REACHED_EDT_RATE_LIMITING_DROP_HORIZON',
  163: 'UNKNOWN_CONNECTION_TRACKING_STATE',
  164: 'LOCAL_HOST_IS_UNREACHABLE',
  165: 'NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION',
  166: 'UNSUPPORTED_L2_PROTOCOL',
  167: 'NO_MAPPING_FOR_NAT_MASQUERADE',
  168: 'UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE',
  169: 'FIB_LOOKUP_FAILED',
  170: 'ENCAPSULATION_TRAFFIC_IS_PROHIBITED',
  171: 'INVALID_IDENTITY',
  172: 'UNKNOWN_SENDER',
  173: 'NAT_NOT_NEEDED',
  174: 'IS_A_CLUSTERIP',
  175: 'FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND',
  176: 'FORBIDDEN_ICMPV6_MESSAGE',
  177: 'DENIED_BY_LB_SRC_RANGE_CHECK',
  178: 'SOCKET_LOOKUP_FAILED',
  179: 'SOCKET_ASSIGN_FAILED',
  180: 'PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL',
  181: 'POLICY_DENY',
  182: 'VLAN_FILTERED',
  183: 'INVALID_VNI',
  184: 'INVALID_TC_BUFFER',
  185: 'NO_SID',
  186: 'MISSING_SRV6_STATE',
  187: 'NAT46',
  188: 'NAT64',
  189: 'AUTH_REQUIRED',
  190: 'CT_NO_MAP_FOUND',
  191: 'SNAT_NO_MAP_FOUND',
  192: 'INVALID_CLUSTER_ID',
  193: 'UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP',
  194: 'NO_EGRESS_GATEWAY',
  195: 'UNENCRYPTED_TRAFFIC',
  196: 'TTL_EXCEEDED',
  197: 'NO_NODE_ID',
  198: 'DROP_RATE_LIMITED',
  199: 'IGMP_HANDLED',
  200: 'IGMP_SUBSCRIBED',
  201: 'MULTICAST_HANDLED',
  202: 'DROP_HOST_NOT_READY',
  203: 'DROP_EP_NOT_READY',
  204: 'DROP_NO_EGRESS_IP',
  205: 'DROP_PUNT_PROXY',
  206: 'DROP_NO_DEVICE',
});

const DROP_REASON_CODES: Readonly<Record<string, number>> = Object.freeze(Object.fromEntries(Object.entries(DROP_REASONS).map(([k, v]) => [v, Number(k)])));

/** Name of a drop reason code, or the code itself as a string when unknown. */
export function dropReasonName(code: number): string {
  return DROP_REASONS[code] ?? String(code);
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const CAMEL = new Map<string, string>();
function camel(name: string): string {
  let c = CAMEL.get(name);
  if (c === undefined) CAMEL.set(name, (c = name.replace(/_([a-z])/g, (_, x: string) => x.toUpperCase())));
  return c;
}

/** The field under its proto name or its lowerCamelCase JSON name. */
function get(o: Json, name: string): unknown {
  const v = o[name];
  return v !== undefined ? v : o[camel(name)];
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

/** uint32/int32/uint64: protojson writes 64-bit values as strings. */
function num(v: unknown): number {
  if (typeof v === 'number') return Number.isFinite(v) ? v : 0;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }
  return 0;
}

/**
 * A port: a port judged as 0 would match or miss rules for the wrong reason,
 * so anything but a whole number 0-65535 (or its string) is an error naming the field.
 */
function port(v: unknown, proto: string, field: string): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
  if (Number.isInteger(n) && n >= 0 && n <= 65535) return n;
  throw new TypeError(`flow.l4.${proto}.${field}: ${JSON.stringify(v)} is not a port number`);
}

function bool(v: unknown): boolean {
  return v === true || v === 'true';
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(str) : [];
}

function enumValue(v: unknown, e: Record<string, string | number>): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    if (/^-?\d+$/.test(v)) return Number(v);
    const n = e[v];
    // Names a newer Hubble added: keep them distinguishable from the zero value.
    return typeof n === 'number' ? n : -1;
  }
  return 0;
}

function dropReasonValue(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return Number(v);
    return DROP_REASON_CODES[v] ?? 0;
  }
  return 0;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9})\d*)?(Z|[+-]\d\d:\d\d)$/i;

/** RFC 3339 text (protojson Timestamp) to {seconds, nanos}; undefined when absent or unreadable. */
export function timestampFromJson(v: unknown): Timestamp | undefined {
  if (isObj(v)) return { seconds: num(v.seconds), nanos: num(v.nanos) };
  if (typeof v !== 'string') return undefined;
  const m = RFC3339.exec(v);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]!.toUpperCase() === 'Z' ? 'Z' : m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  return { seconds: Math.floor(ms / 1000), nanos: m[2] ? Number(m[2].padEnd(9, '0')) : 0 };
}

/** {seconds, nanos} to RFC 3339 with 0, 3, 6 or 9 fraction digits, as protojson writes it. */
export function timestampToJson(t: Timestamp): string {
  const base = new Date(t.seconds * 1000).toISOString().slice(0, 19);
  const n = t.nanos;
  if (n === 0) return `${base}Z`;
  const nine = String(n).padStart(9, '0');
  const frac = n % 1_000_000 === 0 ? nine.slice(0, 3) : n % 1000 === 0 ? nine.slice(0, 6) : nine;
  return `${base}.${frac}Z`;
}

function endpointFromJson(v: unknown): Endpoint | undefined {
  if (!isObj(v)) return undefined;
  const labels = strings(get(v, 'labels'));
  return {
    ID: num(get(v, 'ID')),
    identity: num(get(v, 'identity')),
    // Filled from the namespace label as the agent's decoder does (flow-decode.ts).
    namespace: podNamespace(str(get(v, 'namespace')), labels),
    labels,
    pod_name: str(get(v, 'pod_name')),
    workloads: Array.isArray(v.workloads) ? v.workloads.filter(isObj).map((w): Workload => ({ name: str(w.name), kind: str(w.kind) })) : [],
    cluster_name: str(get(v, 'cluster_name')),
  };
}

function serviceFromJson(v: unknown): Service | undefined {
  return isObj(v) ? { name: str(v.name), namespace: str(v.namespace) } : undefined;
}

function policiesFromJson(v: unknown): Policy[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isObj).map((p) => ({
    name: str(p.name),
    namespace: str(p.namespace),
    labels: strings(p.labels),
    revision: num(p.revision),
    kind: str(p.kind),
  }));
}

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR', 'NS'] as const;

function layer4FromJson(v: unknown): Layer4 | undefined {
  if (!isObj(v)) return undefined;
  const ports = (o: Json, proto: string) => ({
    source_port: port(get(o, 'source_port'), proto, 'source_port'),
    destination_port: port(get(o, 'destination_port'), proto, 'destination_port'),
  });
  if (isObj(v.TCP)) {
    const f = v.TCP.flags;
    let flags: TCPFlags | undefined;
    if (isObj(f)) {
      flags = { FIN: false, SYN: false, RST: false, PSH: false, ACK: false, URG: false, ECE: false, CWR: false, NS: false };
      for (const n of TCP_FLAG_NAMES) flags[n] = bool(f[n]);
    }
    return { protocol: { $case: 'TCP', value: { ...ports(v.TCP, 'TCP'), flags } } };
  }
  if (isObj(v.UDP)) return { protocol: { $case: 'UDP', value: ports(v.UDP, 'UDP') } };
  if (isObj(v.SCTP)) return { protocol: { $case: 'SCTP', value: ports(v.SCTP, 'SCTP') } };
  if (isObj(v.ICMPv4)) return { protocol: { $case: 'ICMPv4', value: { type: num(v.ICMPv4.type), code: num(v.ICMPv4.code) } } };
  if (isObj(v.ICMPv6)) return { protocol: { $case: 'ICMPv6', value: { type: num(v.ICMPv6.type), code: num(v.ICMPv6.code) } } };
  return { protocol: undefined };
}

function layer7FromJson(v: unknown): Layer7 | undefined {
  if (!isObj(v)) return undefined;
  let record: Layer7['record'];
  if (isObj(v.http)) {
    const h = v.http;
    const http: HTTP = {
      code: num(h.code),
      method: str(h.method),
      url: str(h.url),
      protocol: str(h.protocol),
      headers: Array.isArray(h.headers) ? h.headers.filter(isObj).map((x) => ({ key: str(x.key), value: str(x.value) })) : [],
    };
    record = { $case: 'http', value: http };
  } else if (isObj(v.dns)) {
    const d = v.dns;
    const dns: DNS = { query: str(d.query), ips: strings(d.ips), ttl: num(d.ttl), cnames: strings(d.cnames), rcode: num(d.rcode), qtypes: strings(d.qtypes) };
    record = { $case: 'dns', value: dns };
  } else if (isObj(v.kafka)) {
    const k = v.kafka;
    const kafka: Kafka = {
      error_code: num(get(k, 'error_code')),
      api_version: num(get(k, 'api_version')),
      api_key: str(get(k, 'api_key')),
      correlation_id: num(get(k, 'correlation_id')),
      topic: str(k.topic),
    };
    record = { $case: 'kafka', value: kafka };
  }
  return { type: enumValue(v.type, L7FlowType), latency_ns: num(get(v, 'latency_ns')), record };
}

/**
 * One `hubble observe -o json` object (the `{"flow": ..., "node_name", "time"}`
 * wrapper of GetFlowsResponse, or a bare flow) as the generated Flow type.
 * Throws a TypeError for anything that is not a flow event.
 */
export function flowFromJson(obj: unknown): Flow {
  if (!isObj(obj)) throw new TypeError('expected a JSON object with a "flow" field');
  const f = isObj(obj.flow) ? obj.flow : isFlowLike(obj) ? obj : undefined;
  if (!f) throw new TypeError('not a flow event (no "flow" field)');
  const ip = get(f, 'IP');
  const eventType = get(f, 'event_type');
  const isReply = get(f, 'is_reply');
  const flow: Flow = {
    time: timestampFromJson(f.time) ?? timestampFromJson(obj.time),
    verdict: enumValue(f.verdict, Verdict),
    drop_reason: num(get(f, 'drop_reason')),
    IP: isObj(ip)
      ? { source: str(ip.source), destination: str(ip.destination), ipVersion: enumValue(get(ip, 'ipVersion'), IPVersion), encrypted: bool(ip.encrypted) }
      : undefined,
    l4: layer4FromJson(f.l4),
    source: endpointFromJson(f.source),
    destination: endpointFromJson(f.destination),
    Type: enumValue(get(f, 'Type') ?? f.type, FlowType),
    node_name: str(get(f, 'node_name')) || str(get(obj, 'node_name')),
    source_names: strings(get(f, 'source_names')),
    destination_names: strings(get(f, 'destination_names')),
    l7: layer7FromJson(f.l7),
    event_type: isObj(eventType) ? { type: num(eventType.type), sub_type: num(get(eventType, 'sub_type')) } : undefined,
    source_service: serviceFromJson(get(f, 'source_service')),
    destination_service: serviceFromJson(get(f, 'destination_service')),
    traffic_direction: enumValue(get(f, 'traffic_direction'), TrafficDirection),
    policy_match_type: num(get(f, 'policy_match_type')),
    drop_reason_desc: dropReasonValue(get(f, 'drop_reason_desc')),
    // `reply` is the deprecated bool that is_reply replaced; only `true` means something.
    is_reply: typeof isReply === 'boolean' ? isReply : f.reply === true ? true : undefined,
    uuid: str(f.uuid),
    node_labels: strings(get(f, 'node_labels')),
    Summary: str(f.Summary ?? f.summary),
    egress_allowed_by: policiesFromJson(get(f, 'egress_allowed_by')),
    ingress_allowed_by: policiesFromJson(get(f, 'ingress_allowed_by')),
    egress_denied_by: policiesFromJson(get(f, 'egress_denied_by')),
    ingress_denied_by: policiesFromJson(get(f, 'ingress_denied_by')),
    policy_log: strings(get(f, 'policy_log')),
  };
  return flow;
}

function isFlowLike(o: Json): boolean {
  return 'verdict' in o || 'IP' in o || 'l4' in o || 'source' in o || 'event_type' in o || 'eventType' in o;
}

/**
 * One line of `hubble observe -o json` output: a Flow, or null for blank lines
 * and for Relay's events that are not flows (node_status, lost_events). Throws
 * a SyntaxError on text that is not JSON, a TypeError on JSON that is no
 * Hubble event or a flow with a field that cannot be read (naming it).
 */
export function parseFlowLine(line: string): Flow | null {
  const t = line.trim();
  if (t === '') return null;
  const obj: unknown = JSON.parse(t);
  if (Array.isArray(obj)) throw new TypeError('a JSON array, not one object per line');
  if (!isObj(obj)) throw new TypeError('expected a JSON object');
  if (obj.flow !== undefined && !isObj(obj.flow)) throw new TypeError('"flow" is not an object');
  if (!isObj(obj.flow) && !isFlowLike(obj)) {
    if (OTHER_EVENTS.some((k) => obj[k] !== undefined)) return null;
    throw new TypeError(`not a Hubble event (no "flow" field; keys: ${Object.keys(obj).slice(0, 5).join(', ') || 'none'})`);
  }
  return flowFromJson(obj);
}

/** GetFlowsResponse's events other than flows (and GetEvents' for a capture of those), which a capture may hold. */
const OTHER_EVENTS = ['node_status', 'nodeStatus', 'lost_events', 'lostEvents', 'agent_event', 'agentEvent', 'debug_event', 'debugEvent'];

/** Every flow of a `hubble observe -o json` capture; other events are skipped. */
export function flowsFromJsonLines(text: string): Flow[] {
  const out: Flow[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let flow: Flow | null;
    try {
      flow = parseFlowLine(lines[i]!);
    } catch (e) {
      throw new SyntaxError(`line ${i + 1}: ${(e as Error).message}`);
    }
    if (flow) out.push(flow);
  }
  return out;
}

function enumName(e: Record<string | number, string | number>, v: number): string | number {
  const n = e[v];
  return typeof n === 'string' ? n : v;
}

function endpointToJson(e: Endpoint): Json {
  const o: Json = {};
  if (e.ID) o.ID = e.ID;
  if (e.identity) o.identity = e.identity;
  if (e.namespace) o.namespace = e.namespace;
  if (e.labels.length) o.labels = [...e.labels];
  if (e.pod_name) o.pod_name = e.pod_name;
  if (e.workloads.length) o.workloads = e.workloads.map((w) => ({ name: w.name, kind: w.kind }));
  if (e.cluster_name) o.cluster_name = e.cluster_name;
  return o;
}

function policiesToJson(ps: Policy[]): Json[] {
  return ps.map((p) => {
    const o: Json = { name: p.name, namespace: p.namespace };
    if (p.labels.length) o.labels = [...p.labels];
    if (p.revision) o.revision = String(p.revision);
    if (p.kind) o.kind = p.kind;
    return o;
  });
}

function layer4ToJson(l4: Layer4): Json {
  const p = l4.protocol;
  if (!p) return {};
  switch (p.$case) {
    case 'TCP': {
      const o: Json = {};
      if (p.value.source_port) o.source_port = p.value.source_port;
      if (p.value.destination_port) o.destination_port = p.value.destination_port;
      if (p.value.flags) {
        const flags: Json = {};
        for (const n of TCP_FLAG_NAMES) if (p.value.flags[n]) flags[n] = true;
        o.flags = flags;
      }
      return { TCP: o };
    }
    case 'UDP':
    case 'SCTP': {
      const o: Json = {};
      if (p.value.source_port) o.source_port = p.value.source_port;
      if (p.value.destination_port) o.destination_port = p.value.destination_port;
      return { [p.$case]: o };
    }
    case 'ICMPv4':
    case 'ICMPv6': {
      const o: Json = {};
      if (p.value.type) o.type = p.value.type;
      if (p.value.code) o.code = p.value.code;
      return { [p.$case]: o };
    }
  }
}

function layer7ToJson(l7: Layer7): Json {
  const o: Json = {};
  if (l7.type) o.type = enumName(L7FlowType, l7.type);
  if (l7.latency_ns) o.latency_ns = String(l7.latency_ns);
  const r = l7.record;
  if (r?.$case === 'http') {
    const h: Json = {};
    if (r.value.code) h.code = r.value.code;
    if (r.value.method) h.method = r.value.method;
    if (r.value.url) h.url = r.value.url;
    if (r.value.protocol) h.protocol = r.value.protocol;
    if (r.value.headers.length) h.headers = r.value.headers.map((x) => ({ key: x.key, value: x.value }));
    o.http = h;
  } else if (r?.$case === 'dns') {
    const d: Json = {};
    if (r.value.query) d.query = r.value.query;
    if (r.value.ips.length) d.ips = [...r.value.ips];
    if (r.value.ttl) d.ttl = r.value.ttl;
    if (r.value.cnames.length) d.cnames = [...r.value.cnames];
    if (r.value.rcode) d.rcode = r.value.rcode;
    if (r.value.qtypes.length) d.qtypes = [...r.value.qtypes];
    o.dns = d;
  } else if (r?.$case === 'kafka') {
    const k: Json = {};
    if (r.value.error_code) k.error_code = r.value.error_code;
    if (r.value.api_version) k.api_version = r.value.api_version;
    if (r.value.api_key) k.api_key = r.value.api_key;
    if (r.value.correlation_id) k.correlation_id = r.value.correlation_id;
    if (r.value.topic) k.topic = r.value.topic;
    o.kafka = k;
  }
  return o;
}

/**
 * A Flow as Hubble's JSON writes it (proto names, enum names, 64-bit numbers as
 * strings, zero values left out): the inverse of flowFromJson for the fields
 * this subset models. Used for alert samples.
 */
export function flowToJson(flow: Flow): Json {
  const o: Json = {};
  if (flow.time) o.time = timestampToJson(flow.time);
  if (flow.uuid) o.uuid = flow.uuid;
  if (flow.verdict) o.verdict = enumName(Verdict, flow.verdict);
  if (flow.drop_reason) o.drop_reason = flow.drop_reason;
  if (flow.IP) {
    const ip: Json = {};
    if (flow.IP.source) ip.source = flow.IP.source;
    if (flow.IP.destination) ip.destination = flow.IP.destination;
    if (flow.IP.ipVersion) ip.ipVersion = enumName(IPVersion, flow.IP.ipVersion);
    if (flow.IP.encrypted) ip.encrypted = true;
    o.IP = ip;
  }
  if (flow.l4) o.l4 = layer4ToJson(flow.l4);
  if (flow.source) o.source = endpointToJson(flow.source);
  if (flow.destination) o.destination = endpointToJson(flow.destination);
  if (flow.Type) o.Type = enumName(FlowType, flow.Type);
  if (flow.node_name) o.node_name = flow.node_name;
  if (flow.node_labels.length) o.node_labels = [...flow.node_labels];
  if (flow.source_names.length) o.source_names = [...flow.source_names];
  if (flow.destination_names.length) o.destination_names = [...flow.destination_names];
  if (flow.l7) o.l7 = layer7ToJson(flow.l7);
  if (flow.is_reply !== undefined) o.is_reply = flow.is_reply;
  if (flow.event_type) {
    const et: Json = { type: flow.event_type.type };
    if (flow.event_type.sub_type) et.sub_type = flow.event_type.sub_type;
    o.event_type = et;
  }
  if (flow.source_service) o.source_service = { name: flow.source_service.name, namespace: flow.source_service.namespace };
  if (flow.destination_service) o.destination_service = { name: flow.destination_service.name, namespace: flow.destination_service.namespace };
  if (flow.traffic_direction) o.traffic_direction = enumName(TrafficDirection, flow.traffic_direction);
  if (flow.policy_match_type) o.policy_match_type = flow.policy_match_type;
  if (flow.drop_reason_desc) o.drop_reason_desc = dropReasonName(flow.drop_reason_desc);
  if (flow.Summary) o.Summary = flow.Summary;
  if (flow.egress_allowed_by.length) o.egress_allowed_by = policiesToJson(flow.egress_allowed_by);
  if (flow.ingress_allowed_by.length) o.ingress_allowed_by = policiesToJson(flow.ingress_allowed_by);
  if (flow.egress_denied_by.length) o.egress_denied_by = policiesToJson(flow.egress_denied_by);
  if (flow.ingress_denied_by.length) o.ingress_denied_by = policiesToJson(flow.ingress_denied_by);
  if (flow.policy_log.length) o.policy_log = [...flow.policy_log];
  return o;
}

/** The GetFlowsResponse wrapper `hubble observe -o json` prints for a flow. */
export function flowEventToJson(flow: Flow): Json {
  const o: Json = { flow: flowToJson(flow) };
  if (flow.node_name) o.node_name = flow.node_name;
  if (flow.time) o.time = timestampToJson(flow.time);
  return o;
}
