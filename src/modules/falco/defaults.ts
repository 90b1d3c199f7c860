import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { SEVERITIES, type Severity } from '../../shared/alert/payload.js';
import { FALCO_PRIORITIES, type FalcoPriority } from './config.js';

// Loader of alerts/falco.yaml, the reviewed defaults for turning Falco events
// into alerts. This file sits three levels below the package root both as
// src/modules/falco/defaults.ts (vitest) and as
// dist/modules/falco/defaults.js (built), so one relative URL serves both.

export const DEFAULT_RULES_FILE = fileURLToPath(new URL('../../../alerts/falco.yaml', import.meta.url));

export interface SourceDefaults {
  fingerprint_fields: string[];
  namespace_fields: string[];
  /** Each entry is one field or several joined by "/" ("k8s.ns.name/k8s.pod.name"). */
  context_fields: string[];
}

export interface FalcoDefaults {
  severity: Record<FalcoPriority, Severity>;
  sources: Record<string, SourceDefaults> & { default: SourceDefaults };
}

const cache = new Map<string, FalcoDefaults>();

/** Reads and checks the defaults file; throws with the file name and what to fix. */
export function loadFalcoDefaults(file: string = DEFAULT_RULES_FILE): FalcoDefaults {
  const hit = cache.get(file);
  if (hit) return hit;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read the Falco alert defaults ${file}: ${(e as Error).message}; the file ships with Verdict in alerts/, reinstall or restore it`);
  }
  const defaults = checkDefaults(parse(text) as unknown, file);
  cache.set(file, defaults);
  return defaults;
}

function checkDefaults(doc: unknown, file: string): FalcoDefaults {
  const bad = (what: string): never => {
    throw new Error(`${file}: ${what}; see alerts/README.md`);
  };
  if (!isRecord(doc)) bad('must be a mapping with `severity` and `sources`');
  const d = doc as Record<string, unknown>;
  const sev = d.severity;
  if (!isRecord(sev)) bad('`severity` must map each Falco priority to a severity');
  const severity = {} as Record<FalcoPriority, Severity>;
  for (const p of FALCO_PRIORITIES) {
    const v = (sev as Record<string, unknown>)[p];
    if (typeof v !== 'string' || !SEVERITIES.includes(v as Severity))
      bad(`severity.${p} must be one of ${SEVERITIES.join(', ')}, got ${JSON.stringify(v ?? null)}`);
    severity[p] = v as Severity;
  }
  for (const k of Object.keys(sev as object)) {
    if (!FALCO_PRIORITIES.includes(k as FalcoPriority)) bad(`severity.${k} is not a Falco priority (${FALCO_PRIORITIES.join(', ')})`);
  }
  if (!isRecord(d.sources) || !isRecord((d.sources as Record<string, unknown>).default)) bad('`sources` must be a mapping with at least a `default` entry');
  const sources: Record<string, SourceDefaults> = {};
  for (const [name, v] of Object.entries(d.sources as Record<string, unknown>)) {
    if (!isRecord(v)) bad(`sources.${name} must be a mapping`);
    const s = v as Record<string, unknown>;
    const fieldList = (key: keyof SourceDefaults, nonEmpty: boolean): string[] => {
      const l = s[key] ?? [];
      if (!Array.isArray(l) || !l.every((x) => typeof x === 'string' && x.trim() !== '')) bad(`sources.${name}.${key} must be a list of field names`);
      if (nonEmpty && (l as string[]).length === 0) bad(`sources.${name}.${key} must name at least one field`);
      return l as string[];
    };
    sources[name] = {
      fingerprint_fields: fieldList('fingerprint_fields', true),
      namespace_fields: fieldList('namespace_fields', false),
      context_fields: fieldList('context_fields', false),
    };
  }
  return { severity, sources: sources as FalcoDefaults['sources'] };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
