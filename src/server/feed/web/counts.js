// @ts-check
// Counts in the status view: by severity (the header's chips), by source and
// by namespace (the bars); each filters the list when clicked.
import { api, statusParams } from './api.js';
import { SEVERITIES } from './constants.js';
import { toggleSeverity } from './controls.js';
import { $, el, replace } from './dom.js';
import { NO_NAMESPACE, state } from './state.js';
import { loadList } from './stream.js';
/** @import { Counts } from './api-types.js' */

/** @type {ReturnType<typeof setTimeout> | null} */
let countsTimer = null;

/** Counts again once changes have settled (a burst of them asks once). */
export function refreshCountsSoon() {
  if (countsTimer) return;
  countsTimer = setTimeout(() => {
    countsTimer = null;
    loadCounts();
  }, 1500);
}

export async function loadCounts() {
  const p = statusParams();
  try {
    /** @type {Counts[]} */
    const [sev, src, ns] = await Promise.all(['severity', 'source', 'namespace'].map((by) => api(`/api/v1/alerts/counts?by=${by}&limit=12&${p}`)));
    if (!sev || !src || !ns) return;
    renderSeverityCounts(sev.counts);
    renderBars($('source-counts'), src.counts, (key) => {
      state.source = state.source === key ? '' : key;
      /** @type {HTMLSelectElement} */ ($('source-filter')).value = state.source;
      loadList();
    });
    renderBars(
      $('namespace-counts'),
      ns.counts,
      (key) => {
        state.namespace = state.namespace === key ? null : key;
        loadList();
      },
      NO_NAMESPACE,
    );
  } catch {
    /* the list shows connection problems already */
  }
}

/** @param {Counts['counts']} counts */
function renderSeverityCounts(counts) {
  const by = new Map(counts.map((c) => [c.key, c.alerts]));
  replace(
    $('severity-counts'),
    SEVERITIES.map((s) =>
      el(
        'button',
        {
          type: 'button',
          class: `count-chip ${s}`,
          'data-severity-count': s,
          'aria-pressed': state.severities.has(s) ? 'true' : 'false',
          title: `${s} alerts in this status view; click to filter`,
          onclick: () => toggleSeverity(s),
        },
        el('b', { text: String(by.get(s) || 0) }),
        el('span', { text: s }),
      ),
    ),
  );
}

/**
 * @param {HTMLElement} target
 * @param {Counts['counts']} counts
 * @param {(key: string) => void} onPick
 * @param {string} [none] the label of the empty key
 */
function renderBars(target, counts, onPick, none = '(none)') {
  if (!counts.length) {
    target.replaceChildren(el('span', { class: 'muted', text: '–' }));
    return;
  }
  replace(
    target,
    counts.map((c) =>
      el(
        'button',
        { type: 'button', class: 'bar', title: `${c.events} occurrences`, onclick: () => onPick(c.key) },
        el('b', { text: String(c.alerts) }),
        el('span', { text: c.key || none }),
      ),
    ),
  );
}
