import { describe, expect, it } from 'vitest';
import { endpointLabelSet, ENTITY, parseLabel } from './labels.js';
import { compileSelector, k8sPeerSelector, scopePeer, scopeSubject, splitSourceKey } from './selector.js';

const ls = (...labels: string[]) => endpointLabelSet(labels, 1000, '').set;

describe('labels', () => {
  it('parses source, key and value', () => {
    expect(parseLabel('k8s:app=web')).toEqual({ source: 'k8s', key: 'app', value: 'web' });
    expect(parseLabel('reserved:world')).toEqual({ source: 'reserved', key: 'world', value: '' });
    expect(parseLabel('k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod')).toEqual({
      source: 'k8s',
      key: 'io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name',
      value: 'prod',
    });
    expect(parseLabel('app=a:b')).toEqual({ source: 'unspec', key: 'app', value: 'a:b' });
  });

  it('fills in what Hubble leaves implicit', () => {
    const pod = endpointLabelSet(['k8s:app=web'], 5000, 'prod');
    expect(pod.ns).toBe('prod');
    expect(pod.set.get('k8s', 'io.kubernetes.pod.namespace')).toBe('prod');
    expect(pod.set.get('k8s', 'io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name')).toBe('prod');
    expect(pod.flags & ENTITY.cluster).toBeTruthy();
    const host = endpointLabelSet([], 1, '');
    expect(host.set.has('reserved', 'host')).toBe(true);
    expect(host.flags & ENTITY.host).toBeTruthy();
    // A world endpoint that Hubble tagged with a namespace stays outside the cluster.
    const w = endpointLabelSet(['reserved:world'], 2, 'bookinfo');
    expect(w.ns).toBe('');
    expect(w.set.has('k8s', 'io.kubernetes.pod.namespace')).toBe(false);
    expect(endpointLabelSet(['cidr:1.2.3.4/32'], 16777217, '').flags & ENTITY.world).toBeTruthy();
  });
});

describe('selectors', () => {
  it('source rules: no source is any source, a source is exact', () => {
    const s = ls('k8s:app=web', 'container:tier=x');
    expect(compileSelector({ matchLabels: { app: 'web' } }, 's').matches(s)).toBe(true);
    expect(compileSelector({ matchLabels: { 'k8s:app': 'web' } }, 's').matches(s)).toBe(true);
    expect(compileSelector({ matchLabels: { 'container:app': 'web' } }, 's').matches(s)).toBe(false);
    expect(compileSelector({ matchLabels: { tier: 'x' } }, 's').matches(s)).toBe(true);
    expect(compileSelector({ matchLabels: { tier: 'x' } }, 's', 'k8s').matches(s)).toBe(false);
  });

  it('Cilium short forms of the reserved source: $host and reserved.host', () => {
    expect(splitSourceKey('$host')).toEqual({ source: 'reserved', key: 'host' });
    expect(splitSourceKey('reserved.init')).toEqual({ source: 'reserved', key: 'init' });
    expect(splitSourceKey('reserved:init')).toEqual({ source: 'reserved', key: 'init' });
    expect(splitSourceKey('k8s:reserved.x')).toEqual({ source: 'k8s', key: 'reserved.x' });
    expect(splitSourceKey('any.company.io/team')).toEqual({ source: 'any', key: 'any.company.io/team' });
    const host = endpointLabelSet(['reserved:host'], 1, '').set;
    expect(compileSelector({ matchLabels: { 'reserved.host': '' } }, 's').matches(host)).toBe(true);
    expect(scopePeer(compileSelector({ matchLabels: { $host: '' } }, 's'), 'prod').matches(host)).toBe(true);
  });

  it('a numeric YAML value is compared as its text', () => {
    expect(compileSelector({ matchLabels: { version: 2 } }, 's').matches(ls('k8s:version=2'))).toBe(true);
  });

  it('operators are case-insensitive, as upstream examples write "in"', () => {
    expect(compileSelector({ matchExpressions: [{ key: 'app', operator: 'in', values: ['a', 'web'] }] }, 's').matches(ls('k8s:app=web'))).toBe(true);
  });

  it('large In lists use a set', () => {
    const values = Array.from({ length: 50 }, (_, i) => `v${i}`);
    const s = compileSelector({ matchExpressions: [{ key: 'app', operator: 'In', values }] }, 's');
    expect(s.matches(ls('k8s:app=v49'))).toBe(true);
    expect(s.matches(ls('k8s:app=v50'))).toBe(false);
  });

  it('peer scoping as Cilium does it', () => {
    const prodWeb = endpointLabelSet(['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=prod'], 1, '').set;
    const devWeb = endpointLabelSet(['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=dev', 'k8s:io.cilium.k8s.namespace.labels.team=a'], 1, '').set;
    const web = compileSelector({ matchLabels: { app: 'web' } }, 's');
    expect(scopePeer(web, 'prod').matches(devWeb)).toBe(false);
    expect(scopePeer(web, 'prod').matches(prodWeb)).toBe(true);
    expect(scopePeer(web, '').matches(devWeb)).toBe(true);
    const byNsLabel = compileSelector({ matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.team': 'a' } }, 's');
    expect(scopePeer(byNsLabel, 'prod').matches(devWeb)).toBe(true);
    const reservedSel = compileSelector({ matchLabels: { 'reserved:host': '' } }, 's');
    expect(scopePeer(reservedSel, 'prod').reqs).toHaveLength(1);
    expect(scopeSubject(web, 'prod').matches(devWeb)).toBe(false);
    expect(scopePeer(web, 'prod', true).matches(devWeb)).toBe(true);
  });

  it('Kubernetes peers: namespaceSelector keys are namespace labels', () => {
    const pod = endpointLabelSet(['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=dev', 'k8s:io.cilium.k8s.namespace.labels.team=a'], 1, '').set;
    const ns = compileSelector({ matchLabels: { team: 'a' } }, 'n', 'k8s');
    const p = compileSelector({ matchLabels: { app: 'web' } }, 'p', 'k8s');
    expect(k8sPeerSelector(p, ns, 'prod').matches(pod)).toBe(true);
    expect(k8sPeerSelector(p, undefined, 'prod').matches(pod)).toBe(false);
    expect(k8sPeerSelector(undefined, compileSelector({}, 'n', 'k8s'), 'prod').matches(pod)).toBe(true);
    expect(k8sPeerSelector(p, ns, 'prod').toString()).toBe('k8s:app=web,k8s:io.cilium.k8s.namespace.labels.team=a,k8s:io.kubernetes.pod.namespace');
  });
});
