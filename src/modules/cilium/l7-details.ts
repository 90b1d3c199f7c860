import { L7FlowType, type Flow } from '../../gen/flow/flow.js';
import type { CiliumDetails } from '../../shared/alert/payload.js';

// What an L7 flow asked for (HTTP request, DNS query, Kafka request), in the
// words of the alert payload, for alerts and `verdict replay` alike: an L7
// denial is only actionable when it says what was refused.

export type L7Details = Pick<CiliumDetails, 'http' | 'dns' | 'kafka'>;

/** RFC 1035/6895 names of the DNS response codes people meet. */
const RCODE_NAMES: Readonly<Record<number, string>> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
  6: 'YXDOMAIN',
  7: 'YXRRSET',
  8: 'NXRRSET',
  9: 'NOTAUTH',
  10: 'NOTZONE',
};

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

export function l7Details(flow: Flow): L7Details {
  const r = flow.l7?.record;
  if (!r) return {};
  switch (r.$case) {
    case 'http':
      return { http: { method: r.value.method, url: r.value.url } };
    case 'dns': {
      const v = r.value;
      const dns: NonNullable<L7Details['dns']> = { query: v.query };
      if (v.qtypes.length > 0) dns.qtypes = [...v.qtypes];
      // proto3 cannot tell NOERROR from "no rcode": a request carries none, a response always does.
      if (v.rcode !== 0 || flow.l7!.type === L7FlowType.RESPONSE) dns.rcode = v.rcode;
      return { dns };
    }
    case 'kafka': {
      const v = r.value;
      return { kafka: { api_key: v.api_key, api_version: v.api_version, topic: v.topic, correlation_id: v.correlation_id, error_code: v.error_code } };
    }
  }
}

/** One line for titles, descriptions and people: `GET http://x/`, `DNS A evil.net. (REFUSED)`, `Kafka produce topic payments`. */
export function l7Summary(d: L7Details): string {
  if (d.http) return `${d.http.method} ${d.http.url}`;
  if (d.dns) {
    const types = d.dns.qtypes?.length ? `${d.dns.qtypes.join(',')} ` : '';
    return `DNS query ${types}${d.dns.query}${d.dns.rcode !== undefined ? ` (${rcodeName(d.dns.rcode)})` : ''}`;
  }
  if (d.kafka) return `Kafka ${d.kafka.api_key || 'request'}${d.kafka.topic ? ` topic ${d.kafka.topic}` : ''}`;
  return '';
}

/**
 * The part of an alert's identity the L7 request gives: what was asked, not
 * what changes per request (HTTP query string, DNS answer, Kafka correlation id).
 */
export function l7FingerprintPart(d: L7Details): string {
  if (d.http) return `${d.http.method} ${d.http.url.replace(/\?.*$/, '')}`;
  if (d.dns) return `dns ${d.dns.query.toLowerCase().replace(/\.$/, '')}`;
  if (d.kafka) return `kafka ${d.kafka.api_key} ${d.kafka.topic}`;
  return '';
}
