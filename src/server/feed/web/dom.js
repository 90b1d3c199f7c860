// @ts-check
// DOM helpers. Everything the page shows comes, in the end, from attackers (pod
// names, Falco output, URLs, labels): el() puts strings on the page as text
// nodes only, never as markup.

/** @typedef {import('./dom-types.js').Child<Node>} Child */
/** @typedef {import('./dom-types.js').Attrs<Event>} Attrs */

/**
 * The element with this id; the page's HTML has them all.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function $(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing from the page`);
  return e;
}

/**
 * Builds an element; strings among the children become text nodes, never markup.
 * `text` sets textContent, `class` the class name, `on<event>` a listener.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = String(v);
    else if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

/**
 * @param {Element | DocumentFragment} parent
 * @param {Child} c
 */
function append(parent, c) {
  if (c === undefined || c === null || c === false) return;
  if (Array.isArray(c)) for (const x of c) append(parent, x);
  else parent.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : /** @type {Node} */ (c));
}

/**
 * Replaces an element's children; nested arrays are flattened.
 * @param {Element} target
 * @param {...Child} children
 */
export function replace(target, ...children) {
  const frag = document.createDocumentFragment();
  append(frag, children);
  target.replaceChildren(frag);
}

/**
 * The connection indicator in the header.
 * @param {'idle' | 'connecting' | 'live' | 'down' | 'auth'} s
 * @param {string} text
 */
export function setConn(s, text) {
  $('conn').dataset.state = s;
  $('conn-text').textContent = text;
}

/** @param {string} [msg] the list's error line; empty hides it */
export function showError(msg) {
  const e = $('error');
  e.hidden = !msg;
  e.textContent = msg || '';
}
