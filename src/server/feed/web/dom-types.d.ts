// Types for dom.js (a JSDoc typedef cannot refer to itself). Generic in the
// DOM's types because the root tsconfig, which has no DOM library, sees this
// file too: dom.js fills them in (Child<Node>, Attrs<Event>).

/** What el() and replace() take as children: strings become text nodes; arrays are flattened. */
export type Child<N> = string | number | N | null | undefined | false | readonly Child<N>[];

/** el()'s attributes: `text`, `class`, `on<event>` listeners, and plain attributes. */
export type Attrs<E> = Record<string, string | number | boolean | null | undefined | ((ev: E) => void)>;
