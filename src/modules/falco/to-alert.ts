import { fingerprint } from '../../shared/alert/fingerprint.js';
import { ALERT_SCHEMA, type AlertPayload, type Severity } from '../../shared/alert/payload.js';
import { FALCO_PRIORITIES, type FalcoConfig, type FalcoPriority } from './config.js';
import type { FalcoDefaults, SourceDefaults } from './defaults.js';
import { fieldText, type FalcoEvent } from './parse.js';
import { cutText } from '../../shared/text/cut.js';

// From a Falco rule hit to an alert occurrence. The aggregator folds
// occurrences with the same fingerprint; this decides what "the same" means.

export type BuilderConfig = Pick<FalcoConfig, 'cluster_name' | 'minimum_priority' | 'rules' | 'custom_fields' | 'custom_tags' | 'fingerprint_fields'>;

export type SkipReason = 'ignored' | 'below_minimum_priority';
export type BuildResult = { alert: AlertPayload; skipped?: undefined } | { alert?: undefined; skipped: SkipReason };

const PRIORITY_RANK: Record<FalcoPriority, number> = Object.fromEntries(FALCO_PRIORITIES.map((p, i) => [p, i])) as Record<FalcoPriority, number>;

/** Falco prints <NA> for a field it could not resolve; it says nothing about the event. */
const NA = '<NA>';
const MAX_CONTEXT = 80;

export class FalcoAlertBuilder {
  private readonly customFields: Record<string, string>;
  /** Custom field values of the form %NAME whose environment variable is unset. */
  readonly unsetEnv: string[] = [];
  private readonly minRank: number;
  private readonly hasCustomFields: boolean;

  constructor(
    private readonly cfg: BuilderConfig,
    private readonly defaults: FalcoDefaults,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.customFields = {};
    for (const [k, v] of Object.entries(cfg.custom_fields)) {
      if (v.startsWith('%')) {
        const name = v.slice(1);
        const value = env[name];
        if (value === undefined) this.unsetEnv.push(name);
        this.customFields[k] = value ?? '';
      } else {
        this.customFields[k] = v;
      }
    }
    this.minRank = PRIORITY_RANK[cfg.minimum_priority];
    this.hasCustomFields = Object.keys(this.customFields).length > 0;
  }

  /** Drops ignored rules and low priorities before any work is spent on them. */
  skipReason(ev: FalcoEvent): SkipReason | undefined {
    if (this.cfg.rules[ev.rule]?.ignore) return 'ignored';
    if (PRIORITY_RANK[ev.priority] > this.minRank) return 'below_minimum_priority';
    return undefined;
  }

  build(ev: FalcoEvent): BuildResult {
    const skipped = this.skipReason(ev);
    return skipped ? { skipped } : { alert: this.toAlert(ev) };
  }

  /** The alert of an event skipReason() already let through. */
  toAlert(ev: FalcoEvent): AlertPayload {
    const src = this.sourceDefaults(ev.source);
    const fields = this.hasCustomFields ? { ...ev.output_fields, ...this.customFields } : ev.output_fields;
    const tags = this.cfg.custom_tags.length ? [...new Set([...ev.tags, ...this.cfg.custom_tags])].sort() : ev.tags;
    const e: FalcoEvent = fields === ev.output_fields && tags === ev.tags ? ev : { ...ev, output_fields: fields, tags };

    const fpFields = this.cfg.fingerprint_fields ?? src.fingerprint_fields;
    const parts = ['falco', e.source];
    for (const f of fpFields) parts.push(fieldValue(e, f));

    let namespace = '';
    for (const f of src.namespace_fields) {
      const v = present(fieldValue(e, f));
      if (v) {
        namespace = v;
        break;
      }
    }

    const context = contextOf(e, src.context_fields);
    const severity: Severity = this.cfg.rules[e.rule]?.severity ?? this.defaults.severity[e.priority];
    const alert: AlertPayload = {
      schema: ALERT_SCHEMA,
      source: 'falco',
      fingerprint: fingerprint(parts),
      severity,
      title: context ? `${e.rule} (${context})` : e.rule,
      description: e.output,
      cluster: this.cfg.cluster_name,
      namespace,
      count: 1,
      first_seen: e.time,
      last_seen: e.time,
      policies: [],
      rule: e.rule,
      labels: labelsOf(e, this.customFields),
      falco: {
        rule: e.rule,
        priority: e.priority,
        source: e.source,
        hostname: e.hostname,
        output: e.output,
        tags: e.tags,
        output_fields: e.output_fields,
      },
      samples: [e.raw],
    };
    return alert;
  }

  private sourceDefaults(source: string): SourceDefaults {
    return this.defaults.sources[source] ?? this.defaults.sources.default;
  }
}

function fieldValue(e: FalcoEvent, f: string): string {
  switch (f) {
    case 'rule':
      return e.rule;
    case 'source':
      return e.source;
    case 'priority':
      return e.priority;
    case 'hostname':
      return e.hostname || fieldText(e.output_fields.hostname);
    default:
      return fieldText(e.output_fields[f]);
  }
}

function present(v: string): string {
  return v === NA ? '' : v;
}

const splitEntries = new Map<string, readonly string[]>();

function contextOf(e: FalcoEvent, entries: readonly string[]): string {
  for (const entry of entries) {
    let fields = splitEntries.get(entry);
    if (!fields) splitEntries.set(entry, (fields = entry.split('/')));
    let c = '';
    for (const f of fields) {
      const v = present(fieldValue(e, f));
      if (v !== '') c = c === '' ? v : `${c}/${v}`;
    }
    if (c !== '') return c.length > MAX_CONTEXT ? `${cutText(c, MAX_CONTEXT - 1)}…` : c;
  }
  return '';
}

// Small searchable dimensions; the full field set stays in falco.output_fields.
const LABEL_FIELDS: readonly (readonly [string, readonly string[]])[] = [
  ['pod', ['k8s.pod.name']],
  ['container', ['container.name', 'container.id']],
  ['container_id', ['container.id']],
  ['image', ['container.image.repository']],
  ['process', ['proc.name']],
  ['user', ['user.name', 'ka.user.name', 'okta.actor.name', 'github.user', 'ct.user']],
  ['target', ['ka.target.name']],
  ['resource', ['ka.target.resource']],
];

function labelsOf(e: FalcoEvent, custom: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = { priority: e.priority, source: e.source };
  if (e.hostname) labels.hostname = e.hostname;
  // One value, so the server's full-text search (which reads label values) finds
  // an alert by any of its tags (T1059, mitre_execution); the fingerprint does
  // not read labels, so adding it changed no alert's identity.
  if (e.tags.length) labels.tags = e.tags.join(' ');
  for (const [label, fields] of LABEL_FIELDS) {
    for (const f of fields) {
      const v = present(fieldText(e.output_fields[f]));
      if (v) {
        labels[label] = v;
        break;
      }
    }
  }
  for (const k in custom) if (!(k in labels) && custom[k] !== '') labels[k] = custom[k]!;
  return labels;
}
