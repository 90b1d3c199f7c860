import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AlertAggregator } from '../../../agent/alerts/aggregator.js';
import { flowToAlert } from '../to-alert.js';
import { DropPairFilter } from '../drop-pairs.js';
import { openAgentDb } from '../../../agent/spool/agent-db.js';
import { Spool } from '../../../agent/spool/spool.js';
import { PolicyEngine } from './engine.js';
import { parsePolicyManifests } from './parse.js';
import { flow, names, pod, policies, world } from './testing.js';

// One test per known mistake of the original GitLab cilium_alert matcher
// (see ../shared/reference/gitlab-agent.md), each written so that the
// original's behaviour would fail it.

const ann = '  annotations:\n    app.gitlab.com/alert: "true"\n';
const cnp = (name: string, ns: string, spec: string) =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n${ann}spec:\n${spec}\n---\n`;

describe('the twelve known mistakes of the original matcher', () => {
  it('1. labels are compared exactly, not as substrings: app=web does not match app=webhook', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'web-only',
          'prod',
          '  endpointSelector:\n    matchLabels:\n      app: web\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            app: frontend',
        ),
      ),
    );
    expect(e.attribute(flow({ src: pod('prod', 'x'), dst: pod('prod', 'webhook') }))).toBeNull();
    expect(names(e.attribute(flow({ src: pod('prod', 'x'), dst: pod('prod', 'web') })))).toEqual(['prod/web-only']);
    // and a peer `app=frontend` does not admit `app=frontend-canary`
    expect(names(e.attribute(flow({ src: pod('prod', 'frontend-canary'), dst: pod('prod', 'web') })))).toEqual(['prod/web-only']);
  });

  it('2. namespaces count: a policy in prod does not claim drops in staging', () => {
    const e = new PolicyEngine(policies(cnp('api', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - {}')));
    expect(e.attribute(flow({ src: pod('staging', 'web'), dst: pod('staging', 'api') }))).toBeNull();
    expect(names(e.attribute(flow({ src: pod('staging', 'web'), dst: pod('prod', 'api') })))).toEqual(['prod/api']);
  });

  it('3. only a leading source is a source: keys containing "any." keep their meaning', () => {
    const e = new PolicyEngine(
      policies(
        cnp('any-source', 'prod', '  endpointSelector:\n    matchLabels:\n      any:company.io/team: payments\n  ingress:\n    - {}') +
          cnp('literal', 'prod', '  endpointSelector:\n    matchLabels:\n      k8s:any.company.io/team: billing\n  ingress:\n    - {}'),
      ),
    );
    const payments = pod('prod', { app: 'p', 'company.io/team': 'payments' });
    const billing = pod('prod', { app: 'b', 'any.company.io/team': 'billing' });
    const confusable = pod('prod', { app: 'c', 'company.io/team': 'billing' });
    expect(names(e.attribute(flow({ src: pod('prod', 'x'), dst: payments })))).toEqual(['prod/any-source']);
    expect(names(e.attribute(flow({ src: pod('prod', 'x'), dst: billing })))).toEqual(['prod/literal']);
    // Stripping "any." would make `any.company.io/team` the same key as `company.io/team`.
    expect(e.attribute(flow({ src: pod('prod', 'x'), dst: confusable }))).toBeNull();
  });

  it('4. matchExpressions are evaluated (In, NotIn, Exists, DoesNotExist), not split on commas', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'expr',
          'prod',
          [
            '  endpointSelector:',
            '    matchExpressions:',
            '      - {key: tier, operator: In, values: [gold, silver]}',
            '      - {key: env, operator: NotIn, values: [dev, test]}',
            '      - {key: owner, operator: Exists}',
            '      - {key: legacy, operator: DoesNotExist}',
            '  ingress:',
            '    - {}',
          ].join('\n'),
        ),
      ),
    );
    const src = pod('prod', 'x');
    const ok = { tier: 'silver', env: 'prod', owner: 'me' };
    expect(names(e.attribute(flow({ src, dst: pod('prod', ok) })))).toEqual(['prod/expr']);
    expect(e.attribute(flow({ src, dst: pod('prod', { ...ok, tier: 'bronze' }) }))).toBeNull();
    expect(e.attribute(flow({ src, dst: pod('prod', { ...ok, env: 'test' }) }))).toBeNull();
    expect(e.attribute(flow({ src, dst: pod('prod', { tier: 'gold', env: 'prod' }) }))).toBeNull();
    expect(e.attribute(flow({ src, dst: pod('prod', { ...ok, legacy: 'yes' }) }))).toBeNull();
    // `gold,silver` is not a value
    expect(e.attribute(flow({ src, dst: pod('prod', { ...ok, tier: 'gold,silver' }) }))).toBeNull();
  });

  it('5. peers are OR-ed: any one of them admits the flow', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'db',
          'prod',
          [
            '  endpointSelector:',
            '    matchLabels:',
            '      app: db',
            '  ingress:',
            '    - fromEndpoints:',
            '        - matchLabels: {app: api}',
            '        - matchLabels: {app: batch}',
            '      fromEntities: [host]',
          ].join('\n'),
        ),
      ),
    );
    const db = pod('prod', 'db');
    expect(e.attribute(flow({ src: pod('prod', 'api'), dst: db }))).toBeNull();
    expect(e.attribute(flow({ src: pod('prod', 'batch'), dst: db }))).toBeNull();
    expect(e.attribute(flow({ src: { identity: 1, labels: ['reserved:host'], ip: '10.0.0.1' }, dst: db }))).toBeNull();
    expect(names(e.attribute(flow({ src: pod('prod', 'web'), dst: db })))).toEqual(['prod/db']);
  });

  it('6. CIDR, entity and FQDN peers are evaluated', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'out',
          'prod',
          [
            '  endpointSelector:',
            '    matchLabels:',
            '      app: api',
            '  egress:',
            '    - toCIDRSet:',
            '        - {cidr: 10.0.0.0/8, except: [10.96.0.0/12]}',
            '    - toEntities: [kube-apiserver]',
            '    - toFQDNs:',
            '        - matchPattern: "*.github.com"',
            '  egressDeny:',
            '    - toCIDR: [169.254.169.254/32]',
          ].join('\n'),
        ),
      ),
    );
    const api = pod('prod', 'api');
    const out = (dst: Parameters<typeof flow>[0]['dst'], extra: Partial<Parameters<typeof flow>[0]> = {}) => flow({ src: api, dst, dir: 'egress', ...extra });
    expect(e.attribute(out(world('10.1.2.3')))).toBeNull();
    expect(names(e.attribute(out(world('10.96.0.10'))))).toEqual(['prod/out']);
    expect(e.attribute(out({ identity: 7, labels: ['reserved:kube-apiserver'], ip: '172.18.0.2' }))).toBeNull();
    expect(e.attribute(out(world('140.82.112.3'), { dstNames: ['api.github.com'] }))).toBeNull();
    expect(names(e.attribute(out(world('140.82.112.3'), { dstNames: ['github.com.evil.io'] })))).toEqual(['prod/out']);
    expect(names(e.attribute(out(world('169.254.169.254'), { reason: 181 })))).toEqual(['prod/out']);
  });

  it('7. ports: ANY, endPort ranges, named ports and ICMP', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'ports',
          'prod',
          [
            '  endpointSelector:',
            '    matchLabels:',
            '      app: api',
            '  ingress:',
            '    - toPorts:',
            '        - ports:',
            '            - {port: "53", protocol: ANY}',
            '            - {port: "30000", endPort: 30100, protocol: TCP}',
            '            - {port: metrics, protocol: TCP}',
            '      icmps:',
            '        - fields: [{type: EchoRequest, family: IPv4}]',
          ].join('\n'),
        ),
      ),
      { namedPorts: { metrics: [9090] } },
    );
    const src = pod('prod', 'x');
    const dst = pod('prod', 'api');
    expect(e.attribute(flow({ src, dst, proto: 'UDP', port: 53 }))).toBeNull();
    expect(e.attribute(flow({ src, dst, proto: 'SCTP', port: 53 }))).toBeNull();
    expect(e.attribute(flow({ src, dst, port: 30050 }))).toBeNull();
    expect(names(e.attribute(flow({ src, dst, port: 30101 })))).toEqual(['prod/ports']);
    expect(e.attribute(flow({ src, dst, port: 9090 }))).toBeNull();
    expect(names(e.attribute(flow({ src, dst, port: 9091 })))).toEqual(['prod/ports']);
    expect(e.attribute(flow({ src, dst, proto: 'ICMPv4', icmpType: 8 }))).toBeNull();
    expect(names(e.attribute(flow({ src, dst, proto: 'ICMPv4', icmpType: 0 })))).toEqual(['prod/ports']);
  });

  it('8. L7 regular expressions are anchored', () => {
    const e = new PolicyEngine(
      policies(
        cnp(
          'http',
          'prod',
          [
            '  endpointSelector:',
            '    matchLabels:',
            '      app: api',
            '  ingress:',
            '    - toPorts:',
            '        - ports: [{port: "80", protocol: TCP}]',
            '          rules:',
            '            http:',
            '              - {method: GET, path: "/public"}',
          ].join('\n'),
        ),
      ),
    );
    const req = (method: string, url: string) => flow({ src: pod('prod', 'x'), dst: pod('prod', 'api'), port: 80, http: { method, url } });
    expect(e.attribute(req('GET', 'http://api/public'))).toBeNull();
    expect(names(e.attribute(req('GET', 'http://api/public-admin')))).toEqual(['prod/http']);
    expect(names(e.attribute(req('GET', 'http://api/admin/public')))).toEqual(['prod/http']);
    expect(names(e.attribute(req('FORGET', 'http://api/public')))).toEqual(['prod/http']);
  });

  it('9. every responsible policy, in a fixed order; an unparsable policy does not stop the others', () => {
    const yaml =
      ['zz', 'aa', 'mm']
        .map((n) =>
          cnp(n, 'prod', `  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEndpoints:\n        - matchLabels: {app: ${n}}`),
        )
        .join('') +
      cnp('broken', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - toPorts:\n        - ports: [{port: "99999"}]');
    const r = parsePolicyManifests([{ path: 'p.yaml', data: yaml }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.name).toBe('CiliumNetworkPolicy/prod/broken');
    expect(r.errors[0]!.reason).toMatch(/spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: 99999 is not a port number/);
    const f = flow({ src: pod('prod', 'x'), dst: pod('prod', 'api') });
    const a = new PolicyEngine(r.policies).attribute(f);
    const b = new PolicyEngine([...r.policies].reverse()).attribute(f);
    expect(names(a)).toEqual(['prod/aa', 'prod/mm', 'prod/zz']);
    expect(b).toEqual(a);
  });

  it('10. attribution is a pure function of policies and flow: flows held back until policies load are attributed the same, repeats share one result', () => {
    const held = [flow({ src: pod('prod', 'x'), dst: pod('prod', 'api') }), flow({ src: pod('prod', 'x'), dst: pod('prod', 'api'), srcPort: 40100 })];
    const ps = policies(cnp('api', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - {}'));
    // Before policies arrive the engine knows of none and blames nothing; it is not a loss.
    expect(held.map((f) => new PolicyEngine([]).attribute(f))).toEqual([null, null]);
    const e = new PolicyEngine(ps);
    const [a, b] = held.map((f) => e.attribute(f));
    expect(names(a!)).toEqual(['prod/api']);
    // The same result object for the retransmit: a cheap key for de-duplication downstream.
    expect(b).toBe(a);
  });

  it('10. (delivery) each denied packet counts once (policy-verdict + drop pair), and a retransmit storm folds into one alert with a count', () => {
    // Waiting for the first list of the cluster's policies before judging flows: PolicyWatcher.waitReady (k8s-watch.test.ts).
    const e = new PolicyEngine(policies(cnp('api', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - {}')));
    const pairs = new DropPairFilter();
    const log = pino({ level: 'silent' });
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    let now = 0;
    const agg = new AlertAggregator(db, outbox, { log, now: () => now });
    const src = pod('prod', 'x');
    const dst = pod('prod', 'api');
    let judged = 0;
    for (let retransmit = 0; retransmit < 5; retransmit++) {
      for (const type of [5, 1]) {
        const f = flow({ src, dst, port: 443, srcPort: 40000 });
        f.event_type = { type, sub_type: type === 1 ? 133 : 0 };
        if (pairs.isPairedRepeat(f, retransmit * 1000 + type)) continue;
        judged++;
        agg.add([flowToAlert(f, e.attribute(f)!, 'c1', {})], 60_000);
      }
    }
    expect(judged).toBe(5);
    now = 60_000;
    expect(agg.flush()).toBe(1);
    // The first packet's alert at once, the four retransmits folded into one when the window closed.
    const sent = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as { count: number; policies: unknown[] });
    expect(sent.map((a) => a.count)).toEqual([1, 4]);
    expect(sent[1]!.policies).toEqual([{ kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'api' }]);
  });

  it('11. alerts are limited by the namespaces the agent owns, not by a label anyone can set', () => {
    const yaml = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: sneaky\n  namespace: tenant-b\n  labels:\n    app.gitlab.com/proj: "42"\n${ann}spec:\n  endpointSelector: {}\n  ingress:\n    - {}\n`;
    const f = flow({ src: pod('tenant-b', 'x'), dst: pod('tenant-b', 'y') });
    expect(new PolicyEngine(policies(yaml), { alertNamespaces: ['tenant-a'] }).attribute(f)).toBeNull();
    expect(names(new PolicyEngine(policies(yaml), { alertNamespaces: ['tenant-b'] }).attribute(f))).toEqual(['tenant-b/sneaky']);
  });

  it('12. the ephemeral source port is not part of what identifies a drop', () => {
    const e = new PolicyEngine(policies(cnp('api', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - {}')));
    const src = pod('prod', 'x');
    const dst = pod('prod', 'api');
    const fps = [40000, 51515, 60999].map((sp) => {
      const f = flow({ src, dst, port: 443, srcPort: sp });
      return flowToAlert(f, e.attribute(f)!, 'c1', {}).fingerprint;
    });
    expect(new Set(fps).size).toBe(1);
    const other = flow({ src, dst, port: 444 });
    expect(flowToAlert(other, e.attribute(other)!, 'c1', {}).fingerprint).not.toBe(fps[0]);
  });
});
