// /constants.js is not a file: web-routes.ts generates it from
// src/shared/alert/payload.ts, so the page and the server share one definition.
// For the type check, this declaration points at the same source.
export { SEVERITIES, SEVERITY_RANK } from '../../../shared/alert/payload.js';
