// @ts-check
// Alerts or Agents: the view is the URL fragment (none or #alerts: the alerts;
// #agents; #agents/<name> opens one agent), so a view can be linked, reloaded
// and left with Back. The alert list and its stream stay open under the Agents
// view: coming back shows them current without loading again.
import { hideAgents, showAgents } from './agents.js';
import { $ } from './dom.js';
import { state } from './state.js';
import { alertsUrl } from './url-state.js';
/** @import { View } from './state.js' */

/**
 * @param {string} hash location.hash; parts after & (a token) are not the view's
 * @returns {{ view: View, agent: string }}
 */
export function parseView(hash) {
  const first = hash.replace(/^#/, '').split('&')[0] ?? '';
  const m = /^agents(?:\/(.*))?$/.exec(first);
  if (!m) return { view: 'alerts', agent: '' };
  let agent = '';
  try {
    agent = decodeURIComponent(m[1] ?? '');
  } catch {
    agent = '';
  }
  return { view: 'agents', agent };
}

let shown = '';

/** Shows the view the URL names (at start, and on every change of the fragment). */
export function applyView() {
  const { view, agent } = parseView(location.hash);
  // Back fires both popstate and hashchange: one change, one load.
  const key = `${view}/${agent}`;
  if (key === shown) return;
  shown = key;
  state.view = view;
  document.body.dataset.view = view;
  $('alerts-view').hidden = view !== 'alerts';
  $('agents-view').hidden = view !== 'agents';
  for (const t of document.querySelectorAll('#view-tabs [data-view]')) {
    if (t instanceof HTMLElement) {
      if (t.dataset.view === view) t.setAttribute('aria-current', 'page');
      else t.removeAttribute('aria-current');
    }
  }
  document.title = view === 'agents' ? 'Verdict · agents' : 'Verdict · alerts';
  if (view === 'agents') showAgents(agent);
  else hideAgents();
}

export function wireViews() {
  for (const t of document.querySelectorAll('#view-tabs a[data-view]')) {
    if (!(t instanceof HTMLAnchorElement)) continue;
    t.addEventListener('click', (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      // The alerts keep the bare address they always had, with their filters if any (url-state.js).
      const url = t.dataset.view === 'alerts' ? alertsUrl() : `${location.pathname}${location.search}#agents`;
      if (url !== location.pathname + location.search + location.hash) history.pushState(null, '', url);
      applyView();
    });
  }
  window.addEventListener('popstate', applyView);
  window.addEventListener('hashchange', applyView);
}
