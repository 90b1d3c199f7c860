// @ts-check
// The feed token: from the URL fragment (the demo prints /#token=<t>; a
// fragment never reaches the server or its logs), kept in localStorage, or
// asked for in a dialog. Both views (alerts, agents) call the API with it.
import { $ } from './dom.js';
import { TOKEN_KEY, state } from './state.js';

/** The stored token, then one in the URL fragment (which is removed from the address bar). */
export function loadToken() {
  try {
    state.token = localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    state.token = '';
  }
  takeTokenFromUrl();
}

/**
 * A token in the URL fragment (#token=<t>) becomes the page's token, is stored and is removed
 * from the address bar; at start and whenever the fragment changes (a #token= link opened in a
 * tab that shows the page already). True when one was taken.
 */
export function takeTokenFromUrl() {
  // The rest of the fragment stays: it names the view (#agents&token=… opens the agents).
  const parts = location.hash.replace(/^#/, '').split('&');
  const given = parts.find((p) => p.startsWith('token='))?.slice('token='.length);
  if (!given) return false;
  const rest = parts.filter((p) => p && !p.startsWith('token=')).join('&');
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  let token = '';
  try {
    token = decodeURIComponent(given).trim();
  } catch {
    token = given.trim();
  }
  if (!token) return false;
  state.token = token;
  store(token);
  return true;
}

/** @param {string} token empty forgets it */
function store(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage may be disabled; the token then lives for this page only */
  }
}

/** @param {string} [problem] why the token is asked for again */
export function askForToken(problem) {
  const d = /** @type {HTMLDialogElement} */ ($('token-dialog'));
  const p = $('token-problem');
  p.hidden = !problem;
  p.textContent = problem || '';
  /** @type {HTMLInputElement} */ ($('token-input')).value = '';
  if (!d.open) d.showModal();
}

/**
 * The dialog's Save and Forget buttons, and the header's Token button.
 * @param {{ saved: () => void, forgotten: () => void }} on
 */
export function wireTokenDialog(on) {
  const input = /** @type {HTMLInputElement} */ ($('token-input'));
  $('token-button').addEventListener('click', () => askForToken());
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    state.token = t;
    store(t);
    /** @type {HTMLDialogElement} */ ($('token-dialog')).close();
    on.saved();
  });
  $('token-clear').addEventListener('click', () => {
    store('');
    state.token = '';
    input.value = '';
    on.forgotten();
  });
}
