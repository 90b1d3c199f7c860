// @ts-check
// Loading the list (a page, then the live stream from its cursor) and keeping
// it current: the WebSocket pushes every change, so the page never polls.
import { api, filterParams, messageOf, statusOf } from './api.js';
import { loadCounts, refreshCountsSoon } from './counts.js';
import { refreshDetailSoon } from './detail.js';
import { setConn, showError } from './dom.js';
import { renderList, resort } from './list.js';
import { PAGE, state } from './state.js';
import { askForToken } from './token.js';
import { writeFilters } from './url-state.js';
/** @import { Alert, AlertPage, StreamMessage } from './api-types.js' */

/** Loads the list afresh for the current filters, then opens the stream from where it was read. */
export async function loadList() {
  if (!state.token) {
    askForToken();
    return;
  }
  const gen = ++state.generation;
  // Every change of filters loads the list: the address bar follows them here.
  writeFilters();
  closeStream();
  setConn('connecting', 'Loading…');
  const p = filterParams();
  p.set('sort', state.sort);
  p.set('limit', String(PAGE));
  try {
    /** @type {AlertPage} */
    const page = await api(`/api/v1/alerts?${p}`);
    if (gen !== state.generation) return;
    showError('');
    state.alerts = new Map(page.alerts.map((a) => [a.id, a]));
    state.nextCursor = page.next_cursor;
    state.cursor = page.stream_cursor;
    // A filter matching few of many alerts gives short pages (the server bounds
    // each query's work): follow a few to fill the screen.
    for (let i = 0; i < 5 && state.nextCursor && state.alerts.size < PAGE; i++) {
      p.set('cursor', state.nextCursor);
      /** @type {AlertPage} */
      const more = await api(`/api/v1/alerts?${p}`);
      if (gen !== state.generation) return;
      for (const a of more.alerts) state.alerts.set(a.id, a);
      state.nextCursor = more.next_cursor;
    }
    resort();
    renderList();
    openStream(gen);
    loadCounts();
  } catch (e) {
    if (gen !== state.generation) return;
    const status = statusOf(e);
    setConn(status === 401 ? 'auth' : 'down', status === 401 ? 'Token needed' : 'Offline');
    showError(status === 401 ? '' : `Could not load alerts: ${messageOf(e)}`);
    if (status !== 401 && status !== 400) setTimeout(() => gen === state.generation && loadList(), 5000);
  }
}

/** The next page, below the alerts already listed. */
export async function loadMore() {
  if (!state.nextCursor) return;
  const p = filterParams();
  p.set('sort', state.sort);
  p.set('limit', String(PAGE));
  p.set('cursor', state.nextCursor);
  const gen = state.generation;
  try {
    /** @type {AlertPage} */
    const page = await api(`/api/v1/alerts?${p}`);
    if (gen !== state.generation) return;
    for (const a of page.alerts) if (!state.alerts.has(a.id)) state.alerts.set(a.id, a);
    state.nextCursor = page.next_cursor;
    resort();
    renderList();
  } catch (e) {
    showError(`Could not load more: ${messageOf(e)}`);
  }
}

export function closeStream() {
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.onmessage = null;
    state.ws.close();
    state.ws = null;
  }
}

/** @param {number} gen the load this stream belongs to */
function openStream(gen) {
  closeStream();
  const p = filterParams();
  if (state.cursor !== null) p.set('cursor', String(state.cursor));
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/alerts/stream?${p}`;
  // The token rides as a subprotocol: browsers cannot set headers on a
  // WebSocket, and a URL would put it in logs and history.
  const ws = new WebSocket(url, ['verdict.v1', `bearer.${state.token}`]);
  state.ws = ws;
  let opened = false;
  setConn('connecting', 'Connecting…');
  ws.onopen = () => {
    opened = true;
  };
  ws.onmessage = (ev) => {
    if (gen !== state.generation) return;
    /** @type {StreamMessage} */
    let m;
    try {
      m = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (typeof m.cursor === 'number') state.cursor = m.cursor;
    if (m.type === 'live') {
      state.retries = 0;
      setConn('live', 'Live');
    } else if (m.type === 'alerts') {
      applyChanges(m.alerts || [], m.removed || []);
    }
  };
  ws.onclose = (ev) => {
    if (gen !== state.generation) return;
    state.ws = null;
    if (ev.code === 4401) {
      setConn('auth', 'Token revoked');
      askForToken('The token was revoked. Paste another one.');
      return;
    }
    state.retries++;
    const wait = Math.min(15000, 500 * 2 ** Math.min(state.retries, 5));
    setConn('down', `Reconnecting in ${Math.round(wait / 1000)} s…`);
    // A stream refused before opening is often a stale cursor or token: the list sorts that out.
    setTimeout(() => {
      if (gen !== state.generation) return;
      if (!opened && state.retries >= 3) loadList();
      else openStream(gen);
    }, wait);
  };
}

/**
 * @param {Alert[]} alerts changed alerts that match the filters
 * @param {number[]} removed changed alerts that no longer do
 */
function applyChanges(alerts, removed) {
  for (const a of alerts) {
    state.alerts.set(a.id, a);
    state.flash.add(a.id);
  }
  for (const id of removed) state.alerts.delete(id);
  resort();
  renderList();
  if (state.selected !== null && alerts.some((a) => a.id === state.selected)) refreshDetailSoon();
  refreshCountsSoon();
}
