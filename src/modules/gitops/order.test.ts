import { describe, expect, it } from 'vitest';
import type { KubeObject, ManifestObject } from './objects.js';
import { VerdictError } from '../../shared/errors.js';
import { orderWaves } from './order.js';

// The apply order without a cluster: namespaces and CRDs before what needs
// them, depends-on annotations, kind order within a wave, cycles refused.

const m = (kind: string, name: string, extra: Partial<KubeObject['metadata']> = {}, apiVersion = 'v1', spec?: unknown): ManifestObject => ({
  object: { apiVersion, kind, metadata: { name, ...extra }, ...(spec ? { spec } : {}) },
  source: `${name}.yaml`,
  index: 1,
});
const names = (waves: ManifestObject[][]) => waves.map((w) => w.map((x) => `${x.object.kind}/${x.object.metadata.name}`));

describe('orderWaves', () => {
  it('puts a namespace and a CRD before what lives in them, and kinds in kubectl order within a wave', () => {
    const waves = orderWaves([
      m('Widget', 'w', { namespace: 'shop' }, 'example.com/v1'),
      m('Deployment', 'web', { namespace: 'shop' }, 'apps/v1'),
      m('ConfigMap', 'cfg', { namespace: 'shop' }),
      m('CustomResourceDefinition', 'widgets.example.com', {}, 'apiextensions.k8s.io/v1', { group: 'example.com', names: { kind: 'Widget' } }),
      m('Namespace', 'shop'),
      m('ClusterRole', 'reader', {}, 'rbac.authorization.k8s.io/v1'),
    ]);
    expect(names(waves)).toEqual([
      ['Namespace/shop', 'CustomResourceDefinition/widgets.example.com', 'ClusterRole/reader'],
      ['ConfigMap/cfg', 'Deployment/web', 'Widget/w'],
    ]);
  });

  it('follows config.kubernetes.io/depends-on, ignores dependencies outside the set, and refuses cycles', () => {
    const dep = (ref: string) => ({ annotations: { 'config.kubernetes.io/depends-on': ref } });
    const waves = orderWaves([
      m('ConfigMap', 'b', { namespace: 'x', ...dep('/namespaces/x/ConfigMap/a, apps/namespaces/y/Deployment/elsewhere') }),
      m('ConfigMap', 'a', { namespace: 'x' }),
    ]);
    expect(names(waves)).toEqual([['ConfigMap/a'], ['ConfigMap/b']]);
    expect(() => orderWaves([m('ConfigMap', 'a', dep('/ConfigMap/b')), m('ConfigMap', 'b', dep('/ConfigMap/a'))])).toThrow(
      expect.objectContaining({ constructor: VerdictError, code: 'VERDICT_MANIFEST_INVALID' }),
    );
    expect(() => orderWaves([m('ConfigMap', 'a', dep('not-a-ref'))])).toThrow(/a\.yaml: invalid config\.kubernetes\.io\/depends-on reference "not-a-ref"/);
  });
});
