// @ts-check
// The alert filters in the URL fragment (#q=shell&status=all&namespace=shop), so a
// reload keeps them and a view can be shared. Only what differs from the defaults
// is written; the fragment's other parts (the view, #agents; a #token= being taken)
// are token.js's and views.js's. A fragment never reaches the server or its logs.
import { SEVERITIES } from './constants.js';
import { STATUS_SETS, state } from './state.js';
/** @import { Severity } from './api-types.js' */
/** @import { SortKey, StatusView } from './state.js' */

const SORT_KEYS = ['last_seen', 'created', 'severity', 'count'];
const SOURCES = ['cilium', 'falco', 'gitops'];

/** The filters that differ from the defaults, as fragment parameters ('' for none). */
export function filtersFragment() {
  const p = new URLSearchParams();
  if (state.status !== 'open') p.set('status', state.status);
  if (state.severities.size) p.set('severity', SEVERITIES.filter((s) => state.severities.has(s)).join(','));
  if (state.source) p.set('source', state.source);
  // namespace= (empty) is the alerts with none, as in the API.
  if (state.namespace !== null) p.set('namespace', state.namespace);
  if (state.q.trim()) p.set('q', state.q.trim());
  if (state.sort !== 'last_seen') p.set('sort', state.sort);
  // %20 rather than +: what people type in a fragment, and what they read back.
  return p.toString().replaceAll('+', '%20');
}

/** @param {string} hash */
function params(hash) {
  return new URLSearchParams(hash.replace(/^#/, '').replaceAll('+', '%2B'));
}

/**
 * Reads the filters from the fragment into the state (absent ones are the defaults;
 * values the page does not know are ignored). True when the state changed.
 * @param {string} hash location.hash
 */
export function readFilters(hash) {
  const p = params(hash);
  const before = filtersFragment();
  const status = p.get('status') ?? 'open';
  // Own keys only: `constructor` or `__proto__` in a fragment is not a status view.
  state.status = /** @type {StatusView} */ (Object.hasOwn(STATUS_SETS, status) ? status : 'open');
  state.severities = new Set(
    (p.get('severity') ?? '')
      .split(',')
      .filter((s) => /** @type {readonly string[]} */ (SEVERITIES).includes(s))
      .map((s) => /** @type {Severity} */ (s)),
  );
  const source = p.get('source') ?? '';
  state.source = SOURCES.includes(source) ? source : '';
  state.namespace = p.get('namespace');
  state.q = p.get('q') ?? '';
  const sort = p.get('sort') ?? 'last_seen';
  state.sort = /** @type {SortKey} */ (SORT_KEYS.includes(sort) ? sort : 'last_seen');
  return filtersFragment() !== before;
}

/** The address of the alerts view with the current filters. */
export function alertsUrl() {
  const f = filtersFragment();
  return location.pathname + location.search + (f ? `#${f}` : '');
}

/** Writes the filters into the address bar (no new history entry), while the alerts are shown. */
export function writeFilters() {
  if (state.view !== 'alerts') return;
  const url = alertsUrl();
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, '', url);
}
