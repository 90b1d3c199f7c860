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
  });

  it("names the file and its line (not the document's) when a document does not parse", () => {
    expect(() =>
      decodeFiles([file('bad.yaml', 'apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\napiVersion: v1\nkind: B\nmetadata:\n  name: [oops\n')]),
    ).toThrow(expect.objectContaining({ constructor: VerdictError, code: 'VERDICT_MANIFEST_INVALID' }));
    expect(() => decodeFiles([file('bad.yaml', 'a: 1\n---\nb: 2\nc: [\n')])).toThrow(/^failed to decode bad\.yaml line (4|5): /);
  });
});
