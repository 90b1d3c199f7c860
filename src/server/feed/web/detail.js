// @ts-check
// An alert's detail: its fields, the Cilium flow or the Falco output, labels,
// the occurrence that set its severity beside the latest ones, raw samples and
// status history.
import { api, messageOf, statusOf } from './api.js';
import { CLOCK_SKEW_MS } from './constants.js';
import { $, el, replace } from './dom.js';
import { CLOCK_SKEW_TITLE, local, rel } from './format.js';
import { sevClass } from './list.js';
import { state } from './state.js';
import { actionButtons } from './triage.js';
/** @import { Alert, AlertDetail, CiliumDetails, EndpointSummary, FalcoDetails, Occurrence } from './api-types.js' */
/** @import { Child } from './dom.js' */

/** @param {number} id */
export function select(id) {
  state.selected = id;
  for (const li of document.querySelectorAll('.alert[aria-selected=true]')) li.setAttribute('aria-selected', 'false');
  const li = document.querySelector(`.alert[data-id="${Number(id)}"]`);
  if (li) {
    li.setAttribute('aria-selected', 'true');
    li.scrollIntoView({ block: 'nearest' });
  }
  loadDetail(id);
}

/** @type {ReturnType<typeof setTimeout> | null} */
let detailTimer = null;
/** The selected alert changed: load it again once the burst has passed. */
export function refreshDetailSoon() {
  if (detailTimer) return;
  detailTimer = setTimeout(() => {
    detailTimer = null;
    if (state.selected !== null) loadDetail(state.selected);
  }, 500);
}

/** @param {number} id */
export async function loadDetail(id) {
  try {
    /** @type {AlertDetail} */
    const d = await api(`/api/v1/alerts/${Number(id)}`);
    if (state.selected !== id) return;
    state.detail = d;
    renderDetail(d);
  } catch (e) {
    if (state.selected !== id) return;
    const text = statusOf(e) === 404 ? 'This alert is gone (purged by retention).' : `Could not load the alert: ${messageOf(e)}`;
    replace($('detail'), el('p', { class: 'error', text }));
  }
}

/**
 * A term and its description; nothing when there is no value.
 * @param {string} name
 * @param {Child} value
 * @returns {Child}
 */
function field(name, value) {
  if (value === undefined || value === null || value === '') return null;
  return [el('dt', { text: name }), el('dd', {}, value)];
}

/** @param {Record<string, string> | undefined} obj */
function labels(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return null;
  return el(
    'div',
    { class: 'labels' },
    entries.map(([k, v]) => el('span', { class: 'label' }, el('i', { text: `${k}=` }), String(v))),
  );
}

const skewFlag = () => el('span', { class: 'skew', title: CLOCK_SKEW_TITLE, text: 'clock ahead' });

/** @param {EndpointSummary | undefined} e */
function endpoint(e) {
  if (!e) return el('div', { class: 'end', text: '?' });
  return el(
    'div',
    { class: 'end' },
    el('div', { class: 'pod', text: e.pod ? `${e.namespace}/${e.pod}` : e.names?.[0] || e.ip || '?' }),
    el('div', {
      class: 'sub',
      text: [e.workload, e.ip, e.port ? `port ${e.port}` : '', e.identity ? `identity ${e.identity}` : ''].filter(Boolean).join(' · '),
    }),
  );
}

/** @param {CiliumDetails} c */
function ciliumSection(c) {
  return [
    el('h3', { text: 'Flow' }),
    el('div', { class: 'flow' }, endpoint(c.source), el('div', { class: 'arrow' }, `${c.direction} ✕`, el('br'), c.protocol || ''), endpoint(c.destination)),
    el(
      'dl',
      { class: 'fields' },
      field('Drop reason', c.reason),
      field('Node', c.node),
      c.http ? field('HTTP', `${c.http.method} ${c.http.url}`) : null,
      c.dns
        ? field('DNS', [c.dns.query, c.dns.qtypes?.length ? ` (${c.dns.qtypes.join(', ')})` : '', c.dns.rcode ? `, rcode ${c.dns.rcode}` : ''].join(''))
        : null,
      c.kafka ? field('Kafka', `${c.kafka.api_key} v${c.kafka.api_version} topic ${c.kafka.topic}`) : null,
      c.icmp ? field('ICMP', `type ${c.icmp.type} code ${c.icmp.code}`) : null,
    ),
  ];
}

/** @param {FalcoDetails} f */
function falcoSection(f) {
  return [
    el('h3', { text: 'Falco output' }),
    el('div', { class: 'output mono', text: f.output || '' }),
    el(
      'dl',
      { class: 'fields' },
      field('Rule', f.rule),
      field('Priority', f.priority),
      field('Source', f.source),
      field('Host', f.hostname),
      field('Tags', (f.tags || []).join(', ')),
    ),
    el('details', {}, el('summary', { text: 'Output fields' }), el('pre', { text: JSON.stringify(f.output_fields || {}, null, 2) })),
  ];
}

/**
 * A table of occurrences: when received, the time they carry (flagged when it
 * is ahead of the receipt), count, severity, what.
 * @param {Occurrence[]} occurrences
 * @param {number | undefined} setter the event that set the alert's severity, marked
 */
function occurrenceTable(occurrences, setter) {
  return el(
    'table',
    { class: 'occ' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ['Received', 'Stamped', 'Count', 'Severity', 'What'].map((h) => el('th', { text: h })),
      ),
    ),
    el(
      'tbody',
      {},
      occurrences.map((o) => {
        const ahead = Date.parse(o.last_seen) - Date.parse(o.received_at) > CLOCK_SKEW_MS;
        const sets = o.event_no === setter;
        return el(
          'tr',
          { 'data-event-no': o.event_no, class: sets ? 'sets-severity' : '', title: sets ? 'This occurrence set the alert’s severity' : null },
          el('td', { title: local(o.received_at), text: rel(o.received_at) }),
          el(
            'td',
            { class: ahead ? 'stamped ahead' : 'stamped', title: ahead ? CLOCK_SKEW_TITLE : local(o.last_seen) },
            local(o.last_seen),
            ahead ? [' ', skewFlag()] : null,
          ),
          el('td', { class: 'num', text: String(o.count) }),
          el('td', {}, el('span', { class: `sevtext ${sevClass(o.severity)}`, text: o.severity })),
          el('td', {}, o.description, labels(o.labels)),
        );
      }),
    ),
  );
}

/**
 * The occurrence that set the severity, shown beside the latest: when an
 * alert's repeats are low, the one that made it critical may be long gone from them.
 * @param {AlertDetail} d
 */
function severitySection(d) {
  const so = d.severity_occurrence;
  if (!so) return null;
  const among = d.occurrences.some((o) => o.event_no === so.event_no);
  return el(
    'section',
    { class: 'severity-occurrence' },
    el('h3', {}, 'Set the severity: ', el('span', { class: `sevtext ${sevClass(so.severity)}`, text: so.severity })),
    // Among the latest it is marked there; once they have moved past it, it is shown here.
    among
      ? el('p', { class: 'muted', text: `Received ${local(so.received_at)}: marked among the latest occurrences below.` })
      : [el('p', { class: 'muted', text: `Older than the latest ${d.occurrences.length} occurrences below.` }), occurrenceTable([so], so.event_no)],
  );
}

/** @param {Alert} a */
function fieldsOf(a) {
  return el(
    'dl',
    { class: 'fields' },
    field('Namespace', a.namespace || 'none'),
    field('Cluster', a.cluster),
    field('Agent', a.agent && el('a', { href: `#agents/${encodeURIComponent(a.agent)}`, title: 'This agent in the Agents view', text: a.agent })),
    a.policies.length ? field('Policies', a.policies.map((p) => `${p.kind} ${p.namespace ? `${p.namespace}/` : ''}${p.name}`).join(', ')) : null,
    field('Rule', a.rule),
    field('Occurrences', `${a.count} in ${a.events} event${a.events === 1 ? '' : 's'}`),
    field('First seen', local(a.first_seen)),
    field('Last seen', [`${local(a.last_seen)} (${rel(a.last_seen)})`, a.clock_skew ? [' ', skewFlag()] : null]),
    // Times stamped by a fast clock are shown as given; when the server got them says how far ahead.
    a.clock_skew ? field('Last received', `${local(a.last_received_at)} (to the minute)`) : null,
    field('Fingerprint', el('span', { class: 'mono', text: a.fingerprint })),
  );
}

/** @param {string} s a sample as the agent sent it: JSON text is indented */
function prettyMaybe(s) {
  try {
    return JSON.stringify(JSON.parse(s), null, 2);
  } catch {
    return s;
  }
}

/** @param {AlertDetail} d */
function renderDetail(d) {
  const a = d.alert;
  const samples = a.samples || [];
  replace(
    $('detail'),
    el(
      'div',
      {},
      el('span', { class: `badge sevbadge ${sevClass(a.severity)}`, text: a.severity }),
      ' ',
      el('span', { class: `badge ${a.status}`, text: a.status }),
      ' ',
      el('span', { class: 'src', text: `#${a.id} · ${a.source}` }),
    ),
    el('h1', { text: a.title }),
    actionButtons(a),
    el('p', { id: 'action-error', class: 'error', hidden: true }),
    fieldsOf(a),
    // For Falco the description is the output, shown with its fields below.
    a.details?.falco ? null : [el('h3', { text: 'Description' }), el('div', { class: 'output', text: a.description })],
    a.details?.cilium ? ciliumSection(a.details.cilium) : null,
    a.details?.falco ? falcoSection(a.details.falco) : null,
    el('h3', { text: 'Labels (first occurrence)' }),
    labels(a.labels) || el('p', { text: '–' }),
    severitySection(d),
    el('h3', { text: `Latest occurrences (${d.occurrences.length} of ${a.events})` }),
    occurrenceTable(d.occurrences, d.severity_occurrence?.event_no),
    el('h3', { text: `Raw ${a.source === 'cilium' ? 'flows' : 'events'} (${samples.length})` }),
    samples.map((s, i) =>
      el(
        'details',
        { open: i === samples.length - 1 },
        el('summary', { text: `sample ${i + 1}` }),
        el('pre', { text: typeof s === 'string' ? prettyMaybe(s) : JSON.stringify(s, null, 2) }),
      ),
    ),
    el('h3', { text: 'History' }),
    d.history.length
      ? el(
          'ol',
          { class: 'history' },
          d.history.map((h) => el('li', {}, el('b', { text: h.to }), ` from ${h.from} by `, el('b', { text: h.actor }), ` · ${local(h.at)}`)),
        )
      : el('p', { class: 'muted', text: `Triggered ${local(a.created_at)}; no status change yet.` }),
  );
}
