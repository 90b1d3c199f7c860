// @ts-check
// The alert list: its order, its rows, the line above it.
import { SEVERITIES, SEVERITY_RANK } from './constants.js';
import { select } from './detail.js';
import { $, el, replace } from './dom.js';
import { CLOCK_SKEW_TITLE, local, policyText, rel } from './format.js';
import { NO_NAMESPACE, state } from './state.js';
import { loadList } from './stream.js';
/** @import { Alert } from './api-types.js' */

/** @param {string} s a severity the page has a colour for ('info' for anything else) */
export const sevClass = (s) => (/** @type {readonly string[]} */ (SEVERITIES).includes(s) ? s : 'info');

/**
 * The list's order, as the server sorts it (see the API's `sort`).
 * @param {Alert} a
 * @param {Alert} b
 */
function compare(a, b) {
  switch (state.sort) {
    case 'created':
      return b.id - a.id;
    case 'severity':
      return (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) || b.id - a.id;
    case 'count':
      return b.count - a.count || b.id - a.id;
    default:
      return (a.last_seen < b.last_seen ? 1 : a.last_seen > b.last_seen ? -1 : 0) || b.id - a.id;
  }
}

export function resort() {
  state.order = [...state.alerts.values()].sort(compare).map((a) => a.id);
}

/** @param {Alert} a */
function row(a) {
  return el(
    'li',
    {
      class: `alert ${sevClass(a.severity)} ${a.status}${state.flash.has(a.id) ? ' flash' : ''}`,
      'data-id': a.id,
      'aria-selected': state.selected === a.id ? 'true' : 'false',
      tabindex: '-1',
      onclick: () => select(a.id),
    },
    el('span', { class: 'sevlabel', text: a.severity }),
    el('span', { class: 'title', title: a.title, text: a.title }),
    el(
      'span',
      { class: 'right' },
      el('span', { class: 'n', text: `×${a.count}` }),
      el('br'),
      a.clock_skew ? el('span', { class: 'skew', title: CLOCK_SKEW_TITLE, text: 'clock ahead' }) : null,
      el('span', { class: 'when', 'data-time': a.last_seen, title: `last seen ${local(a.last_seen)}`, text: rel(a.last_seen) }),
    ),
    el(
      'span',
      { class: 'meta' },
      el('span', { class: `badge ${a.status}`, text: a.status }),
      ' ',
      el('span', { class: 'src', text: a.source }),
      ' · ',
      a.namespace || NO_NAMESPACE,
      ' · ',
      policyText(a),
      ' · ',
      a.agent,
    ),
  );
}

export function renderList() {
  replace(
    $('alerts'),
    state.order.map((id) => {
      const a = state.alerts.get(id);
      return a ? row(a) : null;
    }),
  );
  const n = state.order.length;
  const filters = [];
  if (state.namespace !== null) filters.push(state.namespace ? `namespace ${state.namespace}` : NO_NAMESPACE);
  if (state.q.trim()) filters.push(`“${state.q.trim()}”`);
  const info = $('list-info');
  info.replaceChildren(`${n}${state.nextCursor ? '+' : ''} alert${n === 1 ? '' : 's'}${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
  if (state.namespace !== null) {
    const clear = () => {
      state.namespace = null;
      loadList();
    };
    info.append(' ', el('button', { type: 'button', class: 'ghost', onclick: clear, text: 'clear namespace' }));
  }
  $('load-more').hidden = !state.nextCursor;
  state.flash.clear();
}

/** "5m ago" moves on without a re-render. */
export function tickTimes() {
  for (const w of document.querySelectorAll('.when[data-time]')) {
    if (w instanceof HTMLElement && w.dataset.time) w.textContent = rel(w.dataset.time);
  }
}
