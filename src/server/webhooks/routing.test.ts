import { describe, expect, it } from 'vitest';
import { DEFAULT_ROUTE, type RouteSpec } from '../../shared/config/webhooks-config.js';
import type { StoredAlert } from '../store/alert-store.js';
import { routeMatches } from './routing.js';

const alert = (o: Partial<StoredAlert>): StoredAlert =>
  ({
    id: 1,
    fingerprint: 'f',
    agent: 'prod-eu',
    status: 'triggered',
    source: 'cilium',
    severity: 'medium',
    title: 't',
    description: 'd',
    cluster: 'c',
    namespace: 'shop',
    policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }],
    rule: '',
    labels: {},
    details: {},
    samples: [],
    count: 1,
    events: 1,
    first_seen: '',
    last_seen: '',
    created_at: '',
    updated_at: '',
    seq: 1,
    ...o,
  }) as StoredAlert;

const route = (o: Partial<RouteSpec>): RouteSpec => ({ ...DEFAULT_ROUTE, ...o });

describe('routeMatches', () => {
  it('matches everything with the default route', () => {
    expect(routeMatches(route({}), alert({ severity: 'info' }))).toBe(true);
  });

  it('filters on minimum severity', () => {
    expect(routeMatches(route({ min_severity: 'high' }), alert({ severity: 'medium' }))).toBe(false);
    expect(routeMatches(route({ min_severity: 'high' }), alert({ severity: 'high' }))).toBe(true);
    expect(routeMatches(route({ min_severity: 'high' }), alert({ severity: 'critical' }))).toBe(true);
  });

  it('filters on sources, namespaces (globs) and agents', () => {
    expect(routeMatches(route({ sources: ['falco'] }), alert({}))).toBe(false);
    expect(routeMatches(route({ namespaces: ['db', 'sho*'] }), alert({}))).toBe(true);
    expect(routeMatches(route({ namespaces: ['db'] }), alert({}))).toBe(false);
    expect(routeMatches(route({ agents: ['prod-*'] }), alert({}))).toBe(true);
    expect(routeMatches(route({ agents: ['staging'] }), alert({}))).toBe(false);
  });

  it('takes policies as ns/name or name, and rules; either list may match', () => {
    expect(routeMatches(route({ policies: ['shop/payments-ingress'] }), alert({}))).toBe(true);
    expect(routeMatches(route({ policies: ['payments-ingress'] }), alert({}))).toBe(true);
    expect(routeMatches(route({ policies: ['db/payments-ingress'] }), alert({}))).toBe(false);
    expect(routeMatches(route({ policies: ['shop/*'] }), alert({}))).toBe(true);
    const shell = alert({ source: 'falco', policies: [], rule: 'Terminal shell in container' });
    expect(routeMatches(route({ policies: ['shop/*'] }), shell)).toBe(false);
    expect(routeMatches(route({ policies: ['shop/*'], rules: ['Terminal shell*'] }), shell)).toBe(true);
    expect(routeMatches(route({ policies: ['shop/*'], rules: ['Terminal shell*'] }), alert({}))).toBe(true);
    expect(routeMatches(route({ rules: ['Terminal shell*'] }), alert({}))).toBe(false);
  });

  it('needs every filter that is set', () => {
    expect(routeMatches(route({ min_severity: 'low', namespaces: ['shop'], sources: ['falco'] }), alert({}))).toBe(false);
  });
});
