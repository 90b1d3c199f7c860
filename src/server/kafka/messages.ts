import { fitAlert, type FitCut } from '../../shared/alert/fit.js';
import { ALERT_SCHEMA, type AlertPayload } from '../../shared/alert/payload.js';
import { STATUSES, type AlertStatus, type StoredAlert } from '../store/alert-store.js';
import { checkPayload, LOG_SOURCES } from '../tunnel/payload-check.js';
import { isVerdictError, VerdictError } from '../../shared/errors.js';

// What Verdict writes to Kafka (docs/kafka.md, "Topics and messages").
//
// The log topic (<prefix>.log) is the alert log every replica projects into
// its SQLite: agent events and status changes, keyed by agent/fingerprint so
// everything that happens to one alert sits in one partition, in order.
// The export topic carries the alert as it is after each change, for SIEMs.

/** Bumped only for changes old readers cannot ignore; readers skip higher versions they do not know. */
export const LOG_VERSION = 1;

export interface AlertLogEvent {
  type: 'alert';
  v: typeof LOG_VERSION;
  agent: string;
  /** The agent's event id: a re-sent event is projected once. */
  id: string;
  payload: AlertPayload;
  /** When the replica that produced it received it (RFC 3339). */
  at: string;
  replica: string;
}

export interface StatusLogEvent {
  type: 'status';
  v: typeof LOG_VERSION;
  agent: string;
  fingerprint: string;
  /** The id of the event that opened the alert: with agent and fingerprint, its identity on every replica. */
  alert: string;
  status: AlertStatus;
  actor: string;
  at: string;
  replica: string;
}

/**
 * Webhook claims a delivery-group member recorded for changes of its log
 * partition, published to that same partition after the deliveries are in its
 * outbox and before it commits the group offset. Every replica's projection
 * takes them over (Outbox.applyClaims), so whichever replica owns the
 * partition next knows what was already given to which integration.
 */
export interface ClaimsLogEvent {
  type: 'claims';
  v: typeof LOG_VERSION;
  /** The log partition whose changes these claims are for (the one the message is in). */
  partition: number;
  /** The last log offset of the changes handed on (a string, as kafkajs gives offsets). */
  upto: string;
  claims: { integration: string; alert: string; event: string }[];
  at: string;
  replica: string;
}

/**
 * An agent batch's events for one log partition, in the order the agent sent
 * them: what a replica writes for agent batches. One message per partition
 * rather than per event, because Kafka clients (kafkajs in particular) spend
 * most of their CPU per record, not per byte. Every event of one alert is in
 * the same partition, so ordering per alert is as with one event per message.
 */
export interface EventsLogEvent {
  type: 'events';
  v: typeof LOG_VERSION;
  agent: string;
  /** When the replica that produced it received the batch (RFC 3339). */
  at: string;
  replica: string;
  events: LogEntry[];
}

/** One agent event in an `events` message. */
export interface LogEntry {
  /** The agent's event id: a re-sent event is projected once. */
  id: string;
  payload: AlertPayload;
}

export type LogEvent = AlertLogEvent | EventsLogEvent | StatusLogEvent | ClaimsLogEvent;

/** Partitioning key: an alert's events and status changes stay in one partition, in order. */
export function logKey(agent: string, fingerprint: string): string {
  return `${agent}/${fingerprint}`;
}

/**
 * An alert's identity across replicas. Agent names are DNS labels and event
 * ids UUIDs, so the first and the last "/" delimit the fingerprint.
 */
export function alertUid(agent: string, fingerprint: string, firstEvent: string): string {
  return `${agent}/${fingerprint}/${firstEvent}`;
}

export function parseAlertUid(uid: string): { agent: string; fingerprint: string; firstEvent: string } | undefined {
  const i = uid.indexOf('/');
  const j = uid.lastIndexOf('/');
  if (i <= 0 || j <= i + 1 || j === uid.length - 1) return undefined;
  return { agent: uid.slice(0, i), fingerprint: uid.slice(i + 1, j), firstEvent: uid.slice(j + 1) };
}

/** A message value that cannot be projected: why, so it can be logged and skipped. */

/** Parses a log message value; throws a VERDICT_LOG_MESSAGE_INVALID error for anything a replica must skip. */
export function decodeLogEvent(value: Buffer | null): LogEvent {
  if (!value) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'empty message value');
  let m: Partial<AlertLogEvent | StatusLogEvent> & { v?: number };
  try {
    m = JSON.parse(value.toString('utf8')) as typeof m;
  } catch {
    throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'message value is not JSON');
  }
  if (typeof m !== 'object' || m === null) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'message value is not a JSON object');
  if (m.v !== LOG_VERSION)
    throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', `log message version ${String(m.v)} is not ${LOG_VERSION}; is a newer Verdict writing to this log?`);
  if ((m as { type?: unknown }).type === 'claims') {
    const c = m as unknown as Partial<ClaimsLogEvent>;
    if (
      !Array.isArray(c.claims) ||
      !c.claims.every(
        (x) => typeof x === 'object' && x !== null && typeof x.integration === 'string' && typeof x.alert === 'string' && typeof x.event === 'string',
      )
    ) {
      throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'claims must be a list of {integration, alert, event}');
    }
    return c as ClaimsLogEvent;
  }
  if (typeof m.agent !== 'string' || !m.agent) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'agent is missing');
  if ((m as { type?: unknown }).type === 'events') {
    // Each event is checked by the reader (checkEntry), so one bad event costs only itself.
    if (!Array.isArray((m as Partial<EventsLogEvent>).events)) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'events must be a list');
    return m as unknown as EventsLogEvent;
  }
  if (m.type === 'alert') {
    if (typeof m.id !== 'string' || !m.id) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'event id is missing');
    const why = checkPayload(m.payload, LOG_SOURCES);
    if (why) throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', why);
    return m as AlertLogEvent;
  }
  if (m.type === 'status') {
    if (typeof m.fingerprint !== 'string' || typeof m.alert !== 'string')
      throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', 'fingerprint or alert is missing');
    if (!STATUSES.includes(m.status as AlertStatus))
      throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', `status ${JSON.stringify(m.status)} is not one of ${STATUSES.join(', ')}`);
    return m as StatusLogEvent;
  }
  throw new VerdictError('VERDICT_LOG_MESSAGE_INVALID', `unknown message type ${JSON.stringify(m.type)}`);
}

/** Why an event of an `events` message cannot be projected; undefined when it can. */
export function checkEntry(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return 'event is not a JSON object';
  const id = (e as Partial<LogEntry>).id;
  if (typeof id !== 'string' || !id) return 'event id is missing';
  return checkPayload((e as Partial<LogEntry>).payload, LOG_SOURCES);
}

/** Headers on log messages, so readers that only need to know which alert changed need not parse the value. */
export const HEADER_TYPE = 'verdict-type';
export const HEADER_REF = 'verdict-ref';

/**
 * Which alerts a log message is about: agent events by their event ids, a
 * status change by the alert's uid. From the headers (an `events` message
 * lists its event ids, comma-separated), or from the value for messages
 * written without them. Empty for what is not a Verdict event.
 */
export function logRefs(
  headers: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined,
  value: Buffer | null,
): { type: 'alert' | 'status'; ref: string }[] {
  const t = headers?.[HEADER_TYPE];
  const r = headers?.[HEADER_REF];
  if (t !== undefined && r !== undefined && !Array.isArray(t) && !Array.isArray(r)) {
    const type = t.toString();
    if (type === 'alert' || type === 'status') return [{ type, ref: r.toString() }];
    if (type === 'events')
      return r
        .toString()
        .split(',')
        .map((ref) => ({ type: 'alert' as const, ref }));
    if (type === 'claims') return [];
  }
  try {
    const ev = decodeLogEvent(value);
    if (ev.type === 'claims') return [];
    if (ev.type === 'events') return ev.events.flatMap((e) => (checkEntry(e) === undefined ? [{ type: 'alert' as const, ref: e.id }] : []));
    return ev.type === 'alert' ? [{ type: 'alert', ref: ev.id }] : [{ type: 'status', ref: alertUid(ev.agent, ev.fingerprint, ev.alert) }];
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_LOG_MESSAGE_INVALID')) return [];
    throw e;
  }
}

/** Kafka's default max.message.bytes is about 1 MB; stay well below it. */
export const MAX_MESSAGE_BYTES = 900 * 1024;

/**
 * The JSON of an agent event for the log (one event per message, as replicas
 * wrote before `events` messages), and what was cut: an event too big is cut
 * by fitAlert (what the store does not keep, then previews, then samples, then details), so
 * one huge event cannot exceed the broker's message size and block its
 * agent's spool forever. Undefined when even that is too big.
 */
export function encodeAlertEvent(
  agent: string,
  id: string,
  payload: AlertPayload,
  replica: string,
  at = new Date().toISOString(),
): { json: string; cut?: EventCut } | undefined {
  return fitted(payload, MAX_MESSAGE_BYTES, (p) =>
    JSON.stringify({ type: 'alert', v: LOG_VERSION, agent, id, payload: p, at, replica } satisfies AlertLogEvent),
  );
}

/** Room an `events` message's envelope may take (type, agent, time, replica, brackets). */
export const ENVELOPE_BYTES = 512;

/**
 * One event for an `events` message: its JSON as pieces, their UTF-8 size,
 * the payload as written and what was cut to fit. The agent's payload text
 * stays a piece of its own: joined into one string per event, then per
 * message, then encoded, each event's JSON was allocated three times over,
 * about a quarter of what a Kafka replica allocated per event.
 */
export interface Entry {
  pieces: readonly string[];
  bytes: number;
  payload: AlertPayload;
  /** What was cut to fit, when anything was. */
  cut?: EventCut;
}

/** An event's entry (Entry), cut like encodeAlertEvent's so that it fits a message alone. */
export function encodeEntry(id: string, payload: AlertPayload, text?: string): Entry | undefined {
  // The payload's JSON as the agent sent it (IncomingEvent.text): parsing it gives `payload`, as the projection does.
  if (text !== undefined) {
    const head = `{"id":${JSON.stringify(id)},"payload":`;
    const bytes = Buffer.byteLength(head) + Buffer.byteLength(text) + 1;
    if (bytes <= MAX_MESSAGE_BYTES - ENVELOPE_BYTES) return { pieces: [head, text, '}'], bytes, payload };
  }
  const f = fitted(payload, MAX_MESSAGE_BYTES - ENVELOPE_BYTES, (p) => JSON.stringify({ id, payload: p } satisfies LogEntry));
  if (!f) return undefined;
  const entry: Entry = { pieces: [f.json], bytes: Buffer.byteLength(f.json), payload: f.payload };
  if (f.cut) entry.cut = f.cut;
  return entry;
}

/** An `events` message's value, its entries (encodeEntry) written straight into one buffer; the caller keeps it within MAX_MESSAGE_BYTES. */
export function encodeEventsMessage(agent: string, at: string, replica: string, entries: readonly Entry[]): Buffer {
  const head = `{"type":"events","v":${LOG_VERSION},"agent":${JSON.stringify(agent)},"at":${JSON.stringify(at)},"replica":${JSON.stringify(replica)},"events":[`;
  // The commas between entries and the closing "]}".
  let size = Buffer.byteLength(head) + Math.max(0, entries.length - 1) + 2;
  for (const e of entries) size += e.bytes;
  const buf = Buffer.allocUnsafe(size);
  let n = buf.write(head, 0);
  for (let i = 0; i < entries.length; i++) {
    if (i > 0) buf[n++] = 0x2c;
    for (const piece of entries[i]!.pieces) n += buf.write(piece, n);
  }
  buf[n++] = 0x5d;
  buf[n++] = 0x7d;
  if (n !== size) throw new VerdictError('VERDICT_INTERNAL', `an events message took ${n} bytes, not the ${size} counted`);
  return buf;
}

/** What fitAlert cut from an event to fit a message: its steps, and the detail values it cut. */
export interface EventCut {
  steps: FitCut[];
  details: string[];
}

/** The payload's JSON by `encode`, the payload as written and what fitAlert cut to fit `max` (when anything); undefined when nothing fits. */
function fitted(payload: AlertPayload, max: number, encode: (p: AlertPayload) => string): { json: string; payload: AlertPayload; cut?: EventCut } | undefined {
  const f = fitAlert(payload, max, encode);
  if (f.json === undefined) return undefined;
  return f.cut.length === 0 ? { json: f.json, payload: f.alert } : { json: f.json, payload: f.alert, cut: { steps: f.cut, details: f.details } };
}

export function encodeClaimsEvent(c: Omit<ClaimsLogEvent, 'type' | 'v'>): string {
  const ev: ClaimsLogEvent = { type: 'claims', v: LOG_VERSION, ...c };
  return JSON.stringify(ev);
}

export function encodeStatusEvent(s: Omit<StatusLogEvent, 'type' | 'v'>): string {
  const ev: StatusLogEvent = { type: 'status', v: LOG_VERSION, ...s };
  return JSON.stringify(ev);
}

/**
 * The export topic's message: the alert payload (alerts/alert.schema.json)
 * as the alert stands after a change, plus its identity and state.
 */
export interface ExportedAlert extends Omit<AlertPayload, 'cilium' | 'falco'> {
  /** agent/fingerprint/first event id: stable across replicas and rebuilds (the feed's numeric ids are not). */
  id: string;
  status: AlertStatus;
  agent: string;
  /** Events received for this alert (count is the occurrences they carried). */
  events: number;
  updated_at: string;
  cilium?: unknown;
  falco?: unknown;
  /**
   * The log message behind this change. One agent batch is one message, shared by all its
   * alerts: consumers de-duplicate on (`id`, `change`), never on `change` alone.
   */
  change: { kind: 'alert' | 'status'; log_partition: number; log_offset: string };
}

export function exportedAlert(a: StoredAlert, uid: string, change: ExportedAlert['change'], samples = a.samples): ExportedAlert {
  return {
    schema: ALERT_SCHEMA,
    id: uid,
    status: a.status,
    agent: a.agent,
    source: a.source as AlertPayload['source'],
    fingerprint: a.fingerprint,
    severity: a.severity as AlertPayload['severity'],
    title: a.title,
    description: a.description,
    cluster: a.cluster,
    namespace: a.namespace,
    count: a.count,
    events: a.events,
    first_seen: a.first_seen,
    last_seen: a.last_seen,
    updated_at: a.updated_at,
    policies: a.policies,
    rule: a.rule,
    labels: a.labels,
    ...a.details,
    samples,
    change,
  };
}
