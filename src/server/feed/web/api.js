// @ts-check
// The feed API over fetch, with the token; the query string of the filters.
import { askForToken } from './token.js';
import { STATUS_SETS, state } from './state.js';

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** @param {unknown} e the HTTP status of a failed call, 0 for anything else */
export const statusOf = (e) => (e instanceof ApiError ? e.status : 0);
/** @param {unknown} e */
export const messageOf = (e) => (e instanceof Error ? e.message : String(e));

/**
 * A call to the API; a refused token opens the token dialog.
 * @template T
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<T>}
 */
export async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${state.token}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...init.headers },
  });
  /** @type {any} */
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const msg = typeof body?.message === 'string' ? body.message : `HTTP ${res.status}`;
    if (res.status === 401) askForToken(`The server refused the token: ${msg}`);
    throw new ApiError(res.status, msg);
  }
  return body;
}

/** The status view as query parameters (counts take only these). */
export function statusParams() {
  const p = new URLSearchParams();
  for (const s of STATUS_SETS[state.status]) p.append('status', s);
  return p;
}

/** Every filter of the page as query parameters (list and stream). */
export function filterParams() {
  const p = statusParams();
  for (const s of state.severities) p.append('severity', s);
  if (state.source) p.set('source', state.source);
  // namespace= (empty) asks for the alerts with none.
  if (state.namespace !== null) p.set('namespace', state.namespace);
  if (state.q.trim()) p.set('q', state.q.trim());
  return p;
}
