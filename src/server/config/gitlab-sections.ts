import { isIP } from 'node:net';
import { isScalar } from 'yaml';
import { namespaceName, projectId } from '../../shared/config/gitlab-agent.js';
import {
  bool,
  duration,
  exactlyOne,
  field,
  int,
  list,
  obj,
  oneOf,
  refine,
  reportIssue,
  str,
  stringMap,
  unused,
  type Validator,
} from '../../shared/config/schema.js';

// Sections of the GitLab agent's config.yaml that Verdict has no module for,
// with the original's schema of every version (pkg/agentcfg/agentcfg.proto,
// and for remote_development the keys GitLab itself validates). Real files
// carry them; each is checked with the original's rules and reported once as
// "not used by Verdict", so it never stops the modules Verdict does run.

/** A Kubernetes quantity ("500m", "1Gi", 2); YAML makes bare numbers numbers. */
const quantity: Validator<string> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  const s = typeof v === 'number' ? String(v) : v;
  if (typeof s === 'string' && /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$/.test(s)) return s;
  return reportIssue(ctx, node, path, `must be a Kubernetes quantity such as 500m, 0.5, 512Mi or 1Gi, got ${JSON.stringify(v ?? null)}`);
};

const resources = obj({ cpu: field(quantity), memory: field(quantity), ephemeral_storage: field(quantity) });
const requirements = obj({ requests: field(resources), limits: field(resources) });

/** A cron schedule as robfig/cron reads it: five fields, or a descriptor such as @daily. */
const cadence = str({
  pattern: /^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every\s+\S+|\S+(\s+\S+){4})\s*$/,
  hint: 'a cron schedule such as "0 0 * * *"',
});

const vulnerabilityFilter = obj({
  namespaces: field(list(str())),
  resources: field(list(str())),
  containers: field(list(str())),
  kinds: field(list(str())),
});

const vulnerabilityReport = obj({
  namespaces: field(list(str())),
  filters: field(list(vulnerabilityFilter)),
  resource_types: field(list(str({ nonEmpty: true }))),
});

/** Scan reports up to this many bytes; protobuf JSON writes 64-bit numbers as strings. */
const byteCount: Validator<number> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n === 'number' && Number.isSafeInteger(n) && n > 0) return n;
  return reportIssue(ctx, node, path, `must be a number of bytes, e.g. "300000000", got ${JSON.stringify(v ?? null)}`);
};

const containerScanning = obj({
  cadence: field(cadence),
  vulnerability_report: field(vulnerabilityReport),
  resource_requirements: field(requirements),
  trivy_k8s_wrapper_image: field(obj({ repository: field(str({ nonEmpty: true })), tag: field(str({ nonEmpty: true })) })),
  scanner_timeout: field(duration({ min: 1 })),
  report_max_size: field(byteCount),
  delete_report_artifact: field(bool()),
  severity_threshold: field(oneOf(['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const)),
});

/** 14.x–15.x: the Starboard vulnerability scan, renamed container_scanning in 15.4 and removed in 16.0. */
const starboard = obj({ cadence: field(cadence), vulnerability_report: field(vulnerabilityReport) });

const userAccess = obj({
  access_as: field(exactlyOne({ agent: field(obj({})), user: field(obj({})) }, 'access_as: {agent: {}}')),
  projects: field(list(obj({ id: field(projectId, { required: true }) }))),
  groups: field(list(obj({ id: field(projectId, { required: true }) }))),
});

const cidr = refine(str({ nonEmpty: true }), (v) => {
  const [ip, len, ...rest] = v.split('/');
  const family = isIP(ip ?? '');
  const max = family === 4 ? 32 : 128;
  return family && len !== undefined && /^\d{1,3}$/.test(len) && Number(len) <= max && rest.length === 0
    ? undefined
    : `"${v}" is not an IP range in CIDR notation, e.g. 10.0.0.0/8`;
});

const HOURS_PER_YEAR = 8760;

const remoteDevelopment = refine(
  obj({
    enabled: field(bool()),
    dns_zone: field(str({ nonEmpty: true })),
    partial_sync_interval: field(duration({ min: 1 })),
    full_sync_interval: field(duration({ min: 1 })),
    gitlab_workspaces_proxy: field(obj({ namespace: field(namespaceName) })),
    network_policy: field(
      obj({
        enabled: field(bool()),
        egress: field(list(obj({ allow: field(cidr, { required: true }), except: field(list(cidr)) }))),
      }),
    ),
    default_resources_per_workspace_container: field(requirements),
    max_resources_per_workspace: field(requirements),
    workspaces_quota: field(int({ min: -1 })),
    workspaces_per_user_quota: field(int({ min: -1 })),
    use_kubernetes_user_namespaces: field(bool()),
    default_runtime_class: field(
      str({ pattern: /^$|^(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, hint: 'a RuntimeClass name: lowercase letters, digits, "-" and "."' }),
    ),
    allow_privilege_escalation: field(bool()),
    image_pull_secrets: field(list(obj({ name: field(str({ nonEmpty: true }), { required: true }), namespace: field(namespaceName, { required: true }) }))),
    annotations: field(stringMap()),
    labels: field(stringMap()),
    max_active_hours_before_stop: field(int({ min: 1, max: HOURS_PER_YEAR })),
    max_stopped_hours_before_termination: field(int({ min: 1, max: HOURS_PER_YEAR })),
  }),
  (r) => {
    if (r.enabled && !r.dns_zone) return 'dns_zone is required when enabled is true';
    if (r.allow_privilege_escalation && !r.default_runtime_class && !r.use_kubernetes_user_namespaces) {
      return 'allow_privilege_escalation: true needs default_runtime_class or use_kubernetes_user_namespaces: true';
    }
    const active = r.max_active_hours_before_stop;
    const stopped = r.max_stopped_hours_before_termination;
    if (active !== undefined && stopped !== undefined && active + stopped > HOURS_PER_YEAR) {
      return `max_active_hours_before_stop + max_stopped_hours_before_termination must be at most ${HOURS_PER_YEAR} (a year)`;
    }
    return undefined;
  },
);

const flux = obj({ webhook_receiver_url: field(str({ pattern: /^https?:\/\/\S+$/, hint: 'an http(s) URL' })) });

/** Top-level sections of the GitLab agent's schema without a Verdict module, by key. */
export const gitlabOnlySections = {
  user_access: field(unused(userAccess, 'Verdict has no Kubernetes API proxy for users')),
  container_scanning: field(unused(containerScanning, 'Verdict does not scan container images')),
  starboard: field(unused(starboard, 'Verdict does not scan container images')),
  remote_development: field(unused(remoteDevelopment, 'Verdict does not run workspaces')),
  flux: field(unused(flux, 'Verdict does not notify Flux')),
};
