// Verdict's alert page: a live list (a WebSocket, no polling), filters, search,
// counts, an alert's detail, and triage buttons.
//
// Everything shown here comes, in the end, from what attackers control: pod
// names, Falco output, URLs, labels. It is only ever put on the page as text
// (textContent, text nodes); nothing from the server is ever parsed as HTML,
// and the Content-Security-Policy allows no script but this file.
'use strict';

(() => {
  const TOKEN_KEY = 'verdict.feedToken';
  const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
  const SEVERITY_RANK = { critical: 4, high: 3, medium: 2, low: 1, info: 0 };
  const STATUS_SETS = { open: ['triggered', 'acknowledged'], triggered: ['triggered'], acknowledged: ['acknowledged'], resolved: ['resolved'], ignored: ['ignored'], all: [] };
  // [status, button, key, label when it is the current status]
  const ACTIONS = [['acknowledged', 'Acknowledge', 'a', 'Acknowledged'], ['resolved', 'Resolve', 'r', 'Resolved'], ['ignored', 'Ignore', 'i', 'Ignored'], ['triggered', 'Reopen', '', 'Triggered']];
  const PAGE = 100;

  const state = {
    token: '',
    status: 'open',
    severities: new Set(),
    source: '',
    namespace: '',
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

  const $ = (id) => document.getElementById(id);

  /** Builds an element; strings among the children become text nodes, never markup. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  // ---- token -------------------------------------------------------------

  function takeTokenFromFragment() {
    // The demo prints /#token=<t>: a fragment never reaches the server or its logs.
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      try {
        localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      } catch {
        /* storage may be disabled; the token then lives for this page only */
      }
      state.token = decodeURIComponent(m[1]);
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  function askForToken(problem) {
    const d = $('token-dialog');
    const p = $('token-problem');
    p.hidden = !problem;
    p.textContent = problem || '';
    $('token-input').value = '';
    if (!d.open) d.showModal();
  }

  function setConn(s, text) {
    $('conn').dataset.state = s;
    $('conn-text').textContent = text;
  }

  // ---- API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, init = {}) {
    const res = await fetch(path, {
      ...init,
      headers: { authorization: `Bearer ${state.token}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers || {}) },
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) {
      const msg = body && body.message ? body.message : `HTTP ${res.status}`;
      if (res.status === 401) askForToken(`The server refused the token: ${msg}`);
      throw new ApiError(res.status, msg);
    }
    return body;
  }

  function filterParams() {
    const p = new URLSearchParams();
    for (const s of STATUS_SETS[state.status]) p.append('status', s);
    for (const s of state.severities) p.append('severity', s);
    if (state.source) p.set('source', state.source);
    if (state.namespace) p.set('namespace', state.namespace);
    if (state.q.trim()) p.set('q', state.q.trim());
    return p;
  }

  function showError(msg) {
    const e = $('error');
    e.hidden = !msg;
    e.textContent = msg || '';
  }

  // ---- list --------------------------------------------------------------

  function compare(a, b) {
    switch (state.sort) {
      case 'created': return b.id - a.id;
      case 'severity': return (SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]) || (b.id - a.id);
      case 'count': return (b.count - a.count) || (b.id - a.id);
      default: return (a.last_seen < b.last_seen ? 1 : a.last_seen > b.last_seen ? -1 : 0) || (b.id - a.id);
    }
  }

  function resort() {
    state.order = [...state.alerts.values()].sort(compare).map((a) => a.id);
  }

  async function loadList() {
    if (!state.token) {
      askForToken();
      return;
    }
    const gen = ++state.generation;
    closeStream();
    setConn('connecting', 'Loading…');
    const p = filterParams();
    p.set('sort', state.sort);
    p.set('limit', String(PAGE));
    try {
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
      setConn(e.status === 401 ? 'auth' : 'down', e.status === 401 ? 'Token needed' : 'Offline');
      showError(e.status === 401 ? '' : `Could not load alerts: ${e.message}`);
      if (e.status !== 401 && e.status !== 400) setTimeout(() => gen === state.generation && loadList(), 5000);
    }
  }

  async function loadMore() {
    if (!state.nextCursor) return;
    const p = filterParams();
    p.set('sort', state.sort);
    p.set('limit', String(PAGE));
    p.set('cursor', state.nextCursor);
    const gen = state.generation;
    try {
      const page = await api(`/api/v1/alerts?${p}`);
      if (gen !== state.generation) return;
      for (const a of page.alerts) if (!state.alerts.has(a.id)) state.alerts.set(a.id, a);
      state.nextCursor = page.next_cursor;
      resort();
      renderList();
    } catch (e) {
      showError(`Could not load more: ${e.message}`);
    }
  }

  function rel(iso) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 10) return 'just now';
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function local(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  function policyText(a) {
    if (a.rule) return a.rule;
    return a.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)).join(', ');
  }

  function row(a) {
    const li = el('li', {
      class: `alert ${SEVERITIES.includes(a.severity) ? a.severity : 'info'} ${a.status}${state.flash.has(a.id) ? ' flash' : ''}`,
      'data-id': a.id,
      'aria-selected': state.selected === a.id ? 'true' : 'false',
      tabindex: '-1',
      onclick: () => select(a.id),
    },
    el('span', { class: 'sevlabel', text: a.severity }),
    el('span', { class: 'title', title: a.title, text: a.title }),
    el('span', { class: 'right' }, el('span', { class: 'n', text: `×${a.count}` }), el('br'), el('span', { class: 'when', 'data-time': a.last_seen, title: `last seen ${local(a.last_seen)}`, text: rel(a.last_seen) })),
    el('span', { class: 'meta' },
      el('span', { class: `badge ${a.status}`, text: a.status }), ' ',
      el('span', { class: 'src', text: a.source }), ' · ',
      a.namespace || '(cluster)', ' · ', policyText(a), ' · ', a.agent));
    return li;
  }

  function renderList() {
    const list = $('alerts');
    const frag = document.createDocumentFragment();
    for (const id of state.order) frag.append(row(state.alerts.get(id)));
    list.replaceChildren(frag);
    const n = state.order.length;
    const filters = [];
    if (state.namespace) filters.push(`namespace ${state.namespace}`);
    if (state.q.trim()) filters.push(`“${state.q.trim()}”`);
    const info = $('list-info');
    info.replaceChildren(`${n}${state.nextCursor ? '+' : ''} alert${n === 1 ? '' : 's'}${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
    if (state.namespace) info.append(' ', el('button', { type: 'button', class: 'ghost', onclick: () => { state.namespace = ''; loadList(); }, text: 'clear namespace' }));
    $('load-more').hidden = !state.nextCursor;
    state.flash.clear();
  }

  function tickTimes() {
    for (const w of document.querySelectorAll('.when[data-time]')) w.textContent = rel(w.dataset.time);
  }

  // ---- live stream -------------------------------------------------------

  function closeStream() {
    if (state.ws) {
      state.ws.onclose = null;
      state.ws.onmessage = null;
      state.ws.close();
      state.ws = null;
    }
  }

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
      let m;
      try {
        m = JSON.parse(ev.data);
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

  function applyChanges(alerts, removed) {
    for (const a of alerts) {
      state.alerts.set(a.id, a);
      state.flash.add(a.id);
    }
    for (const id of removed) state.alerts.delete(id);
    resort();
    renderList();
    if (state.selected !== null && (alerts.some((a) => a.id === state.selected))) refreshDetailSoon();
    refreshCountsSoon();
  }

  // ---- counts ------------------------------------------------------------

  let countsTimer = null;
  function refreshCountsSoon() {
    if (countsTimer) return;
    countsTimer = setTimeout(() => {
      countsTimer = null;
      loadCounts();
    }, 1500);
  }

  async function loadCounts() {
    const p = new URLSearchParams();
    for (const s of STATUS_SETS[state.status]) p.append('status', s);
    try {
      const [sev, src, ns] = await Promise.all(['severity', 'source', 'namespace'].map((by) => api(`/api/v1/alerts/counts?by=${by}&limit=12&${p}`)));
      renderSeverityCounts(sev.counts);
      renderBars($('source-counts'), src.counts, (key) => {
        state.source = state.source === key ? '' : key;
        $('source-filter').value = state.source;
        loadList();
      });
      renderBars($('namespace-counts'), ns.counts, (key) => {
        state.namespace = state.namespace === key ? '' : key;
        loadList();
      });
    } catch {
      /* the list shows connection problems already */
    }
  }

  function renderSeverityCounts(counts) {
    const by = new Map(counts.map((c) => [c.key, c.alerts]));
    $('severity-counts').replaceChildren(...SEVERITIES.map((s) => el('button', {
      type: 'button',
      class: `count-chip ${s}`,
      'data-severity-count': s,
      'aria-pressed': state.severities.has(s) ? 'true' : 'false',
      title: `${s} alerts in this status view; click to filter`,
      onclick: () => toggleSeverity(s),
    }, el('b', { text: String(by.get(s) || 0) }), el('span', { text: s }))));
  }

  function renderBars(target, counts, onPick) {
    if (!counts.length) {
      target.replaceChildren(el('span', { class: 'muted', text: '–' }));
      return;
    }
    target.replaceChildren(...counts.map((c) => el('button', { type: 'button', class: 'bar', title: `${c.events} occurrences`, onclick: () => onPick(c.key) },
      el('b', { text: String(c.alerts) }), el('span', { text: c.key || '(cluster)' }))));
  }

  // ---- detail ------------------------------------------------------------

  function select(id) {
    state.selected = id;
    for (const li of document.querySelectorAll('.alert[aria-selected=true]')) li.setAttribute('aria-selected', 'false');
    const li = document.querySelector(`.alert[data-id="${Number(id)}"]`);
    if (li) {
      li.setAttribute('aria-selected', 'true');
      li.scrollIntoView({ block: 'nearest' });
    }
    loadDetail(id);
  }

  let detailTimer = null;
  function refreshDetailSoon() {
    if (detailTimer) return;
    detailTimer = setTimeout(() => {
      detailTimer = null;
      if (state.selected !== null) loadDetail(state.selected);
    }, 500);
  }

  async function loadDetail(id) {
    try {
      const d = await api(`/api/v1/alerts/${Number(id)}`);
      if (state.selected !== id) return;
      state.detail = d;
      renderDetail(d);
    } catch (e) {
      if (state.selected !== id) return;
      $('detail').replaceChildren(el('p', { class: 'error', text: e.status === 404 ? 'This alert is gone (purged by retention).' : `Could not load the alert: ${e.message}` }));
    }
  }

  function field(name, value) {
    if (value === undefined || value === null || value === '') return [];
    return [el('dt', { text: name }), el('dd', {}, value)];
  }

  function labels(obj) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return null;
    return el('div', { class: 'labels' }, entries.map(([k, v]) => el('span', { class: 'label' }, el('i', { text: `${k}=` }), String(v))));
  }

  function endpoint(e) {
    if (!e) return el('div', { class: 'end', text: '?' });
    return el('div', { class: 'end' },
      el('div', { class: 'pod', text: e.pod ? `${e.namespace}/${e.pod}` : (e.names && e.names[0]) || e.ip || '?' }),
      el('div', { class: 'sub', text: [e.workload, e.ip, e.port ? `port ${e.port}` : '', e.identity ? `identity ${e.identity}` : ''].filter(Boolean).join(' · ') }));
  }

  function ciliumSection(c) {
    const out = [el('h3', { text: 'Flow' }),
      el('div', { class: 'flow' }, endpoint(c.source), el('div', { class: 'arrow' }, `${c.direction} ✕`, el('br'), c.protocol || ''), endpoint(c.destination)),
      el('dl', { class: 'fields' },
        field('Drop reason', c.reason), field('Node', c.node),
        c.http ? field('HTTP', `${c.http.method} ${c.http.url}`) : [],
        c.icmp ? field('ICMP', `type ${c.icmp.type} code ${c.icmp.code}`) : [])];
    return out;
  }

  function falcoSection(f) {
    return [el('h3', { text: 'Falco output' }), el('div', { class: 'output mono', text: f.output || '' }),
      el('dl', { class: 'fields' }, field('Rule', f.rule), field('Priority', f.priority), field('Source', f.source), field('Host', f.hostname), field('Tags', (f.tags || []).join(', '))),
      el('details', {}, el('summary', { text: 'Output fields' }), el('pre', { text: JSON.stringify(f.output_fields || {}, null, 2) }))];
  }

  function renderDetail(d) {
    const a = d.alert;
    const sev = SEVERITIES.includes(a.severity) ? a.severity : 'info';
    // Reopen only makes sense for an alert that is not triggered; the current status shows as pressed.
    const actions = el('div', { class: 'actions' }, ACTIONS.filter(([status]) => status !== 'triggered' || a.status !== 'triggered').map(([status, label, key, done]) => el('button', {
      type: 'button',
      'data-action': status,
      class: a.status === status ? 'current' : '',
      disabled: a.status === status,
      'aria-pressed': a.status === status ? 'true' : 'false',
      title: key ? `${label} (${key})` : label,
      onclick: () => changeStatus(a.id, status),
    }, a.status === status ? done : label)));
    const occ = el('table', { class: 'occ' },
      el('thead', {}, el('tr', {}, el('th', { text: 'Received' }), el('th', { text: 'Count' }), el('th', { text: 'What' }))),
      el('tbody', {}, d.occurrences.map((o) => el('tr', {},
        el('td', { title: local(o.received_at), text: rel(o.received_at) }),
        el('td', { class: 'num', text: String(o.count) }),
        el('td', {}, o.description, labels(o.labels))))));
    const samples = d.alert.samples || [];
    const body = [
      el('div', {}, el('span', { class: `badge sevbadge ${sev}`, text: a.severity }), ' ', el('span', { class: `badge ${a.status}`, text: a.status }), ' ', el('span', { class: 'src', text: `#${a.id} · ${a.source}` })),
      el('h1', { text: a.title }),
      actions,
      el('p', { id: 'action-error', class: 'error', hidden: true }),
      el('dl', { class: 'fields' },
        field('Namespace', a.namespace || '(cluster-wide)'), field('Cluster', a.cluster), field('Agent', a.agent),
        a.policies.length ? field('Policies', a.policies.map((p) => `${p.kind} ${p.namespace ? `${p.namespace}/` : ''}${p.name}`).join(', ')) : [],
        field('Rule', a.rule),
        field('Occurrences', `${a.count} in ${a.events} event${a.events === 1 ? '' : 's'}`),
        field('First seen', local(a.first_seen)), field('Last seen', `${local(a.last_seen)} (${rel(a.last_seen)})`),
        field('Fingerprint', el('span', { class: 'mono', text: a.fingerprint }))),
      // For Falco the description is the output, shown with its fields below.
      a.details && a.details.falco && a.details.falco.output === a.description ? [] : [el('h3', { text: 'Description' }), el('div', { class: 'output', text: a.description })],
      a.details && a.details.cilium ? ciliumSection(a.details.cilium) : [],
      a.details && a.details.falco ? falcoSection(a.details.falco) : [],
      el('h3', { text: 'Labels (first occurrence)' }), labels(a.labels) || el('p', { text: '–' }),
      el('h3', { text: `Latest occurrences (${d.occurrences.length} of ${a.events})` }), occ,
      el('h3', { text: `Raw ${a.source === 'cilium' ? 'flows' : 'events'} (${samples.length})` }),
      samples.map((s, i) => el('details', { open: i === samples.length - 1 }, el('summary', { text: `sample ${i + 1}` }), el('pre', { text: typeof s === 'string' ? prettyMaybe(s) : JSON.stringify(s, null, 2) }))),
      el('h3', { text: 'History' }),
      d.history.length
        ? el('ol', { class: 'history' }, d.history.map((h) => el('li', {}, el('b', { text: h.to }), ` from ${h.from} by `, el('b', { text: h.actor }), ` · ${local(h.at)}`)))
        : el('p', { class: 'muted', text: `Triggered ${local(a.created_at)}; no status change yet.` }),
    ];
    $('detail').replaceChildren(...body.flat());
  }

  function prettyMaybe(s) {
    try {
      return JSON.stringify(JSON.parse(s), null, 2);
    } catch {
      return s;
    }
  }

  async function changeStatus(id, status) {
    const errBox = $('action-error');
    try {
      const r = await api(`/api/v1/alerts/${Number(id)}`, { method: 'PATCH', body: JSON.stringify({ status }) });
      if (errBox) errBox.hidden = true;
      const a = r.alert;
      const statusOk = !STATUS_SETS[state.status].length || STATUS_SETS[state.status].includes(a.status);
      if (statusOk) state.alerts.set(a.id, a);
      else state.alerts.delete(a.id);
      resort();
      renderList();
      loadDetail(id);
      refreshCountsSoon();
    } catch (e) {
      const box = $('action-error');
      if (box) {
        box.hidden = false;
        box.textContent = e.status === 403 ? `This token cannot change status: ${e.message}` : `Could not change the status: ${e.message}`;
      }
    }
  }

  // ---- controls ----------------------------------------------------------

  function toggleSeverity(s) {
    if (state.severities.has(s)) state.severities.delete(s);
    else state.severities.add(s);
    syncControls();
    loadList();
  }

  function syncControls() {
    for (const b of document.querySelectorAll('#status-filter button')) b.setAttribute('aria-pressed', b.dataset.status === state.status ? 'true' : 'false');
    for (const b of document.querySelectorAll('#severity-filter button')) b.setAttribute('aria-pressed', state.severities.size === 0 || state.severities.has(b.dataset.severity) ? 'true' : 'false');
    for (const b of document.querySelectorAll('[data-severity-count]')) b.setAttribute('aria-pressed', state.severities.has(b.dataset.severityCount) ? 'true' : 'false');
  }

  function moveSelection(delta) {
    if (!state.order.length) return;
    const i = state.order.indexOf(state.selected);
    const next = state.order[Math.max(0, Math.min(state.order.length - 1, i < 0 ? 0 : i + delta))];
    select(next);
  }

  function wire() {
    for (const b of document.querySelectorAll('#status-filter button')) {
      b.addEventListener('click', () => {
        state.status = b.dataset.status;
        syncControls();
        loadList();
      });
    }
    for (const b of document.querySelectorAll('#severity-filter button')) b.addEventListener('click', () => toggleSeverity(b.dataset.severity));
    $('source-filter').addEventListener('change', (e) => {
      state.source = e.target.value;
      loadList();
    });
    $('sort').addEventListener('change', (e) => {
      state.sort = e.target.value;
      loadList();
    });
    let searchTimer = null;
    $('search').addEventListener('input', (e) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        state.q = e.target.value;
        loadList();
      }, 250);
    });
    $('load-more').addEventListener('click', loadMore);
    $('token-button').addEventListener('click', () => askForToken());
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      state.token = t;
      try {
        localStorage.setItem(TOKEN_KEY, t);
      } catch {
        /* kept for this page only */
      }
      $('token-dialog').close();
      loadList();
    });
    $('token-clear').addEventListener('click', () => {
      try {
        localStorage.removeItem(TOKEN_KEY);
      } catch {
        /* nothing stored */
      }
      state.token = '';
      closeStream();
      setConn('auth', 'Token needed');
      $('token-input').value = '';
    });
    document.addEventListener('keydown', (e) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || $('token-dialog').open) {
        if (e.key === 'Escape' && e.target instanceof HTMLInputElement) e.target.blur();
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === 'j') moveSelection(1);
      else if (e.key === 'k') moveSelection(-1);
      else if (e.key === '/') {
        e.preventDefault();
        $('search').focus();
      } else if (state.selected !== null) {
        const act = ACTIONS.find(([, , key]) => key && key === e.key);
        if (act) changeStatus(state.selected, act[0]);
      }
    });
    setInterval(tickTimes, 15000);
  }

  function start() {
    try {
      state.token = localStorage.getItem(TOKEN_KEY) || '';
    } catch {
      state.token = '';
    }
    takeTokenFromFragment();
    wire();
    syncControls();
    if (!state.token) {
      setConn('auth', 'Token needed');
      askForToken();
      return;
    }
    loadList();
  }

  start();
})();
