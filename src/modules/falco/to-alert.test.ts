import { describe, expect, it } from 'vitest';
import { falcoConfig, fixtureLines } from '../../../test/falco/helpers.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { parseFalcoJson } from './parse.js';
import { FalcoAlertBuilder } from './to-alert.js';

const defaults = loadFalcoDefaults();
const builder = (yaml = '', env: NodeJS.ProcessEnv = {}) => new FalcoAlertBuilder(falcoConfig(`falco:\n  stdin: true\n${yaml}`), defaults, env);

function alertOf(b: FalcoAlertBuilder, json: string) {
  const r = b.build(parseFalcoJson(json));
  if (!r.alert) throw new Error(`skipped: ${r.skipped}`);
  return r.alert;
}

describe('FalcoAlertBuilder', () => {
  it('maps every Falco priority to a severity', () => {
    const b = builder();
    const sev = (p: string) => alertOf(b, JSON.stringify({ rule: 'r', priority: p, time: '2026-01-01T00:00:00Z' })).severity;
    expect(['Emergency', 'Alert', 'Critical', 'Error', 'Warning', 'Notice', 'Informational', 'Debug'].map(sev)).toEqual([
      'critical',
      'critical',
      'critical',
      'high',
      'medium',
      'low',
      'info',
      'info',
    ]);
  });

  it('builds the alert from a scenario event', () => {
    const a = alertOf(builder('  cluster_name: prod\n'), toFalcoJson(scenarioEvent(0)));
    expect(a).toMatchObject({
      schema: 'verdict.alert/v1',
      source: 'falco',
      severity: 'low',
      cluster: 'prod',
      namespace: 'shop',
      count: 1,
      policies: [],
      rule: 'Terminal shell in container',
      title: 'Terminal shell in container (shop/frontend-7d4b9c6f5-x2k4p)',
      labels: {
        priority: 'Notice',
        source: 'syscall',
        hostname: 'node-a',
        pod: 'frontend-7d4b9c6f5-x2k4p',
        container: 'frontend',
        container_id: '3f1c9a7be2d4',
        image: 'ghcr.io/verdict-demo/frontend',
        process: 'bash',
        user: 'root',
      },
    });
    expect(a.description).toMatch(/A shell was spawned/);
    expect(a.first_seen).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    expect(a.falco?.output_fields['evt.time']).toMatch(/^\d{19}$/);
    expect(a.samples).toHaveLength(1);
  });

  it('uses k8s_audit defaults: namespace and context from the audit target', () => {
    const a = alertOf(builder(), toFalcoJson(scenarioEvent(4)));
    expect(a.namespace).toBe('db');
    expect(a.title).toBe('Attach/Exec Pod (db/postgres-0)');
    expect(a.labels.user).toBe('dev@example.com');
    expect(a.falco?.output_fields['ka.uri.param[command]']).toBe('psql -U postgres');
  });

  it('gives the same fingerprint whether a field came as a string or a number', () => {
    const b = builder();
    const [, , s, n] = fixtureLines();
    const x = alertOf(b, s!);
    const y = alertOf(b, n!);
    expect(x.fingerprint).toBe(y.fingerprint);
    const e1 = { rule: 'R', priority: 'Notice', time: '2026-01-01T00:00:00Z', output_fields: { 'k8s.pod.name': 'a', 'proc.tty': 1 } };
    const e2 = { ...e1, output_fields: { 'k8s.pod.name': 'a', 'proc.tty': '1' } };
    expect(alertOf(b, JSON.stringify(e1)).fingerprint).toBe(alertOf(b, JSON.stringify(e2)).fingerprint);
    expect(alertOf(b, JSON.stringify(e1)).fingerprint).not.toBe(alertOf(b, JSON.stringify({ ...e1, output_fields: { 'k8s.pod.name': 'b' } })).fingerprint);
  });

  it('ignores output fields that are not fingerprint fields', () => {
    const b = builder();
    const e = { rule: 'R', priority: 'Notice', time: '2026-01-01T00:00:00Z', output_fields: { 'k8s.pod.name': 'a', 'fd.name': '/etc/a' } };
    expect(alertOf(b, JSON.stringify(e)).fingerprint).toBe(
      alertOf(b, JSON.stringify({ ...e, output_fields: { 'k8s.pod.name': 'a', 'fd.name': '/etc/b' } })).fingerprint,
    );
    const custom = builder('  fingerprint_fields: [rule, fd.name]\n');
    expect(alertOf(custom, JSON.stringify(e)).fingerprint).not.toBe(
      alertOf(custom, JSON.stringify({ ...e, output_fields: { 'fd.name': '/etc/b' } })).fingerprint,
    );
  });

  it('takes output field keys with brackets as fingerprint fields, as written', () => {
    const b = builder('  fingerprint_fields:\n    - rule\n    - proc.aname[2]\n    - "ka.uri.param[command]"\n');
    const e = {
      rule: 'R',
      priority: 'Notice',
      time: '2026-01-01T00:00:00Z',
      output_fields: { 'proc.aname[2]': 'sshd', 'ka.uri.param[command]': 'sh', 'proc.aname': 'x' },
    };
    const fp = (f: Record<string, unknown>) => alertOf(b, JSON.stringify({ ...e, output_fields: f })).fingerprint;
    expect(fp(e.output_fields)).toBe(fp({ ...e.output_fields, 'proc.aname': 'y' }));
    expect(fp(e.output_fields)).not.toBe(fp({ ...e.output_fields, 'proc.aname[2]': 'bash' }));
    expect(fp(e.output_fields)).not.toBe(fp({ ...e.output_fields, 'ka.uri.param[command]': 'bash' }));
    // In a flow list the brackets must be quoted, as YAML wants.
    const flow = builder('  fingerprint_fields: [rule, "proc.aname[2]"]\n');
    expect(alertOf(flow, JSON.stringify(e)).fingerprint).not.toBe(
      alertOf(flow, JSON.stringify({ ...e, output_fields: { 'proc.aname[2]': 'bash' } })).fingerprint,
    );
  });

  it('applies rule overrides and the minimum priority', () => {
    const b = builder(
      ['  minimum_priority: warning', '  rules:', '    "Write below binary dir": { severity: critical }', '    "open_from_cat": { ignore: true }', ''].join(
        '\n',
      ),
    );
    const lines = fixtureLines();
    expect(alertOf(b, lines[0]!).severity).toBe('critical');
    expect(b.build(parseFalcoJson(lines[4]!)).skipped).toBe('ignored');
    expect(b.build(parseFalcoJson(lines[5]!)).skipped).toBe('below_minimum_priority');
  });

  it('adds custom fields (from env with %) and custom tags', () => {
    const b = builder('  custom_fields: { env: prod, region: "%REGION", missing: "%NOPE" }\n  custom_tags: [verdict, example]\n', { REGION: 'eu-west-1' });
    expect(b.unsetEnv).toEqual(['NOPE']);
    const a = alertOf(b, fixtureLines()[1]!);
    expect(a.falco?.output_fields).toMatchObject({ env: 'prod', region: 'eu-west-1', missing: '', 'proc.name': 'falcosidekick' });
    expect(a.falco?.tags).toEqual(['example', 'test', 'verdict']);
    expect(a.labels).toMatchObject({ env: 'prod', region: 'eu-west-1' });
  });

  it('skips <NA> values in titles and labels', () => {
    const a = alertOf(
      builder(),
      JSON.stringify({
        rule: 'R',
        priority: 'Notice',
        time: '2026-01-01T00:00:00Z',
        hostname: 'h1',
        output_fields: { 'k8s.ns.name': '<NA>', 'k8s.pod.name': '<NA>', 'proc.name': '<NA>' },
      }),
    );
    expect(a.title).toBe('R (h1)');
    expect(a.labels.process).toBeUndefined();
    expect(a.namespace).toBe('');
  });
});

describe('alerts/falco.yaml', () => {
  it('loads with all eight priorities and the plugin sources', () => {
    expect(Object.keys(defaults.severity)).toHaveLength(8);
    expect(Object.keys(defaults.sources)).toEqual(expect.arrayContaining(['default', 'syscall', 'k8s_audit', 'okta', 'github', 'aws_cloudtrail', 'internal']));
    expect(defaults.sources.syscall!.fingerprint_fields).toEqual(['rule', 'hostname', 'k8s.ns.name', 'k8s.pod.name', 'container.id', 'proc.name']);
  });
});
