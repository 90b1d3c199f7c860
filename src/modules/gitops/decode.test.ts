import { describe, expect, it } from 'vitest';
import { VerdictError } from '../../shared/errors.js';
import { decodeFiles } from './decode.js';

// Files to objects without a cluster: document markers, Lists, YAML 1.1
// values, invalid objects, and errors that name file and line.

const file = (source: string, text: string) => ({ source, data: Buffer.from(text) });

describe('decodeFiles', () => {
  it('splits documents at markers, keeps content after a marker, skips empty and comment-only documents, and flattens Lists', () => {
    const d = decodeFiles([
      file(
        'a.yaml',
        '# header\n---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\ndata:\n  script: |\n    echo one\n--- {kind: ConfigMap, apiVersion: v1, metadata: {name: b}}\n---\n# only a comment\n...\n',
      ),
      file('l.json', JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', items: [{ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'c' } }] })),
    ]);
    expect(d.invalid).toEqual([]);
    expect(d.objects.map((m) => [m.source, m.index, m.object.metadata.name])).toEqual([
      ['a.yaml', 1, 'a'],
      ['a.yaml', 2, 'b'],
      ['l.json', 1, 'c'],
    ]);
    expect(d.objects[0]!.object.data).toEqual({ script: 'echo one\n' });
  });

  it('reads YAML 1.1 as kubectl does', () => {
    const d = decodeFiles([file('v.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: v}\nspec: {a: yes, b: "y", "=": x}\n')]);
    expect(d.objects[0]!.object.spec).toEqual({ a: true, b: 'y', '=': 'x' });
    // go-yaml v2 into untyped maps: octal read, but timestamps and base-60 numbers stay the strings written.
    const t = decodeFiles([
      file(
        't.yaml',
        'apiVersion: example.com/v1\nkind: Backup\nmetadata: {name: t}\nspec: {since: 2021-01-01, at: 12:30, mode: 0777, s: 2001-12-14t21:59:43.10-05:00}\n',
      ),
    ]);
    expect(t.objects[0]!.object.spec).toEqual({ since: '2021-01-01', at: '12:30', mode: 511, s: '2001-12-14t21:59:43.10-05:00' });
  });

  it("names the file and its line (not the document's) when a document does not parse", () => {
    expect(() =>
      decodeFiles([file('bad.yaml', 'apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\napiVersion: v1\nkind: B\nmetadata:\n  name: [oops\n')]),
    ).toThrow(expect.objectContaining({ constructor: VerdictError, code: 'VERDICT_MANIFEST_INVALID' }));
    expect(() => decodeFiles([file('bad.yaml', 'a: 1\n---\nb: 2\nc: [\n')])).toThrow(/^failed to decode bad\.yaml line (4|5)( column \d+)?: /);
  });

  it('splits a file written on Windows (CRLF) at its markers, and skips indented comments', () => {
    const d = decodeFiles([
      file(
        'w.yaml',
        '\uFEFFapiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: a}\r\n---\r\n  # indented\r\n---\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: b}\r\n',
      ),
    ]);
    expect([d.invalid, d.objects.map((m) => m.object.metadata.name)]).toEqual([[], ['a', 'b']]);
  });

  it('reports objects without a string apiVersion, kind or name as invalid (a values.yaml, a GitHub workflow, `name: 2048`) instead of failing, saying what to do with Helm and kustomize files', () => {
    const d = decodeFiles([
      file('values.yaml', 'replicaCount: 1\nimage: {repository: nginx}\n'),
      file('workflow.yaml', 'name: test\non:\n  pull_request:\njobs: {}\n'),
      file('n.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 2048}\n'),
      file('chart/Chart.yaml', 'apiVersion: v2\nname: guestbook\n'),
      file('k/kustomization.yaml', 'resources: [a.yaml]\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'),
    ]);
    expect(d.objects).toEqual([]);
    expect(d.invalid.map((i) => [i.source, i.object, i.message])).toEqual([
      [
        'values.yaml',
        'object (unnamed)',
        'invalid object: object (unnamed) in values.yaml (document 1): apiVersion: Required value: apiVersion is required (a Helm file: Helm is not run, manifests are applied as they are: commit the output of `helm template` instead, or leave the chart out of paths[].glob)',
      ],
      [
        'workflow.yaml',
        'object (unnamed)',
        'invalid object: object (unnamed) in workflow.yaml (document 1): apiVersion: Required value: apiVersion is required (not a Kubernetes object: if the file is not a manifest, leave it out of paths[].glob)',
      ],
      [
        'n.yaml',
        'ConfigMap (unnamed)',
        'invalid object: ConfigMap (unnamed) in n.yaml (document 1): metadata.name: Invalid value: 2048: must be a string (quote it in the manifest)',
      ],
      [
        'chart/Chart.yaml',
        'object (unnamed)',
        expect.stringMatching(
          /^invalid object: object \(unnamed\) in chart\/Chart\.yaml \(document 1\): kind: Required value: kind is required \(a Helm file: .*`helm template`/,
        ),
      ],
      [
        'k/kustomization.yaml',
        'Kustomization (unnamed)',
        'invalid object: Kustomization (unnamed) in k/kustomization.yaml (document 1): metadata.name: Required value: name is required (a kustomize file: kustomize is not run, manifests are applied as they are: commit the output of `kustomize build` instead, or leave the file out of paths[].glob)',
      ],
    ]);
  });

  it('reports label, annotation and ConfigMap values YAML reads as numbers or booleans, saying to quote them', () => {
    const d = decodeFiles([
      file('a.yaml', 'apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n  annotations:\n    helm.sh/hook-weight: -2\n'),
      file('c.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {tier: web}}\ndata:\n  PORT: "8080"\n  ENABLED: true\n'),
      file('l.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: l\n  labels: {version: 2, tier: web, enabled: true}\ndata:\n  PORT: 8080\n'),
      file('ok.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata: {a: "1", b: two}\n'),
    ]);
    expect(d.objects.map((m) => m.object.metadata.name)).toEqual(['ok']);
    expect(d.invalid.map((i) => [i.object, i.message])).toEqual([
      [
        'batch/Job j',
        'invalid object: batch/Job j in a.yaml (document 1): metadata.annotations.helm.sh/hook-weight: Invalid value: -2: must be a string (quote it in the manifest)',
      ],
      ['ConfigMap c', 'invalid object: ConfigMap c in c.yaml (document 1): data.ENABLED: Invalid value: true: must be a string (quote it in the manifest)'],
      // All of an object's values at once, aggregated as the API server's field errors are.
      [
        'ConfigMap l',
        'invalid object: ConfigMap l in l.yaml (document 1): [metadata.labels.version: Invalid value: 2: must be a string (quote it in the manifest), metadata.labels.enabled: Invalid value: true: must be a string (quote it in the manifest), data.PORT: Invalid value: 8080: must be a string (quote it in the manifest)]',
      ],
    ]);
  });

  it('refuses an unrendered Helm template, naming the file, the line and what to do', () => {
    // argocd-example-apps helm-guestbook: inline {{ }} parse as mappings used as keys; kubectl refuses them ("invalid map key").
    const inline = 'apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ template "helm-guestbook.fullname" . }}\n';
    expect(() => decodeFiles([file('t/service.yaml', `# c\n---\n${inline}`)])).toThrow(
      /^failed to decode t\/service\.yaml line 6: a mapping is used as a key \(invalid map key\); line 6 holds a template expression .*helm template.*paths\[\]\.glob$/,
    );
    // A block-level {{ }} does not parse at all: its line, and the first template line before it.
    expect(() => decodeFiles([file('t/d.yaml', `${inline}spec:\n  resources:\n{{ toYaml .Values.resources | indent 12 }}\n`)])).toThrow(
      /^failed to decode t\/d\.yaml line 7 column 1: .*; line 4 holds a template expression \("name: \{\{ template/,
    );
    // {{ }} inside a string (Prometheus rules, Go templates in ConfigMaps) is data, not a template to render.
    const d = decodeFiles([
      file(
        'cm.yaml',
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rules}\ndata:\n  a: "{{ $labels.instance }} down"\n  b: |\n    {{ range . }}x{{ end }}\n',
      ),
    ]);
    expect(d.objects[0]!.object.data).toEqual({ a: '{{ $labels.instance }} down', b: '{{ range . }}x{{ end }}\n' });
  });

  it('reads a JSON file of several values one after the other, as kubectl does, and names the line of a JSON syntax error', () => {
    const cm = (n: string) => JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: n } }, null, 2);
    const d = decodeFiles([file('s.json', `${cm('a')}\n${cm('b')}\n\n`)]);
    expect(d.objects.map((m) => [m.index, m.object.metadata.name])).toEqual([
      [1, 'a'],
      [2, 'b'],
    ]);
    expect(() => decodeFiles([file('x.json', '{\n  "kind": "ConfigMap",\n  "apiVersion": "v1",\n}\n')])).toThrow(/^failed to decode x\.json line 4: /);
    expect(() => decodeFiles([file('y.json', `${cm('a')}\n{"kind": }`)])).toThrow(/^failed to decode y\.json( line 6)?: Unexpected token/);
  });
});
