// Kubernetes namespace names are RFC 1123 labels. A name that cannot be a
// namespace (a typo, "Book Info") would match no policy and silently let none
// alert, so `alert_namespaces` and `verdict replay --alert-namespace` refuse it.

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Why `ns` is not a namespace name, or undefined when it is one. */
export function namespaceNameProblem(ns: string): string | undefined {
  if (ns.length <= 63 && LABEL.test(ns)) return undefined;
  return `${JSON.stringify(ns)} is not a namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)`;
}
