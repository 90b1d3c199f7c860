// @ts-check
// The Agents view: GET /api/v1/agents as a table (connection, version, config
// commit, modules, GitOps), each agent expanding to its config warnings, its
// syncs under way, and its manifest projects' last syncs, failed objects with
// the API server's reason.
//
// The API has no stream for agents, so this view polls, but only while it is
// shown and the browser tab is visible: every AGENTS_POLL_MS, and at once on
// Refresh, on coming back to the tab, or on opening the view. The Alerts view
// stays push-only (its WebSocket); leaving this view stops the timer.
import { api, messageOf, statusOf } from './api.js';
import { $, el, replace } from './dom.js';
import { local, rel } from './format.js';
import { state } from './state.js';
import { askForToken } from './token.js';
/** @import { Agent, ProjectSync, ProjectSyncing, SyncObject } from './api-types.js' */

export const AGENTS_POLL_MS = 15000;

/**
 * @typedef {object} AgentsState
 * @property {Agent[] | null} agents the last list loaded; null before the first
 * @property {number} loadedAt when it was loaded (Date.now())
 * @property {Map<string, boolean>} expanded the rows opened or closed: by someone, or opened for a problem
 * @property {string} focus the agent named in the URL (#agents/<name>): opened and scrolled to once loaded
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 * @property {number} generation bumped by every load and by leaving the view; older answers are dropped
 * @property {number} loading the generation of the latest load started (its answer clears the Refresh button's busy state)
 */

/** @type {AgentsState} */
const view = { agents: null, loadedAt: 0, expanded: new Map(), focus: '', timer: undefined, generation: 0, loading: 0 };

const shortCommit = (/** @type {string | null | undefined} */ c) => (c ? c.slice(0, 8) : '');
const plural = (/** @type {number} */ n, /** @type {string} */ word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * What a project's last sync came to, the most serious first.
 * @param {ProjectSync} p
 * @returns {{ key: 'error' | 'failed' | 'drift' | 'ok', text: string }}
 */
function syncState(p) {
  if (p.error) return { key: 'error', text: 'could not run' };
  if (!p.ok || p.failed > 0) return { key: 'failed', text: 'failed' };
  if (p.drift_corrected) return { key: 'drift', text: 'drift corrected' };
  return { key: 'ok', text: 'synced' };
}

/** @param {Agent} a */
const projectsOf = (a) => a.module_status.gitops?.projects ?? [];

/** @param {Agent} a */
const syncingOf = (a) => a.module_status.gitops?.syncing ?? [];

const projectName = (/** @type {string} */ id) => id || '(configuration project)';

/** @param {Agent} a something someone watching the agents should look at */
function hasProblem(a) {
  return Boolean(a.config?.invalid) || projectsOf(a).some((p) => syncState(p).key === 'error' || syncState(p).key === 'failed');
}

/**
 * An agent with a problem opens by itself, and stays open once it is fixed
 * (the fix is worth seeing) until someone closes it.
 * @param {Agent} a
 */
function isExpanded(a) {
  const chosen = view.expanded.get(a.name);
  if (chosen !== undefined) return chosen;
  if (!hasProblem(a)) return false;
  view.expanded.set(a.name, true);
  return true;
}

/** Shows the view (from the URL fragment): loads at once, then polls. @param {string} focus an agent to open, or '' */
export function showAgents(focus) {
  view.focus = focus;
  if (focus) view.expanded.set(focus, true);
  if (view.agents) render();
  refreshAgents();
}

/** Leaves the view: no more requests until it is shown again. */
export function hideAgents() {
  clearTimeout(view.timer);
  view.timer = undefined;
  view.generation++;
}

/** Loads the list now (Refresh, the token saved, the view shown), then schedules the next load. */
export async function refreshAgents() {
  clearTimeout(view.timer);
  view.timer = undefined;
  if (state.view !== 'agents') return;
  if (!state.token) {
    askForToken();
    return;
  }
  const gen = ++view.generation;
  view.loading = gen;
  $('agents-refresh').setAttribute('aria-busy', 'true');
  try {
    /** @type {import('./api-types.js').AgentList} */
    const body = await api('/api/v1/agents');
    if (gen !== view.generation) return;
    view.agents = body.agents;
    view.loadedAt = Date.now();
    showAgentsError('');
    render();
    reveal();
    schedule();
  } catch (e) {
    if (gen !== view.generation) return;
    const status = statusOf(e);
    // A refused token opened the dialog (api.js); saving a new one loads again. The rest is retried on the timer.
    if (status === 401) showAgentsError('');
    else if (status === 404) showAgentsError('This server does not serve GET /api/v1/agents (a version before the Agents view?).');
    else showAgentsError(`Could not load the agents: ${messageOf(e)}${view.agents ? ' (showing the last list loaded)' : ''}`);
    renderInfo();
    if (status !== 401 && status !== 404) schedule();
  } finally {
    if (view.loading === gen) $('agents-refresh').removeAttribute('aria-busy');
  }
}

function schedule() {
  clearTimeout(view.timer);
  view.timer = undefined;
  if (state.view !== 'agents' || document.visibilityState !== 'visible') return;
  view.timer = setTimeout(refreshAgents, AGENTS_POLL_MS);
}

/** @param {string} msg empty hides the view's error line */
function showAgentsError(msg) {
  const e = $('agents-error');
  e.hidden = !msg;
  e.textContent = msg;
}

export function wireAgents() {
  $('agents-refresh').addEventListener('click', () => refreshAgents());
  // A tab in the background polls nothing; back in front it is brought up to date at once.
  document.addEventListener('visibilitychange', () => {
    if (state.view !== 'agents') return;
    if (document.visibilityState === 'visible') refreshAgents();
    else hideAgents();
  });
}

/** The line above the table: how many, how many connected, what needs a look, and how fresh. */
function renderInfo() {
  const list = view.agents;
  if (!list) {
    $('agents-info').textContent = state.token ? 'Loading…' : 'No feed token yet.';
    $('agents-updated').textContent = '';
    return;
  }
  const connected = list.filter((a) => a.connection.connected).length;
  const problems = list.filter(hasProblem).length;
  $('agents-info').textContent = list.length
    ? `${plural(list.length, 'agent')} · ${connected} connected${problems ? ` · ${problems} with a failing sync or invalid config` : ''}`
    : 'No agents registered yet: `verdict agents register <name> --config-project <path>` adds one.';
  const updated = $('agents-updated');
  updated.textContent = `Updated ${new Date(view.loadedAt).toLocaleTimeString()} · refreshes every ${AGENTS_POLL_MS / 1000} s while shown`;
}

function render() {
  renderInfo();
  const list = view.agents ?? [];
  // A poll replaces the rows: keep the keyboard where it was.
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.toggle : undefined;
  replace(
    $('agents'),
    list.map((a) => {
      const open = isExpanded(a);
      return [agentRow(a, open), open ? detailRow(a) : null];
    }),
  );
  if (focused) /** @type {HTMLElement | null} */ (document.querySelector(`[data-toggle="${CSS.escape(focused)}"]`))?.focus();
}

/** Once the list is fresh: scrolls to the agent the URL names, or says there is none. */
function reveal() {
  if (!view.focus) return;
  const row = document.querySelector(`#agents tr.agent[data-agent="${CSS.escape(view.focus)}"]`);
  if (row) row.scrollIntoView({ block: 'nearest' });
  else showAgentsError(`No agent named "${view.focus}".`);
  view.focus = '';
}

/** @param {Agent} a */
function toggle(a) {
  view.expanded.set(a.name, !isExpanded(a));
  render();
}

/**
 * @param {Agent} a
 * @param {boolean} open
 */
function agentRow(a, open) {
  return el(
    'tr',
    { class: `agent${hasProblem(a) ? ' problem' : ''}`, 'data-agent': a.name },
    el(
      'td',
      { class: 'toggle' },
      el('button', {
        type: 'button',
        class: 'ghost',
        'data-toggle': a.name,
        'aria-expanded': open ? 'true' : 'false',
        'aria-label': `${open ? 'Hide' : 'Show'} ${a.name}'s details`,
        text: open ? '▾' : '▸',
        onclick: () => toggle(a),
      }),
    ),
    el('td', { class: 'name' }, el('a', { href: `#agents/${encodeURIComponent(a.name)}`, text: a.name })),
    el('td', { class: 'conn-cell' }, connectionText(a)),
    el('td', { class: 'version mono', text: a.connection.version ?? '—' }),
    el('td', { class: 'config-cell' }, configSummary(a)),
    el(
      'td',
      { class: 'modules' },
      a.modules.length ? a.modules.map((m) => el('span', { class: 'chip', text: m })) : el('span', { class: 'muted', text: a.config ? 'none' : '—' }),
    ),
    el('td', { class: 'gitops-cell' }, gitopsSummary(projectsOf(a), syncingOf(a))),
  );
}

/** @param {Agent} a */
function connectionText(a) {
  const c = a.connection;
  if (c.connected) {
    return el(
      'span',
      { class: 'state connected', title: c.since ? local(c.since) : '' },
      el('span', { class: 'dot' }),
      'Connected',
      c.since ? ` since ${rel(c.since)}` : '',
    );
  }
  if (!c.since)
    return el(
      'span',
      { class: 'state never', title: 'No call from this agent since this server started' },
      el('span', { class: 'dot' }),
      'Not seen since the server started',
    );
  return el('span', { class: 'state disconnected', title: local(c.since) }, el('span', { class: 'dot' }), `Disconnected ${rel(c.since)}`);
}

/** @param {Agent} a */
function configSummary(a) {
  if (!a.config) return el('span', { class: 'muted', text: 'not sent yet' });
  const c = a.config;
  return [
    c.commit_id ? el('span', { class: 'mono commit', title: c.commit_id, text: shortCommit(c.commit_id) }) : el('span', { class: 'muted', text: 'none valid' }),
    c.warnings.length ? [' ', el('span', { class: 'badge warn', text: plural(c.warnings.length, 'warning') })] : null,
    c.invalid ? [' ', el('span', { class: 'badge bad', title: c.invalid.error, text: `invalid ${shortCommit(c.invalid.commit_id)}` })] : null,
  ];
}

/**
 * How many projects (a first sync under way counts, before its report), how their last syncs went, how many are syncing.
 * @param {ProjectSync[]} projects
 * @param {ProjectSyncing[]} syncing
 */
function gitopsSummary(projects, syncing) {
  const total = new Set([...projects, ...syncing].map((p) => p.project_id)).size;
  if (!total) return el('span', { class: 'muted', text: '—' });
  const counts = { error: 0, failed: 0, drift: 0, ok: 0 };
  for (const p of projects) counts[syncState(p).key]++;
  const bad = counts.error + counts.failed;
  return [
    el('span', { text: plural(total, 'project') }),
    bad ? [' ', el('span', { class: 'badge bad', text: `${bad} failing` })] : null,
    counts.drift ? [' ', el('span', { class: 'badge warn', text: `${counts.drift} drift corrected` })] : null,
    syncing.length ? [' ', el('span', { class: 'badge syncing', text: `${syncing.length} syncing` })] : null,
    !bad && !counts.drift && !syncing.length ? [' ', el('span', { class: 'badge good', text: 'synced' })] : null,
  ];
}

/** @param {Agent} a */
function detailRow(a) {
  const c = a.config;
  const projects = projectsOf(a);
  const syncing = syncingOf(a);
  return el(
    'tr',
    { class: 'agent-detail', 'data-agent': a.name },
    el(
      'td',
      { colspan: 7 },
      el(
        'dl',
        { class: 'fields' },
        el('dt', { text: 'Registered' }),
        el('dd', { text: local(a.created_at) }),
        el('dt', { text: 'Connection' }),
        el('dd', {
          text: a.connection.since
            ? `${a.connection.connected ? 'connected since' : 'disconnected at'} ${local(a.connection.since)}`
            : 'no call since this server started',
        }),
        el('dt', { text: 'Config commit' }),
        el(
          'dd',
          {},
          c
            ? [el('span', { class: 'mono', text: c.commit_id ?? 'none that validates' }), ` · sent ${local(c.updated_at)}`]
            : 'not sent yet: the agent has not opened its configuration stream to this server',
        ),
      ),
      c?.invalid
        ? el(
            'div',
            { class: 'config-invalid' },
            el(
              'h3',
              {},
              'Invalid commit ',
              el('span', { class: 'mono', text: shortCommit(c.invalid.commit_id) }),
              ': the agent keeps running the commit above',
            ),
            el('pre', { text: c.invalid.error }),
          )
        : null,
      c?.warnings.length
        ? el(
            'div',
            { class: 'config-warnings' },
            el('h3', { text: 'Config warnings' }),
            el(
              'ul',
              {},
              c.warnings.map((w) =>
                el('li', {}, el('span', { class: 'mono', text: `${w.file}:${w.line}` }), ' ', el('code', { text: w.path }), ': ', w.message),
              ),
            ),
          )
        : null,
      a.module_status.gitops
        ? el(
            'div',
            { class: 'gitops' },
            syncing.length ? [el('h3', { text: 'GitOps: syncs under way' }), syncingList(syncing)] : null,
            projects.length || !syncing.length ? el('h3', { text: 'GitOps: each manifest project’s last sync' }) : null,
            projects.length
              ? projectsTable(projects)
              : syncing.length
                ? null
                : el('p', {
                    class: 'muted',
                    text: a.modules.includes('gitops') ? 'No sync reported yet.' : 'No manifest projects (no gitops block at the config commit).',
                  }),
          )
        : null,
    ),
  );
}

/**
 * Commits sent to the agent and not reported on yet: a first sync waiting on a Deployment, or a newer commit than its last sync's.
 * @param {ProjectSyncing[]} syncing
 */
function syncingList(syncing) {
  return el(
    'ul',
    { class: 'syncing' },
    syncing.map((s) =>
      el(
        'li',
        { class: 'syncing-project', 'data-project': s.project_id },
        el('span', { class: 'mono project', text: projectName(s.project_id) }),
        ' · commit ',
        el('span', { class: 'mono commit', title: s.commit_id, text: shortCommit(s.commit_id) }),
        ' · sent to the agent ',
        el('span', { class: 'since', title: local(s.since), text: rel(s.since) }),
        ', not reported yet',
      ),
    ),
  );
}

/** @param {ProjectSync[]} projects */
function projectsTable(projects) {
  return el(
    'table',
    { class: 'projects' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ['Project', 'Result', 'Commit', 'Applied', 'Changed', 'Unchanged', 'Pruned', 'Failed', 'Took', 'Finished', 'Last good commit'].map((h, i) =>
          el('th', { class: i >= 3 && i <= 8 ? 'num' : undefined, text: h }),
        ),
      ),
    ),
    projects.map((p) => {
      const s = syncState(p);
      const rows = [
        el(
          'tr',
          { class: `project sync-${s.key}`, 'data-project': p.project_id },
          el('td', { class: 'mono', text: projectName(p.project_id) }),
          el('td', {}, el('span', { class: `badge sync-${s.key}`, text: s.text })),
          el('td', { class: 'mono commit', title: p.commit_id, text: shortCommit(p.commit_id) }),
          [p.applied, p.changed, p.unchanged, p.pruned, p.failed].map((n, i) => el('td', { class: `num${i === 4 && n ? ' bad' : ''}`, text: n })),
          el('td', { class: 'num', text: duration(p.duration_ms) }),
          el('td', { title: local(p.finished_at), text: rel(p.finished_at) }),
          el(
            'td',
            { class: 'mono', title: p.last_ok_at ? `synchronised without a failure ${local(p.last_ok_at)}` : 'none yet' },
            p.last_ok_commit === p.commit_id
              ? el('span', { class: 'muted', text: 'this one' })
              : shortCommit(p.last_ok_commit) || el('span', { class: 'muted', text: 'none yet' }),
          ),
        ),
      ];
      if (p.error || p.objects.length) {
        rows.push(
          el(
            'tr',
            { class: 'project-objects', 'data-project': p.project_id },
            el(
              'td',
              { colspan: 11 },
              p.error ? el('div', { class: 'run-error' }, el('b', { text: 'Could not run: ' }), p.error) : null,
              p.objects.length ? el('ul', { class: 'objects' }, p.objects.map(objectItem)) : null,
            ),
          ),
        );
      }
      return rows;
    }),
  );
}

/** @param {SyncObject} o a failed object with the API server's reason, or one corrected after drift */
function objectItem(o) {
  return el(
    'li',
    { class: `object ${o.action === 'failed' ? 'failed' : 'corrected'}` },
    el('span', { class: 'action', text: o.action === 'failed' ? 'failed' : `${o.action} (drift)` }),
    ' ',
    el('span', { class: 'mono object-name', text: o.object }),
    o.source ? [' ', el('span', { class: 'muted source', text: `from ${o.source}` })] : null,
    o.reason ? el('div', { class: 'reason', text: o.reason }) : null,
  );
}

/** @param {number} ms */
function duration(ms) {
  return ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}
