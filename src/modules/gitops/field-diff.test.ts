import { describe, expect, it } from 'vitest';
import { diffFields } from './field-diff.js';

// The lines `verdict gitops diff` prints under a configured object: each
// changed field, lists with a name key matched by name, other lists by index
// while their length stays.

const pod = (containers: unknown[]) => ({ spec: { containers } });

describe('diffFields', () => {
  it('shows only the changed field of a container matched by name, wherever it moved', () => {
    const before = pod([
      { name: 'app', image: 'nginx:1' },
      { name: 'sidecar', image: 'busybox' },
    ]);
    expect(
      diffFields(
        before,
        pod([
          { name: 'app', image: 'nginx:2' },
          { name: 'sidecar', image: 'busybox' },
        ]),
      ),
    ).toEqual(['spec.containers[name=app].image: "nginx:1" -> "nginx:2"']);
    // Added and removed elements are whole; the order of the ones kept is a change of its own.
    expect(
      diffFields(
        before,
        pod([
          { name: 'sidecar', image: 'busybox' },
          { name: 'init', image: 'alpine' },
          { name: 'app', image: 'nginx:1' },
        ]),
      ),
    ).toEqual([
      'spec.containers[name=init]: (none) -> {"name":"init","image":"alpine"}',
      'spec.containers (order by name): ["app","sidecar"] -> ["sidecar","app"]',
    ]);
    expect(diffFields(before, pod([{ name: 'sidecar', image: 'busybox' }]))).toEqual(['spec.containers[name=app]: {"name":"app","image":"nginx:1"} -> (none)']);
    expect(diffFields(pod([]), pod([{ name: 'app', image: 'nginx:1' }]))).toEqual(['spec.containers[name=app]: (none) -> {"name":"app","image":"nginx:1"}']);
  });

  it('compares lists without a name key by index while their length stays, else whole', () => {
    expect(diffFields({ args: ['a', 'b'] }, { args: ['a', 'c'] })).toEqual(['args[1]: "b" -> "c"']);
    expect(diffFields({ ports: [{ port: 80 }] }, { ports: [{ port: 81 }] })).toEqual(['ports[0].port: 80 -> 81']);
    expect(diffFields({ args: ['a'] }, { args: ['a', 'b'] })).toEqual(['args: ["a"] -> ["a","b"]']);
    // Two elements with one name: no merge key, so by index.
    expect(
      diffFields(
        {
          l: [
            { name: 'x', v: 1 },
            { name: 'x', v: 2 },
          ],
        },
        {
          l: [
            { name: 'x', v: 1 },
            { name: 'x', v: 3 },
          ],
        },
      ),
    ).toEqual(['l[1].v: 2 -> 3']);
  });

  it('shows maps field by field and a missing field as (none), and nothing for equal values in another key order', () => {
    expect(diffFields({ data: { v: '1', w: 'x' } }, { data: { v: '2' } })).toEqual(['data.v: "1" -> "2"', 'data.w: "x" -> (none)']);
    expect(diffFields({ l: [{ name: 'a', x: 1, y: 2 }] }, { l: [{ y: 2, x: 1, name: 'a' }] })).toEqual([]);
  });
});
