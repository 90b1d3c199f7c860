import { isScalar } from 'yaml';
import { notOneOf, reportIssue, str, type Validator } from './schema.js';

// Value types of the GitLab agent's config.yaml schema (pkg/agentcfg/agentcfg.proto,
// every version), shared by the blocks that carry them: gitops, ci_access,
// user_access. Their rules are the original's, so a file that validates here
// is one the GitLab agent would take too.

/**
 * A GitLab project or group: its path (`group/project`) or its numeric id.
 * The original's field is a string; YAML turns `id: 123` into a number, and
 * real files have those, so a whole number is taken as its decimal string.
 */
export const projectId: Validator<string> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return String(v);
  if (typeof v === 'string' && v.trim() !== '') return v;
  return reportIssue(ctx, node, path, `must be a project or group path (group/project) or a numeric id, got ${JSON.stringify(v ?? null)}`);
};

/** A Kubernetes namespace name: an RFC 1123 label. */
export const NAMESPACE_NAME = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const NAMESPACE_NAME_HINT = 'a Kubernetes namespace name: at most 63 lowercase letters, digits and dashes, starting and ending with a letter or digit';

/** A Kubernetes namespace name, or "" for the default, as in the original. */
export const namespaceName = str({ pattern: new RegExp(`^$|${NAMESPACE_NAME.source}`), hint: NAMESPACE_NAME_HINT });

/** Log levels of the original agent (its `log_level_enum`). */
export const LOG_LEVELS = ['info', 'debug', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A log level by name, or by its number in the original's enum (protobuf JSON takes both). */
export const logLevel: Validator<LogLevel> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < LOG_LEVELS.length) return LOG_LEVELS[v];
  if (typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  return reportIssue(ctx, node, path, notOneOf(LOG_LEVELS, v));
};
