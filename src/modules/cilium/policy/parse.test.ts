import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadPolicyFiles, parsePolicyManifests, parsePolicyObject, policyWarningMessages } from './parse.js';
import { policyId } from './policy.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const fixtures = resolve(repoRoot, '../shared/fixtures/policies');

const one = (data: string, path = 'p.yaml') => parsePolicyManifests([{ path, data }]);

describe('upstream example policies', () => {
  it('every network policy in the fixtures parses; other kinds are skipped with a note', async () => {
    const dir = join(fixtures, 'cilium');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
    expect(files.length).toBeGreaterThan(30);
    let count = 0;
    const skipped: string[] = [];
    for (const f of files) {
      const r = await loadPolicyFiles([join(dir, f)]);
      expect(r.errors, f).toEqual([]);
      count += r.policies.length;
      skipped.push(...r.skipped.map((s) => `${f}: ${s.kind} ${s.note}`));
      if (r.skipped.length === 0) expect(r.policies.length, f).toBeGreaterThan(0);
    }
    expect(skipped).toEqual([
      'l4__envoy_forward_proxy_cec.yaml: CiliumClusterwideEnvoyConfig CiliumClusterwideEnvoyConfig is not a network policy',
      'l4__envoy_listener_redirect_cec.yaml: CiliumClusterwideEnvoyConfig CiliumClusterwideEnvoyConfig is not a network policy',
    ]);
    expect(count).toBe(files.length - 2);
  });

  it('no field of an upstream example is taken for one the API server would drop', async () => {
    const r = await loadPolicyFiles([fixtures, join(repoRoot, 'policies')]);
    expect(r.policies.flatMap((p) => p.warnings).filter((w) => w.includes('unknown field'))).toEqual([]);
  });

  it('loading the whole directory reports the two names defined twice, and keeps the rest', async () => {
    const r = await loadPolicyFiles([fixtures]);
    expect(r.errors.map((e) => e.name).sort()).toEqual(['CiliumNetworkPolicy/default/l4-rule', 'CiliumNetworkPolicy/default/rule1']);
    // Not "fix the manifest, this policy is ignored": the copy is ignored, the first one applies.
    expect(r.errors[0]!.message).toMatch(
      /defined again \(first in .*\); this definition is ignored and the first one is used; rename one of them, or remove the copy$/,
    );
    expect(r.policies.length).toBeGreaterThan(25);
  });

  it('reads specs lists, the fixture warnings are about what flows cannot show', async () => {
    const r = await loadPolicyFiles([join(fixtures, 'cilium/l7__http__l7_multi.yaml'), join(fixtures, 'cilium/l3__service__service-labels.yaml')]);
    expect(r.policies.map((p) => [p.name, p.rules.length])).toEqual([
      ['fancyrule', 2],
      ['service-labels-rule', 1],
    ]);
    expect(r.policies[1]!.warnings[0]).toMatch(/k8sServiceSelector/);
  });
});

describe('the example policies in policies/', () => {
  it('parse without errors and keep their names', async () => {
    const r = await loadPolicyFiles([join(repoRoot, 'policies')]);
    expect(r.errors).toEqual([]);
    expect(r.policies.map((p) => `${policyId(p)}${p.alert ? '' : ' (no alerts)'}`).sort()).toEqual([
      'CiliumClusterwideNetworkPolicy/deny-cloud-metadata',
      'CiliumNetworkPolicy/bookinfo/productpage-egress',
      'CiliumNetworkPolicy/shop/allow-dns (no alerts)',
      'CiliumNetworkPolicy/shop/cart-ingress',
      'CiliumNetworkPolicy/shop/deny-frontend-to-db',
      'CiliumNetworkPolicy/shop/frontend-egress',
      'CiliumNetworkPolicy/shop/payments-ingress',
      'NetworkPolicy/bookinfo/productpage-ingress',
      'NetworkPolicy/db/postgres-ingress',
    ]);
    expect(r.policies.flatMap((p) => p.warnings)).toEqual([]);
  });
});

const CNP = (name: string, spec = '  endpointSelector: {}\n  ingress:\n    - {}') =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: ${name}\n  namespace: ns\nspec:\n${spec}\n`;

describe('manifest formats', () => {
  it('multi-document YAML with other kinds in between', () => {
    const r = one(`${CNP('a')}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\n# only a comment\n---\n${CNP('b')}`);
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(r.skipped).toEqual([{ source: 'p.yaml', kind: 'Deployment', name: 'web', note: 'Deployment is not a network policy' }]);
    expect(r.errors).toEqual([]);
  });

  it('List kinds, including typed lists whose items omit kind', () => {
    const r = one(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'x' }, spec: { podSelector: {} } },
          { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'cw' }, spec: { endpointSelector: {}, ingress: [{}] } },
        ],
      }),
      'list.json',
    );
    expect(r.policies.map((p) => policyId(p))).toEqual(['NetworkPolicy/x/np', 'CiliumClusterwideNetworkPolicy/cw']);
    const typed = one(
      `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicyList\nitems:\n  - metadata: {name: t, namespace: q}\n    spec: {endpointSelector: {}, ingress: [{}]}\n`,
    );
    expect(typed.policies.map((p) => policyId(p))).toEqual(['CiliumNetworkPolicy/q/t']);
  });

  it('JSON and YAML files saved with a UTF-8 byte-order mark', () => {
    const r = parsePolicyManifests([
      {
        path: 'a.json',
        data: `\uFEFF${JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'a', namespace: 'ns' }, spec: { endpointSelector: {} } })}`,
      },
      { path: 'b.yaml', data: `\uFEFF${CNP('b')}` },
    ]);
    expect(r.errors).toEqual([]);
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'b']);
  });

  it('JSON files', () => {
    const r = one(
      JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'j' }, spec: { endpointSelector: {}, egress: [{}] } }),
      'p.json',
    );
    expect(r.policies[0]!.namespace).toBe('default');
    expect(one('{nope', 'bad.json').errors[0]!.message).toMatch(/^bad\.json: not valid JSON/);
  });

  it('directories are searched recursively for .yaml, .yml and .json; other files and dot files are ignored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-pol-'));
    await mkdir(join(dir, 'sub/deeper'), { recursive: true });
    await mkdir(join(dir, '.git'));
    await writeFile(join(dir, 'a.yaml'), CNP('a'));
    await writeFile(join(dir, 'sub/b.yml'), CNP('b'));
    await writeFile(
      join(dir, 'sub/deeper/c.json'),
      JSON.stringify({
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'c', namespace: 'ns' },
        spec: { endpointSelector: {}, ingress: [{}] },
      }),
    );
    await writeFile(join(dir, 'README.md'), '# not a policy');
    await writeFile(join(dir, '.git/x.yaml'), CNP('hidden'));
    const r = await loadPolicyFiles([dir, join(dir, 'missing.yaml')]);
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'b', 'c']);
    expect(r.errors.map((e) => e.reason)).toEqual(['no such file or directory']);
  });

  it('a YAML syntax error is reported with its line, and the other documents still load', () => {
    const r = one(
      `${CNP('good')}---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: bad\nspec:\n  endpointSelector: {\n---\n${CNP('also-good')}`,
    );
    expect(r.policies.map((p) => p.name)).toEqual(['good', 'also-good']);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.reason).toMatch(/^YAML error/);
    expect(r.errors[0]!.line).toBeGreaterThanOrEqual(9);
  });
});

describe('a file that is not YAML or JSON says so once, cleanly, for what it is', () => {
  it('a YAML syntax error: the line once, the column, no stray punctuation, and the document (not "this policy") is ignored', () => {
    const e = one('apiVersion: cilium.io/v2\nkind CiliumNetworkPolicy\nmetadata: {name: x}\n', 'bad.yaml').errors[0]!;
    expect(e.message).toBe(
      'bad.yaml:2: YAML error at column 1: Implicit keys need to be on a single line; fix the YAML, this document is ignored until then (the other documents and files still apply)',
    );
    expect(e.message).not.toMatch(/:;|this policy/);
  });

  it('invalid JSON: the whole file is ignored', () => {
    expect(one('{"a":', 'bad.json').errors[0]!.message).toBe(
      'bad.json: not valid JSON (Unexpected end of JSON input); fix the JSON, this file is ignored until then (the other files still apply)',
    );
  });
});

describe('errors name the policy, the field and what is wrong', () => {
  const cases: [string, string, RegExp][] = [
    ['missing name', 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {}\nspec: {endpointSelector: {}}', /metadata\.name is missing/],
    ['neither spec nor specs', 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\n', /has neither spec nor specs/],
    ['no selector', CNP('x', '  ingress: [{}]'), /spec: needs exactly one of endpointSelector and nodeSelector/],
    ['nodeSelector in a namespaced policy', CNP('x', '  nodeSelector: {}'), /only a CiliumClusterwideNetworkPolicy may select nodes/],
    [
      'bad operator',
      CNP('x', '  endpointSelector:\n    matchExpressions:\n      - {key: a, operator: Like, values: [b]}'),
      /spec\.endpointSelector\.matchExpressions\[0\]\.operator: "Like" is not one of In, NotIn, Exists, DoesNotExist/,
    ],
    ['In without values', CNP('x', '  endpointSelector:\n    matchExpressions:\n      - {key: a, operator: In}'), /needs at least one value/],
    ['bad CIDR', CNP('x', '  endpointSelector: {}\n  egress:\n    - toCIDR: [10.0.0.0/33]'), /spec\.egress\[0\]\.toCIDR\[0\]: "10\.0\.0\.0\/33" is not a CIDR/],
    [
      'bad except',
      CNP('x', '  endpointSelector: {}\n  egress:\n    - toCIDRSet:\n        - {cidr: 10.0.0.0/8, except: ["fd00::/8"]}'),
      /not the same IP family/,
    ],
    ['bad entity', CNP('x', '  endpointSelector: {}\n  egress:\n    - toEntities: [internet]'), /"internet" is not an entity/],
    [
      'bad port',
      CNP('x', '  endpointSelector: {}\n  egress:\n    - toPorts:\n        - ports: [{port: "http_alt"}]'),
      /neither a port number .* nor a port name/,
    ],
    [
      'endPort below port',
      CNP('x', '  endpointSelector: {}\n  egress:\n    - toPorts:\n        - ports: [{port: "80", endPort: 79}]'),
      /endPort: 79 must be a number not below port 80/,
    ],
    [
      'bad protocol',
      CNP('x', '  endpointSelector: {}\n  egress:\n    - toPorts:\n        - ports: [{port: "80", protocol: ICMP}]'),
      /protocol "ICMP" is not one of TCP, UDP, SCTP, ANY \(use icmps for ICMP\)/,
    ],
    [
      'bad regex',
      CNP('x', '  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: "80"}]\n          rules:\n            http: [{path: "/a("}]'),
      /rules\.http\[0\]\.path: "\/a\(" is not a valid regular expression/,
    ],
    ['bad ICMP type', CNP('x', '  endpointSelector: {}\n  ingress:\n    - icmps:\n        - fields: [{type: Ping}]'), /"Ping" is not an IPv4 ICMP type/],
    ['bad FQDN', CNP('x', '  endpointSelector: {}\n  egress:\n    - toFQDNs: [{matchPattern: "a/b"}]'), /matchPattern: "a\/b" may hold only/],
    [
      'bad policyTypes',
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  policyTypes: [Both]',
      /spec\.policyTypes\[0\]: "Both" is not Ingress or Egress/,
    ],
    [
      'ipBlock with selector',
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress:\n    - from:\n        - {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}',
      /ipBlock cannot be combined/,
    ],
    [
      'empty k8s peer',
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress:\n    - from: [{}]',
      /a peer needs podSelector, namespaceSelector or ipBlock/,
    ],
    [
      'enableDefaultDeny not a bool',
      CNP('x', '  endpointSelector: {}\n  ingress: [{}]\n  enableDefaultDeny: {ingress: "no"}'),
      /enableDefaultDeny\.ingress: expected true or false/,
    ],
  ];
  for (const [name, yaml, re] of cases) {
    it(name, () => {
      const r = one(yaml);
      expect(r.policies).toEqual([]);
      expect(r.errors).toHaveLength(1);
      const e = r.errors[0]!;
      expect(e.reason).toMatch(re);
      expect(e.source).toBe('p.yaml');
      expect(e.message).toContain(e.reason);
      expect(e.message).toMatch(/fix the manifest, this policy is ignored until then \(the other policies still apply\)$/);
    });
  }

  it('names the policy by kind/namespace/name', () => {
    const r = one(CNP('named', '  endpointSelector: {}\n  egress:\n    - toEntities: [internet]'));
    expect(r.errors[0]!.name).toBe('CiliumNetworkPolicy/ns/named');
    expect(r.errors[0]!.message.startsWith('p.yaml:1: CiliumNetworkPolicy/ns/named: spec.egress[0].toEntities[0]')).toBe(true);
  });
});

describe('metadata', () => {
  it('annotation, labels, default namespace, clusterwide namespace ignored', () => {
    const r = parsePolicyManifests(
      [
        {
          path: 'x.yaml',
          data: `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: a\n  labels: {team: x}\n  annotations:\n    app.gitlab.com/alert: "true"\nspec: {endpointSelector: {}}\n---\napiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: b\n  namespace: oops\n  annotations:\n    app.gitlab.com/alert: "false"\nspec: {endpointSelector: {}}\n`,
        },
      ],
      { defaultNamespace: 'gitops' },
    );
    const [a, b] = r.policies;
    expect(a).toMatchObject({ kind: 'CiliumNetworkPolicy', namespace: 'gitops', name: 'a', alert: true, labels: { team: 'x' }, source: 'x.yaml' });
    expect(b).toMatchObject({ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'b', alert: false });
    expect(b!.warnings[0]).toMatch(/metadata\.namespace "oops" is ignored/);
  });

  it('Calico and other NetworkPolicy API groups are skipped', () => {
    const r = one('apiVersion: crd.projectcalico.org/v1\nkind: NetworkPolicy\nmetadata: {name: c}\nspec: {}\n');
    expect(r.skipped[0]!.note).toBe('crd.projectcalico.org/v1 NetworkPolicy is not a Cilium or Kubernetes network policy');
  });

  it('parsePolicyObject returns null for empty documents and keeps resourceVersion', () => {
    expect(parsePolicyObject(null, 's')).toBeNull();
    const r = parsePolicyObject(
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'x', namespace: 'y', resourceVersion: '42' },
        spec: { endpointSelector: {} },
      },
      'k8s',
    );
    expect(r && 'policy' in r && r.policy.resourceVersion).toBe('42');
  });
});

describe('fields the API server would drop', () => {
  it('an upper-case HTTP under rules: warned with file, line, policy and path; the port is then open to every request', () => {
    const r = one(
      `# shop\n${CNP('api', '  endpointSelector: {matchLabels: {app: api}}\n  ingress:\n    - toPorts:\n        - ports: [{port: "80"}]\n          rules:\n            HTTP:\n              - method: GET')}`,
      'policies/api.yaml',
    );
    expect(r.errors).toEqual([]);
    expect(policyWarningMessages(r.policies)).toEqual([
      'policies/api.yaml:2: CiliumNetworkPolicy/ns/api: spec.ingress[0].toPorts[0].rules.HTTP: unknown field (did you mean http?); the API server drops fields it does not know, so Cilium never sees it and this part of the policy does nothing: rename it to http',
    ]);
    expect(r.policies[0]!.rules[0]!.ingress!.allows[0]!.l4!.ports[0]!.l7).toBeNull();
  });

  it('misspelt and unknown fields at every level, Cilium and Kubernetes', () => {
    const r =
      one(`${CNP('a', '  endpointSelector: {}\n  egress:\n    - toEndpoints: [{matchLabel: {app: x}}]\n      toPort: [{ports: [{port: "53"}]}]\n  ingressDeny:\n    - fromEntities: [world]\n      toPorts: [{ports: [{port: "22"}], rules: {http: [{}]}}]\n  bogus: 1')}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: ns}
spec:
  podSelector: {}
  ingress:
    - form: [{podSelector: {}}]
      ports: [{port: 80, protcol: TCP}]
`);
    expect(r.errors).toEqual([]);
    const short = (w: string) => w.replace(/; the API server drops.*$/, '');
    expect(r.policies.map((p) => p.warnings.map(short))).toEqual([
      [
        'spec.egress[0].toEndpoints[0].matchLabel: unknown field (did you mean matchLabels?)',
        'spec.egress[0].toPort: unknown field (did you mean toPorts?)',
        // Deny rules take ports only: an L7 part would be dropped too.
        'spec.ingressDeny[0].toPorts[0].rules: unknown field',
        'spec.bogus: unknown field',
      ],
      ['spec.ingress[0].form: unknown field (did you mean from?)', 'spec.ingress[0].ports[0].protcol: unknown field (did you mean protocol?)'],
    ]);
  });

  it('names the field meant whatever the case of the typo, by the rule config keys use (shared/near-miss.ts)', () => {
    const r = one(CNP('a', '  endpointSelector:\n    Matchlabel: {app: x}'));
    expect(r.policies.map((p) => p.warnings.map((w) => w.replace(/; the API server drops.*$/, '')))).toEqual([
      ['spec.endpointSelector.Matchlabel: unknown field (did you mean matchLabels?)'],
    ]);
  });
});

describe('the alert opt-in written so that it does not opt in', () => {
  const withMeta = (meta: string) =>
    `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: ns\n${meta}\nspec:\n  endpointSelector: {}\n`;
  it.each([
    ['as a label', '  labels: {app.gitlab.com/alert: "true"}', /^metadata\.labels\.app\.gitlab\.com\/alert is a label; Verdict reads the annotation/],
    [
      'under a misspelt key',
      '  annotations: {app.gitlab.com/alerts: "true"}',
      /^metadata\.annotations\.app\.gitlab\.com\/alerts is not app\.gitlab\.com\/alert, so this policy raises no alerts/,
    ],
    [
      'with another value',
      '  annotations: {app.gitlab.com/alert: "yes"}',
      /^metadata\.annotations\.app\.gitlab\.com\/alert: "yes" is neither "true" nor "false"/,
    ],
  ])('%s: warned, and no alerts', (_, meta, re) => {
    const r = one(withMeta(meta));
    expect(r.policies[0]!.alert).toBe(false);
    expect(r.policies[0]!.warnings).toEqual([expect.stringMatching(re)]);
  });

  it('written right, or "false": no warning', () => {
    for (const v of ['"true"', '"True"', '"false"']) expect(one(withMeta(`  annotations: {app.gitlab.com/alert: ${v}}`)).policies[0]!.warnings).toEqual([]);
  });
});

describe('cilium policy import rule lists', () => {
  const rules = JSON.stringify([
    {
      endpointSelector: { matchLabels: { app: 'api' } },
      ingress: [{ fromEndpoints: [{ matchLabels: { app: 'web' } }] }],
      labels: [{ key: 'name', value: 'api', source: 'unspec' }],
    },
  ]);

  it('a JSON list of rules is named as that format, with how to wrap it, not "fix the manifest"', () => {
    const r = one(rules, 'import/rules.json');
    expect(r.policies).toEqual([]);
    expect(r.errors.map((e) => e.message)).toEqual([
      'import/rules.json:1: a Cilium rule list as `cilium policy import` reads it (a list of rules with endpointSelector and ingress/egress, no apiVersion or kind), not a Kubernetes object; wrap it as "apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: <name>}, specs: <the list>" (clusterwide, as imported rules apply in every namespace), or as kind: CiliumNetworkPolicy with metadata.namespace to limit it to one namespace; these rules are ignored until then (the other policies still apply)',
    ]);
  });

  it('wrapped as the message says, the same rules load', () => {
    const r = one(
      JSON.stringify({
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumClusterwideNetworkPolicy',
        metadata: { name: 'imported' },
        specs: JSON.parse(rules) as unknown,
      }),
      'import/rules.json',
    );
    expect(r.errors).toEqual([]);
    expect(r.policies.map((p) => [policyId(p), p.rules.length, p.warnings])).toEqual([['CiliumClusterwideNetworkPolicy/imported', 1, []]]);
  });

  it('a single bare rule in YAML gets the same advice', () => {
    const r = one('endpointSelector: {}\negress:\n  - toEntities: [world]\n', 'rule.yaml');
    expect(r.errors[0]!.message).toMatch(/^rule\.yaml:1: a bare Cilium rule .*; wrap it as ".*spec: <the rule>".*this rule is ignored until then/);
  });
});
