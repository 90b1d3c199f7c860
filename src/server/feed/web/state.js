// @ts-check
// The page's state: the filters, the alerts loaded, the stream's cursor and
// the selected alert. One object, read and written by the other modules.
/** @import { Alert, AlertDetail, Severity, Status } from './api-types.js' */

/** @typedef {'open' | 'triggered' | 'acknowledged' | 'resolved' | 'ignored' | 'all'} StatusView */
/** @typedef {'last_seen' | 'created' | 'severity' | 'count'} SortKey */
/** @typedef {'alerts' | 'agents'} View */

/** What the page calls the alerts with no namespace (host events, cluster-scoped ones). */
export const NO_NAMESPACE = '(no namespace)';

export const TOKEN_KEY = 'verdict.feedToken';
/** Alerts asked for per page. */
export const PAGE = 100;

/** The statuses each status view lists; none means all. @type {Record<StatusView, readonly Status[]>} */
export const STATUS_SETS = {
  open: ['triggered', 'acknowledged'],
  triggered: ['triggered'],
  acknowledged: ['acknowledged'],
  resolved: ['resolved'],
  ignored: ['ignored'],
  all: [],
};

/**
 * @typedef {object} PageState
 * @property {string} token the feed token (from the URL fragment, localStorage or the dialog)
 * @property {View} view the view shown (from the URL fragment: #agents, else the alerts)
 * @property {StatusView} status
 * @property {Set<Severity>} severities none: all
 * @property {string} source
 * @property {string | null} namespace null: any; '' the alerts with none (NO_NAMESPACE names them)
 * @property {string} q
 * @property {SortKey} sort
 * @property {Map<number, Alert>} alerts the alerts loaded, by id
 * @property {number[]} order their ids in the list's order
 * @property {string | null} nextCursor
 * @property {number | null} cursor the stream position to resume from
 * @property {number | null} selected
 * @property {AlertDetail | null} detail
 * @property {Set<number>} flash alerts that changed since the last render
 * @property {WebSocket | null} ws
 * @property {number} retries
 * @property {number} generation bumped by every reload; answers for older ones are dropped
 */

/** @type {PageState} */
export const state = {
  token: '',
  view: 'alerts',
  status: 'open',
  severities: new Set(),
  source: '',
  namespace: null,
  q: '',
  sort: 'last_seen',
  alerts: new Map(),
  order: [],
  nextCursor: null,
  cursor: null,
  selected: null,
  detail: null,
  flash: new Set(),
  ws: null,
  retries: 0,
  generation: 0,
};
