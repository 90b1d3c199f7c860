// @ts-check
// The filters, the sort, the search box and the keyboard.
import { select } from './detail.js';
import { SEVERITIES } from './constants.js';
import { $, el, replace } from './dom.js';
import { state } from './state.js';
import { loadList, loadMore } from './stream.js';
import { ACTIONS, changeStatus } from './triage.js';
/** @import { Severity } from './api-types.js' */
/** @import { SortKey, StatusView } from './state.js' */

/** @param {Severity} s */
export function toggleSeverity(s) {
  if (state.severities.has(s)) state.severities.delete(s);
  else state.severities.add(s);
  syncControls();
  loadList();
}

/** The buttons' pressed state from the state. */
export function syncControls() {
  for (const b of document.querySelectorAll('#status-filter button')) {
    if (b instanceof HTMLElement) b.setAttribute('aria-pressed', b.dataset.status === state.status ? 'true' : 'false');
  }
  for (const b of document.querySelectorAll('#severity-filter button')) {
    if (!(b instanceof HTMLElement)) continue;
    const on = state.severities.size === 0 || state.severities.has(/** @type {Severity} */ (b.dataset.severity));
    b.setAttribute('aria-pressed', on ? 'true' : 'false');
  }
  for (const b of document.querySelectorAll('[data-severity-count]')) {
    if (b instanceof HTMLElement) b.setAttribute('aria-pressed', state.severities.has(/** @type {Severity} */ (b.dataset.severityCount)) ? 'true' : 'false');
  }
}

/** The search box, source and sort from the state (at start, and when the URL brings other filters). */
export function showFilterInputs() {
  /** @type {HTMLInputElement} */ ($('search')).value = state.q;
  /** @type {HTMLSelectElement} */ ($('source-filter')).value = state.source;
  /** @type {HTMLSelectElement} */ ($('sort')).value = state.sort;
}

/** @param {number} delta j is +1, k is -1 */
function moveSelection(delta) {
  if (!state.order.length) return;
  const i = state.selected === null ? -1 : state.order.indexOf(state.selected);
  const next = state.order[Math.max(0, Math.min(state.order.length - 1, i < 0 ? 0 : i + delta))];
  if (next !== undefined) select(next);
}

export function wireControls() {
  for (const b of document.querySelectorAll('#status-filter button')) {
    if (!(b instanceof HTMLElement)) continue;
    b.addEventListener('click', () => {
      state.status = /** @type {StatusView} */ (b.dataset.status);
      syncControls();
      loadList();
    });
  }
  replace(
    $('severity-filter'),
    SEVERITIES.map((s) =>
      el('button', { type: 'button', 'data-severity': s, class: `sev ${s}`, onclick: () => toggleSeverity(s) }, s.charAt(0).toUpperCase() + s.slice(1)),
    ),
  );
  const source = /** @type {HTMLSelectElement} */ ($('source-filter'));
  source.addEventListener('change', () => {
    state.source = source.value;
    loadList();
  });
  const sort = /** @type {HTMLSelectElement} */ ($('sort'));
  sort.addEventListener('change', () => {
    state.sort = /** @type {SortKey} */ (sort.value);
    loadList();
  });
  const search = /** @type {HTMLInputElement} */ ($('search'));
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let searchTimer;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = search.value;
      loadList();
    }, 250);
  });
  $('load-more').addEventListener('click', loadMore);
  document.addEventListener('keydown', (e) => {
    // The keys act on the alert list; under the Agents view it is hidden.
    if (state.view !== 'alerts') return;
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || /** @type {HTMLDialogElement} */ ($('token-dialog')).open) {
      if (e.key === 'Escape' && e.target instanceof HTMLInputElement) e.target.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === 'j') moveSelection(1);
    else if (e.key === 'k') moveSelection(-1);
    else if (e.key === '/') {
      e.preventDefault();
      search.focus();
    } else if (state.selected !== null) {
      const act = ACTIONS.find(({ key }) => key && key === e.key);
      if (act) changeStatus(state.selected, act.status);
    }
  });
}
