// /constants.js is not a file: web-routes.ts generates it from
// src/shared/alert/payload.ts, so the page and the server share one definition.
// For the type check, this declaration points at the same source.
export { SEVERITIES, SEVERITY_RANK } from '../../../shared/alert/payload.js';

/** From src/server/store/types.ts (declared here: that module's imports are the server's, not the page's). */
export declare const CLOCK_SKEW_MS: number;
