import { describe, expect, it } from 'vitest';
import { FlowType, type Flow } from '../../../gen/flow/flow.js';
import { PolicyEngine, type EngineOptions } from './engine.js';
import { LinearMatcher } from './linear.js';
import { flow, names, pod, policies, reserved, world, type FlowSpec } from './testing.js';

// Over 500 lines on purpose: most of it is one table of policy cases, kept
// together so each case reads beside the ones it differs from.
//
// Table-driven semantics. Each case: policies (YAML), a flow, and the
// expected alert (policy names) from attribute(); `sim` is simulate()'s
// responsible policies when it matters. Every case also runs through the
// linear reference matcher, which must agree.

const A = 'annotations:\n    app.gitlab.com/alert: "true"';

function cnp(name: string, ns: string, spec: string, annotated = true): string {
  return `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n  ${annotated ? A : 'labels: {}'}\nspec:\n${spec}\n---\n`;
}
function ccnp(name: string, spec: string, annotated = true): string {
  return `apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: ${name}\n  ${annotated ? A : 'labels: {}'}\nspec:\n${spec}\n---\n`;
}
function knp(name: string, ns: string, spec: string, annotated = true): string {
  return `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n  ${annotated ? A : 'labels: {}'}\nspec:\n${spec}\n---\n`;
}
/** A CNP selecting app=<app> with one ingress rule. */
function ingressTo(name: string, ns: string, app: string, rule: string, annotated = true): string {
  return cnp(name, ns, `  endpointSelector:\n    matchLabels:\n      app: ${app}\n  ingress:\n${rule}`, annotated);
}
function egressFrom(name: string, ns: string, app: string, rule: string, annotated = true): string {
  return cnp(name, ns, `  endpointSelector:\n    matchLabels:\n      app: ${app}\n  egress:\n${rule}`, annotated);
}

interface Case {
  name: string;
  yaml: string;
  flow: FlowSpec;
  /** attribute(): alerting policy names, or null for no alert */
  want: string[] | null;
  reason?: 'POLICY_DENY' | 'POLICY_DENIED';
  /** simulate(): responsible policy names, or null for allowed; checked when given */
  sim?: string[] | null;
  opts?: EngineOptions;
}

const web = pod('prod', 'web');
const webhook = pod('prod', 'webhook');
const api = pod('prod', 'api');
const db = pod('prod', 'db');
const stagingApi = pod('staging', 'api');
const stagingWeb = pod('staging', 'web');
const otherNsWeb = pod('other', 'web');
const teamA = pod('prod', { app: 'api', 'company.io/team': 'a' });
const teamB = pod('prod', { app: 'api', 'company.io/team': 'b' });
const noTeam = pod('prod', { app: 'api', tier: 'x' });
const labelledNs = pod('monitoring', { app: 'prom', 'io.cilium.k8s.namespace.labels.purpose': 'monitoring' });

const l3 = (from: string) => `    - fromEndpoints:\n        - matchLabels:\n            ${from}\n`;

const cases: Case[] = [
  // --- label selectors: exact key and value, never substrings
  { name: 'matchLabels is exact: app=web selects web', yaml: ingressTo('p', 'prod', 'web', l3('app: api')), flow: { src: db, dst: web }, want: ['prod/p'] },
  {
    name: 'matchLabels is exact: app=web does not select webhook',
    yaml: ingressTo('p', 'prod', 'web', l3('app: api')),
    flow: { src: db, dst: webhook },
    want: null,
  },
  { name: 'peer app=api is exact: api allowed', yaml: ingressTo('p', 'prod', 'web', l3('app: ap')), flow: { src: api, dst: web }, want: ['prod/p'] },
  {
    name: 'matchExpressions In',
    yaml: cnp(
      'p',
      'prod',
      '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: In\n        values: [a, c]\n  ingress:\n    - {}',
    ),
    flow: { src: web, dst: teamA },
    want: ['prod/p'],
  },
  {
    name: 'matchExpressions In: other value not selected',
    yaml: cnp(
      'p',
      'prod',
      '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: In\n        values: [a, c]\n  ingress:\n    - {}',
    ),
    flow: { src: web, dst: teamB },
    want: null,
  },
  {
    name: 'matchExpressions NotIn selects absent key',
    yaml: cnp(
      'p',
      'prod',
      '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: NotIn\n        values: [a]\n  ingress:\n    - {}',
    ),
    flow: { src: web, dst: noTeam },
    want: ['prod/p'],
  },
  {
    name: 'matchExpressions NotIn excludes listed value',
    yaml: cnp(
      'p',
      'prod',
      '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: NotIn\n        values: [a]\n  ingress:\n    - {}',
    ),
    flow: { src: web, dst: teamA },
    want: null,
  },
  {
    name: 'matchExpressions Exists',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: Exists\n  ingress:\n    - {}'),
    flow: { src: web, dst: teamB },
    want: ['prod/p'],
  },
  {
    name: 'matchExpressions DoesNotExist',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: DoesNotExist\n  ingress:\n    - {}'),
    flow: { src: web, dst: teamB },
    want: null,
  },
  {
    name: 'matchExpressions DoesNotExist selects without key',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchExpressions:\n      - key: company.io/team\n        operator: DoesNotExist\n  ingress:\n    - {}'),
    flow: { src: web, dst: noTeam },
    want: ['prod/p'],
  },
  { name: 'k8s: source matches k8s labels', yaml: ingressTo('p', 'prod', 'web', l3('"k8s:app": api')), flow: { src: db, dst: web }, want: ['prod/p'] },
  {
    name: 'any: source is the same as no source',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchLabels:\n      "any:app": web\n  ingress:\n    - {}'),
    flow: { src: db, dst: web },
    want: ['prod/p'],
  },
  {
    name: 'container: source does not match k8s labels',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchLabels:\n      "container:app": web\n  ingress:\n    - {}'),
    flow: { src: db, dst: web },
    want: null,
  },
  {
    name: 'reserved: selector matches the host',
    yaml: ingressTo('p', 'prod', 'web', '    - fromEndpoints:\n        - matchLabels:\n            "reserved:host": ""\n'),
    flow: { src: reserved('host', 1), dst: web },
    want: null,
  },
  {
    name: 'short form $host is reserved:host',
    yaml: ingressTo('p', 'prod', 'web', '    - fromEndpoints:\n        - matchLabels:\n            "$host": ""\n'),
    flow: { src: reserved('host', 1), dst: web },
    want: null,
  },
  {
    name: 'short form reserved.host is reserved:host',
    yaml: ingressTo('p', 'prod', 'web', '    - fromEndpoints:\n        - matchLabels:\n            reserved.host: ""\n'),
    flow: { src: reserved('host', 1), dst: web },
    want: null,
  },
  {
    name: 'reserved.host is not a pod label',
    yaml: ingressTo('p', 'prod', 'web', '    - fromEndpoints:\n        - matchLabels:\n            reserved.host: ""\n'),
    flow: { src: api, dst: web },
    want: ['prod/p'],
  },
  {
    name: 'reserved: selector does not match a pod',
    yaml: ingressTo('p', 'prod', 'web', '    - fromEndpoints:\n        - matchLabels:\n            "reserved:host": ""\n'),
    flow: { src: api, dst: web },
    want: ['prod/p'],
  },

  // --- namespaces
  {
    name: 'namespaced policy does not select other namespaces',
    yaml: ingressTo('p', 'prod', 'api', '    - {}\n'),
    flow: { src: web, dst: stagingApi },
    want: null,
  },
  {
    name: 'peer without namespace means the policy namespace',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: stagingWeb, dst: api },
    want: ['prod/p'],
  },
  { name: 'peer in the policy namespace', yaml: ingressTo('p', 'prod', 'api', l3('app: web')), flow: { src: web, dst: api }, want: null },
  {
    name: 'peer naming a namespace',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      '    - fromEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: staging\n            app: web\n',
    ),
    flow: { src: stagingWeb, dst: api },
    want: null,
  },
  {
    name: 'peer naming a namespace excludes its own',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      '    - fromEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: staging\n            app: web\n',
    ),
    flow: { src: web, dst: api },
    want: ['prod/p'],
  },
  {
    name: 'peer by namespace labels crosses namespaces',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEndpoints:\n        - matchLabels:\n            k8s:io.cilium.k8s.namespace.labels.purpose: monitoring\n'),
    flow: { src: labelledNs, dst: api },
    want: null,
  },
  {
    name: 'empty peer selector {} is every pod of the namespace',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEndpoints:\n        - {}\n'),
    flow: { src: web, dst: api },
    want: null,
  },
  {
    name: 'empty peer selector {} is not other namespaces',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEndpoints:\n        - {}\n'),
    flow: { src: stagingWeb, dst: api },
    want: ['prod/p'],
  },
  {
    name: 'empty peer selector {} is not the world',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEndpoints:\n        - {}\n'),
    flow: { src: world('8.8.8.8'), dst: api },
    want: ['prod/p'],
  },
  {
    name: 'empty endpointSelector selects every pod of the namespace',
    yaml: cnp('p', 'prod', '  endpointSelector: {}\n  ingress:\n    - {}'),
    flow: { src: web, dst: db },
    want: ['prod/p'],
  },
  {
    name: 'clusterwide policy selects every namespace',
    yaml: ccnp('cw', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - {}'),
    flow: { src: web, dst: stagingApi },
    want: ['cw'],
  },
  {
    name: 'clusterwide peer {} is any pod of any namespace',
    yaml: ccnp('cw', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEndpoints:\n        - {}'),
    flow: { src: otherNsWeb, dst: stagingApi },
    want: null,
  },
  {
    name: 'clusterwide peer {} is not the world',
    yaml: ccnp('cw', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEndpoints:\n        - {}'),
    flow: { src: world('1.1.1.1'), dst: stagingApi },
    want: ['cw'],
  },

  // --- entities
  {
    name: 'fromEntities world allows the internet',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [world]\n'),
    flow: { src: world('1.2.3.4'), dst: api },
    want: null,
  },
  {
    name: 'fromEntities world does not allow pods',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [world]\n'),
    flow: { src: web, dst: api },
    want: ['prod/p'],
  },
  {
    name: 'fromEntities cluster allows pods of any namespace',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [cluster]\n'),
    flow: { src: otherNsWeb, dst: api },
    want: null,
  },
  {
    name: 'fromEntities cluster does not allow the world',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [cluster]\n'),
    flow: { src: world('1.2.3.4'), dst: api },
    want: ['prod/p'],
  },
  { name: 'fromEntities host', yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [host]\n'), flow: { src: reserved('host', 1), dst: api }, want: null },
  {
    name: 'fromEntities remote-node is not host',
    yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [host]\n'),
    flow: { src: reserved('remote-node', 6), dst: api },
    want: ['prod/p'],
  },
  { name: 'fromEntities all', yaml: ingressTo('p', 'prod', 'api', '    - fromEntities: [all]\n'), flow: { src: world('9.9.9.9'), dst: api }, want: null },
  {
    name: 'toEntities world-ipv4 does not allow IPv6',
    yaml: egressFrom('p', 'prod', 'api', '    - toEntities: [world-ipv4]\n'),
    flow: { src: api, dst: world('2001:db8::1'), dir: 'egress' },
    want: ['prod/p'],
  },
  {
    name: 'toEntities world-ipv4 allows IPv4',
    yaml: egressFrom('p', 'prod', 'api', '    - toEntities: [world-ipv4]\n'),
    flow: { src: api, dst: world('192.0.2.1'), dir: 'egress' },
    want: null,
  },
  {
    name: 'identity number alone says world',
    yaml: egressFrom('p', 'prod', 'api', '    - toEntities: [world]\n'),
    flow: { src: api, dst: { identity: 2, labels: [], ip: '192.0.2.1' }, dir: 'egress' },
    want: null,
  },

  // --- CIDR
  {
    name: 'toCIDR allows the address',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDR: [20.1.1.1/32]\n'),
    flow: { src: api, dst: world('20.1.1.1'), dir: 'egress' },
    want: null,
  },
  {
    name: 'toCIDR does not allow the next address',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDR: [20.1.1.1/32]\n'),
    flow: { src: api, dst: world('20.1.1.2'), dir: 'egress' },
    want: ['prod/p'],
  },
  {
    name: 'toCIDRSet except carves out',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDRSet:\n        - cidr: 10.0.0.0/8\n          except: [10.96.0.0/12]\n'),
    flow: { src: api, dst: world('10.100.0.1'), dir: 'egress' },
    want: ['prod/p'],
  },
  {
    name: 'toCIDRSet outside except',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDRSet:\n        - cidr: 10.0.0.0/8\n          except: [10.96.0.0/12]\n'),
    flow: { src: api, dst: world('10.1.0.1'), dir: 'egress' },
    want: null,
  },
  {
    name: 'CIDR IPv6 with except',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDRSet:\n        - cidr: 2001:db8::/32\n          except: ["2001:db8:bad::/48"]\n'),
    flow: { src: api, dst: world('2001:db8:bad::5'), dir: 'egress' },
    want: ['prod/p'],
  },
  {
    name: 'CIDR IPv6 allowed',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDRSet:\n        - cidr: 2001:db8::/32\n          except: ["2001:db8:bad::/48"]\n'),
    flow: { src: api, dst: world('2001:db8:1::5'), dir: 'egress' },
    want: null,
  },
  {
    name: 'CIDR does not select pods inside the range',
    yaml: egressFrom('p', 'prod', 'api', '    - toCIDR: [10.0.0.0/8]\n'),
    flow: { src: api, dst: pod('prod', 'cache', '10.1.2.3'), dir: 'egress' },
    want: ['prod/p'],
  },
  {
    name: 'fromCIDR on ingress',
    yaml: ingressTo('p', 'prod', 'api', '    - fromCIDR: [203.0.113.0/24]\n'),
    flow: { src: world('203.0.113.9'), dst: api },
    want: null,
  },

  // --- ports
  {
    name: 'port matches',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n              protocol: TCP\n`),
    flow: { src: web, dst: api, port: 80 },
    want: null,
  },
  {
    name: 'other port denied',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n              protocol: TCP\n`),
    flow: { src: web, dst: api, port: 81 },
    want: ['prod/p'],
  },
  {
    name: 'protocol matters',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "53"\n              protocol: UDP\n`),
    flow: { src: web, dst: api, proto: 'TCP', port: 53 },
    want: ['prod/p'],
  },
  {
    name: 'ANY covers UDP',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "53"\n              protocol: ANY\n`),
    flow: { src: web, dst: api, proto: 'UDP', port: 53 },
    want: null,
  },
  {
    name: 'no protocol means ANY (SCTP)',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "9000"\n`),
    flow: { src: web, dst: api, proto: 'SCTP', port: 9000 },
    want: null,
  },
  {
    name: 'ANY is not ICMP',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "0"\n              protocol: ANY\n`),
    flow: { src: web, dst: api, proto: 'ICMPv4', icmpType: 8 },
    want: ['prod/p'],
  },
  {
    name: 'endPort range: inside',
    yaml: egressFrom(
      'p',
      'prod',
      'api',
      '    - toPorts:\n        - ports:\n            - port: "80"\n              endPort: 444\n              protocol: TCP\n',
    ),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', port: 443 },
    want: null,
  },
  {
    name: 'endPort range: above',
    yaml: egressFrom(
      'p',
      'prod',
      'api',
      '    - toPorts:\n        - ports:\n            - port: "80"\n              endPort: 444\n              protocol: TCP\n',
    ),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', port: 445 },
    want: ['prod/p'],
  },
  {
    name: 'port 0 is every port',
    yaml: egressFrom('p', 'prod', 'api', '    - toPorts:\n        - ports:\n            - port: "0"\n              protocol: TCP\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', port: 31337 },
    want: null,
  },
  {
    name: 'toPorts without peer is every peer on that port',
    yaml: egressFrom('p', 'prod', 'api', '    - toPorts:\n        - ports:\n            - port: "80"\n'),
    flow: { src: api, dst: db, dir: 'egress', port: 80 },
    want: null,
  },
  {
    name: 'named port resolved by option',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: http\n`),
    flow: { src: web, dst: api, port: 8081 },
    want: ['prod/p'],
    opts: { namedPorts: { http: [8080] } },
  },
  {
    name: 'named port resolved: allowed',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: http\n`),
    flow: { src: web, dst: api, port: 8080 },
    want: null,
    opts: { namedPorts: { http: [8080] } },
  },
  {
    name: 'named port unresolved: never blamed',
    yaml: ingressTo('p', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: http\n`),
    flow: { src: web, dst: api, port: 8081 },
    want: null,
  },
  {
    name: 'ICMPv4 echo allowed',
    yaml: egressFrom('p', 'prod', 'api', '    - icmps:\n        - fields:\n            - type: 8\n              family: IPv4\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', proto: 'ICMPv4', icmpType: 8 },
    want: null,
  },
  {
    name: 'ICMPv4 other type denied',
    yaml: egressFrom('p', 'prod', 'api', '    - icmps:\n        - fields:\n            - type: 8\n              family: IPv4\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', proto: 'ICMPv4', icmpType: 13 },
    want: ['prod/p'],
  },
  {
    name: 'ICMPv6 by name',
    yaml: egressFrom('p', 'prod', 'api', '    - icmps:\n        - fields:\n            - type: EchoRequest\n              family: IPv6\n'),
    flow: { src: api, dst: world('2001:db8::1'), dir: 'egress', proto: 'ICMPv6', icmpType: 128 },
    want: null,
  },
  {
    name: 'ICMPv6 rule is not ICMPv4',
    yaml: egressFrom('p', 'prod', 'api', '    - icmps:\n        - fields:\n            - type: EchoRequest\n              family: IPv6\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', proto: 'ICMPv4', icmpType: 8 },
    want: ['prod/p'],
  },
  {
    name: 'icmps do not allow TCP',
    yaml: egressFrom('p', 'prod', 'api', '    - icmps:\n        - fields:\n            - type: 8\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', port: 8 },
    want: ['prod/p'],
  },
  {
    name: 'L3-only rule allows ICMP',
    yaml: egressFrom('p', 'prod', 'api', '    - toEntities: [world]\n'),
    flow: { src: api, dst: world('1.1.1.1'), dir: 'egress', proto: 'ICMPv4', icmpType: 8 },
    want: null,
  },

  // --- FQDN
  {
    name: 'toFQDNs matchName',
    yaml: egressFrom('p', 'prod', 'api', '    - toFQDNs:\n        - matchName: api.example.com\n'),
    flow: { src: api, dst: world('93.184.216.34'), dir: 'egress', dstNames: ['api.example.com'] },
    want: null,
  },
  {
    name: 'toFQDNs matchName is exact',
    yaml: egressFrom('p', 'prod', 'api', '    - toFQDNs:\n        - matchName: api.example.com\n'),
    flow: { src: api, dst: world('93.184.216.34'), dir: 'egress', dstNames: ['evil-api.example.com'] },
    want: ['prod/p'],
  },
  {
    name: 'toFQDNs matchPattern one label',
    yaml: egressFrom('p', 'prod', 'api', '    - toFQDNs:\n        - matchPattern: "*.example.com"\n'),
    flow: { src: api, dst: world('93.184.216.34'), dir: 'egress', dstNames: ['cdn.example.com.'] },
    want: null,
  },
  {
    name: 'toFQDNs matchPattern does not match a suffix trick',
    yaml: egressFrom('p', 'prod', 'api', '    - toFQDNs:\n        - matchPattern: "*.example.com"\n'),
    flow: { src: api, dst: world('93.184.216.34'), dir: 'egress', dstNames: ['example.com.evil.net'] },
    want: ['prod/p'],
  },
  {
    name: 'toFQDNs without names in the flow',
    yaml: egressFrom('p', 'prod', 'api', '    - toFQDNs:\n        - matchName: api.example.com\n'),
    flow: { src: api, dst: world('93.184.216.34'), dir: 'egress' },
    want: ['prod/p'],
  },

  // --- L7 HTTP: full, anchored regular expressions
  {
    name: 'HTTP GET /public allowed',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n              protocol: TCP\n          rules:\n            http:\n              - method: GET\n                path: /public\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'GET', url: 'http://api/public' } },
    want: null,
  },
  {
    name: 'HTTP path is anchored: /public/../admin refused',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n              protocol: TCP\n          rules:\n            http:\n              - method: GET\n                path: /public\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'GET', url: 'http://api/public/../admin' } },
    want: ['prod/p'],
  },
  {
    name: 'HTTP path is anchored at the start',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - path: /public\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'GET', url: 'http://api/x/public' } },
    want: ['prod/p'],
  },
  {
    name: 'HTTP method is anchored: GETX refused',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'GETX', url: '/' } },
    want: ['prod/p'],
  },
  {
    name: 'HTTP method regex',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET|HEAD\n                path: /v1/.*\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'HEAD', url: 'http://api:80/v1/items' } },
    want: null,
  },
  {
    name: 'HTTP header required',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: PUT\n                headers: ["X-My-Header: true"]\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'PUT', url: '/x' } },
    want: ['prod/p'],
  },
  {
    name: 'HTTP header present',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: PUT\n                headers: ["X-My-Header: true"]\n`,
    ),
    flow: { src: web, dst: api, port: 80, http: { method: 'PUT', url: '/x', headers: [{ key: 'x-my-header', value: 'true' }] } },
    want: null,
  },
  {
    name: 'L7 rules admit the port at L4',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
    ),
    flow: { src: web, dst: api, port: 80 },
    want: null,
  },
  {
    name: 'an L4-only allow on the same port lifts L7 rules',
    yaml:
      ingressTo(
        'p',
        'prod',
        'api',
        `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
      ) + ingressTo('q', 'prod', 'api', `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n`),
    flow: { src: web, dst: api, port: 80, http: { method: 'DELETE', url: '/' } },
    want: null,
  },

  // --- deny rules win
  {
    name: 'deny wins over allow (POLICY_DENY)',
    yaml: cnp(
      'fe',
      'prod',
      '  endpointSelector:\n    matchLabels:\n      app: web\n  egress:\n    - toEntities: [all]\n  egressDeny:\n    - toEndpoints:\n        - matchLabels:\n            app: db',
    ),
    flow: { src: web, dst: db, dir: 'egress', reason: 181 },
    want: ['prod/fe'],
    reason: 'POLICY_DENY',
    sim: ['prod/fe'],
  },
  {
    name: 'deny in one policy beats allow in another',
    yaml:
      ingressTo('allow', 'prod', 'db', '    - fromEntities: [all]\n') +
      ccnp('deny', '  endpointSelector: {}\n  ingressDeny:\n    - fromEntities: [world]\n  enableDefaultDeny:\n    ingress: false'),
    flow: { src: world('7.7.7.7'), dst: db, reason: 181 },
    want: ['deny'],
    reason: 'POLICY_DENY',
    sim: ['deny'],
  },
  {
    name: 'deny with ports only denies those ports',
    yaml:
      ingressTo('allow', 'prod', 'db', '    - fromEntities: [all]\n') +
      cnp('deny', 'prod', '  endpointSelector:\n    matchLabels:\n      app: db\n  ingressDeny:\n    - toPorts:\n        - ports:\n            - port: "22"'),
    flow: { src: web, dst: db, port: 5432, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'deny by ports: the denied port',
    yaml:
      ingressTo('allow', 'prod', 'db', '    - fromEntities: [all]\n') +
      cnp('deny', 'prod', '  endpointSelector:\n    matchLabels:\n      app: db\n  ingressDeny:\n    - toPorts:\n        - ports:\n            - port: "22"'),
    flow: { src: web, dst: db, port: 22, reason: 181 },
    want: ['prod/deny'],
    sim: ['prod/deny'],
  },
  {
    name: 'explicit deny blames deny policies, not default-deny ones',
    yaml:
      ingressTo('allowweb', 'prod', 'db', l3('app: web')) +
      cnp(
        'deny',
        'prod',
        '  endpointSelector:\n    matchLabels:\n      app: db\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels:\n            app: api',
      ),
    flow: { src: api, dst: db, reason: 181 },
    want: ['prod/deny'],
  },
  {
    name: 'POLICY_DENY with *_denied_by names the policy',
    yaml: ccnp('meta', '  endpointSelector: {}\n  egressDeny:\n    - toCIDR: [169.254.169.254/32]\n  enableDefaultDeny:\n    egress: false'),
    flow: {
      src: api,
      dst: world('169.254.169.254'),
      dir: 'egress',
      reason: 181,
      deniedBy: [{ name: 'meta', namespace: '', kind: 'CiliumClusterwideNetworkPolicy' }],
    },
    want: ['meta'],
  },

  // --- default deny per direction, enableDefaultDeny
  {
    name: 'ingress policy does not make egress default deny',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: api, dst: db, dir: 'egress' },
    want: null,
    sim: null,
  },
  {
    name: 'egress policy: egress default deny',
    yaml: egressFrom('p', 'prod', 'api', l3('app: web').replace('from', 'to')),
    flow: { src: api, dst: db, dir: 'egress' },
    want: ['prod/p'],
  },
  { name: 'empty rule {} is default deny with no allow', yaml: ingressTo('p', 'prod', 'api', '    - {}\n'), flow: { src: web, dst: api }, want: ['prod/p'] },
  {
    name: 'enableDefaultDeny false: not default deny',
    yaml: cnp(
      'p',
      'prod',
      '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            app: web\n  enableDefaultDeny:\n    ingress: false',
    ),
    flow: { src: db, dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'enableDefaultDeny false does not shield from another policy',
    yaml:
      cnp(
        'soft',
        'prod',
        '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            app: web\n  enableDefaultDeny:\n    ingress: false',
      ) + ingressTo('hard', 'prod', 'api', l3('app: cache')),
    flow: { src: db, dst: api },
    want: ['prod/hard'],
    sim: ['prod/hard'],
  },
  {
    name: 'deny-only policy makes default deny',
    yaml: cnp('p', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingressDeny:\n    - fromEntities: [world]'),
    flow: { src: web, dst: api },
    want: ['prod/p'],
  },

  // --- additivity across policies, labelled or not
  {
    name: 'allows add up across policies',
    yaml: ingressTo('a', 'prod', 'api', l3('app: web')) + ingressTo('b', 'prod', 'api', l3('app: db')),
    flow: { src: db, dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'an unlabelled policy allowing the flow: no alert',
    yaml: ingressTo('a', 'prod', 'api', l3('app: web')) + ingressTo('b', 'prod', 'api', l3('app: db'), false),
    flow: { src: db, dst: api },
    want: null,
  },
  {
    name: 'several responsible policies, sorted',
    yaml:
      ingressTo('zeta', 'prod', 'api', l3('app: web')) +
      knp('alpha', 'prod', '  podSelector:\n    matchLabels:\n      app: api\n  ingress: []') +
      ccnp('cw', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromEntities: [world]'),
    flow: { src: db, dst: api },
    want: ['cw', 'prod/zeta', 'prod/alpha'],
  },
  {
    name: 'only annotated policies raise alerts',
    yaml: ingressTo('a', 'prod', 'api', l3('app: web'), false) + ingressTo('b', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api },
    want: ['prod/b'],
    sim: ['prod/a', 'prod/b'],
  },
  {
    name: 'unannotated policies only: no alert',
    yaml: ingressTo('a', 'prod', 'api', l3('app: web'), false),
    flow: { src: db, dst: api },
    want: null,
    sim: ['prod/a'],
  },

  // --- fromRequires
  {
    name: 'fromRequires narrows every allow',
    yaml:
      cnp(
        'req',
        'prod',
        '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromRequires:\n        - matchLabels:\n            env: prod',
      ) + ingressTo('allow', 'prod', 'api', '    - fromEndpoints:\n        - {}\n'),
    flow: { src: web, dst: api },
    want: ['prod/allow', 'prod/req'],
  },
  {
    name: 'fromRequires satisfied',
    yaml:
      cnp(
        'req',
        'prod',
        '  endpointSelector:\n    matchLabels:\n      app: api\n  ingress:\n    - fromRequires:\n        - matchLabels:\n            env: prod',
      ) + ingressTo('allow', 'prod', 'api', '    - fromEndpoints:\n        - {}\n'),
    flow: { src: pod('prod', { app: 'x', env: 'prod' }), dst: api },
    want: null,
  },

  // --- Kubernetes NetworkPolicy
  {
    name: 'k8s: namespaceSelector AND podSelector in one peer',
    yaml: knp(
      'np',
      'prod',
      '  podSelector:\n    matchLabels:\n      app: db\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: staging\n          podSelector:\n            matchLabels:\n              app: api',
    ),
    flow: { src: stagingWeb, dst: db },
    want: ['prod/np'],
  },
  {
    name: 'k8s: AND peer allows the pod in that namespace',
    yaml: knp(
      'np',
      'prod',
      '  podSelector:\n    matchLabels:\n      app: db\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: staging\n          podSelector:\n            matchLabels:\n              app: api',
    ),
    flow: { src: stagingApi, dst: db },
    want: null,
  },
  {
    name: 'k8s: two peers are OR-ed',
    yaml: knp(
      'np',
      'prod',
      '  podSelector:\n    matchLabels:\n      app: db\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: staging\n        - podSelector:\n            matchLabels:\n              app: api',
    ),
    flow: { src: stagingWeb, dst: db },
    want: null,
  },
  {
    name: 'k8s: podSelector peer is the policy namespace',
    yaml: knp(
      'np',
      'prod',
      '  podSelector:\n    matchLabels:\n      app: db\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n              app: api',
    ),
    flow: { src: stagingApi, dst: db },
    want: ['prod/np'],
  },
  {
    name: 'k8s: ipBlock with except',
    yaml: knp('np', 'prod', '  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 0.0.0.0/0\n            except: [192.0.2.0/24]'),
    flow: { src: world('192.0.2.10'), dst: db },
    want: ['prod/np'],
  },
  {
    name: 'k8s: ipBlock outside except',
    yaml: knp('np', 'prod', '  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 0.0.0.0/0\n            except: [192.0.2.0/24]'),
    flow: { src: world('198.51.100.10'), dst: db },
    want: null,
  },
  {
    name: 'k8s: ports default to TCP',
    yaml: knp('np', 'prod', '  podSelector: {}\n  ingress:\n    - ports:\n        - port: 53'),
    flow: { src: web, dst: db, proto: 'UDP', port: 53 },
    want: ['prod/np'],
  },
  {
    name: 'k8s: endPort',
    yaml: knp('np', 'prod', '  podSelector: {}\n  ingress:\n    - ports:\n        - port: 32000\n          endPort: 32768'),
    flow: { src: web, dst: db, port: 32100 },
    want: null,
  },
  {
    name: 'k8s: empty ingress denies all',
    yaml: knp('np', 'prod', '  podSelector: {}\n  policyTypes: [Ingress]'),
    flow: { src: web, dst: db },
    want: ['prod/np'],
  },
  {
    name: 'k8s: ingress [{}] allows all',
    yaml: knp('np', 'prod', '  podSelector: {}\n  ingress:\n    - {}'),
    flow: { src: world('1.1.1.1'), dst: db, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'k8s: policyTypes Egress only leaves ingress open',
    yaml: knp('np', 'prod', '  podSelector: {}\n  policyTypes: [Egress]'),
    flow: { src: web, dst: db, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'k8s: policyTypes Egress denies egress',
    yaml: knp('np', 'prod', '  podSelector: {}\n  policyTypes: [Egress]'),
    flow: { src: web, dst: db, dir: 'egress' },
    want: ['prod/np'],
  },
  {
    name: 'k8s: egress rules imply the Egress type',
    yaml: knp('np', 'prod', '  podSelector: {}\n  egress:\n    - to:\n        - podSelector: {}'),
    flow: { src: web, dst: world('1.1.1.1'), dir: 'egress' },
    want: ['prod/np'],
  },
  {
    name: 'k8s NetworkPolicy and Cilium policy add up',
    yaml:
      knp(
        'np',
        'prod',
        '  podSelector:\n    matchLabels:\n      app: db\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n              app: api',
      ) + ingressTo('c', 'prod', 'db', l3('app: web')),
    flow: { src: web, dst: db, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },

  // --- alert namespace ownership
  {
    name: 'alertNamespaces: a policy outside them raises nothing',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api },
    want: null,
    opts: { alertNamespaces: ['staging'] },
  },
  {
    name: 'alertNamespaces: a policy inside them alerts',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api },
    want: ['prod/p'],
    opts: { alertNamespaces: ['prod'] },
  },
  {
    name: 'alertClusterwide false: clusterwide policies raise nothing',
    yaml: ccnp('cw', '  endpointSelector: {}\n  ingress:\n    - {}'),
    flow: { src: db, dst: api },
    want: null,
    opts: { alertClusterwide: false },
  },
  {
    name: 'alertClusterwide true (default) with namespaces',
    yaml: ccnp('cw', '  endpointSelector: {}\n  ingress:\n    - {}'),
    flow: { src: db, dst: api },
    want: ['cw'],
    opts: { alertNamespaces: ['other'] },
  },

  // --- what is not a policy drop
  {
    name: 'forwarded flows never alert',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: ['prod/p'],
  },
  { name: 'drops for other reasons never alert', yaml: ingressTo('p', 'prod', 'api', l3('app: web')), flow: { src: db, dst: api, reason: 155 }, want: null },
  { name: 'a dropped flow the policies allow is not blamed', yaml: ingressTo('p', 'prod', 'api', l3('app: web')), flow: { src: web, dst: api }, want: null },
  // Policy audit mode: Hubble reports AUDIT with no drop reason; the loaded policies decide.
  {
    name: 'AUDIT without a drop reason: default deny',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'AUDIT', reason: 0 },
    want: ['prod/p'],
    reason: 'POLICY_DENIED',
  },
  {
    name: 'AUDIT without a drop reason: allowed flow not blamed',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: web, dst: api, verdict: 'AUDIT', reason: 0 },
    want: null,
  },
  {
    name: 'AUDIT without a drop reason: explicit deny',
    yaml:
      ingressTo('allow', 'prod', 'api', '    - fromEntities: [all]\n') +
      cnp(
        'deny',
        'prod',
        '  endpointSelector:\n    matchLabels:\n      app: api\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels:\n            app: db',
      ),
    flow: { src: db, dst: api, verdict: 'AUDIT', reason: 0 },
    want: ['prod/deny'],
    reason: 'POLICY_DENY',
  },
  {
    name: 'AUDIT without a drop reason: no direction, egress then ingress',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'AUDIT', reason: 0, dir: 'unknown' },
    want: ['prod/p'],
  },
  // simulate(): traffic from the node's own host passes unless denied (Cilium's allow-localhost=always).
  {
    name: 'simulate: the local host may reach a default-deny endpoint',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: reserved('host', 1), dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: null,
  },
  {
    name: 'simulate: deny rules still stop the local host',
    yaml:
      ingressTo('p', 'prod', 'api', l3('app: web')) +
      cnp('nohost', 'prod', '  endpointSelector:\n    matchLabels:\n      app: api\n  ingressDeny:\n    - fromEntities: [host]'),
    flow: { src: reserved('host', 1), dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: ['prod/nohost'],
  },
  {
    name: 'simulate: a remote node is not the local host',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: reserved('remote-node', 6), dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: ['prod/p'],
  },
  {
    name: 'simulate: the pod egress to the host is judged',
    yaml: egressFrom('p', 'prod', 'api', l3('app: web').replace('from', 'to')),
    flow: { src: api, dst: reserved('host', 1), dir: 'egress', verdict: 'FORWARDED' },
    want: null,
    sim: ['prod/p'],
  },
  {
    name: 'simulate with allowLocalhost false judges the host like any peer',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: reserved('host', 1), dst: api, verdict: 'FORWARDED' },
    want: null,
    sim: ['prod/p'],
    opts: { allowLocalhost: false },
  },
  {
    name: 'a drop Cilium reports from the local host is still attributed',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: reserved('host', 1), dst: api },
    want: ['prod/p'],
  },
  {
    name: 'AUDIT verdicts are treated as drops',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'AUDIT' },
    want: ['prod/p'],
  },
  {
    name: 'replies are not simulated',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED', reply: true },
    want: null,
    sim: null,
  },
  // Only what opens a connection is judged; Hubble does not always mark the rest is_reply.
  {
    name: 'a SYN+ACK without is_reply is not simulated',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED', tcpFlags: ['SYN', 'ACK'] },
    want: null,
    sim: null,
  },
  {
    name: 'an ACK without is_reply is not simulated',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED', tcpFlags: ['ACK', 'PSH'] },
    want: null,
    sim: null,
  },
  {
    name: 'a FIN or RST is not simulated',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED', tcpFlags: ['RST'] },
    want: null,
    sim: null,
  },
  {
    name: 'a SYN is simulated',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, verdict: 'FORWARDED', tcpFlags: ['SYN'] },
    want: null,
    sim: ['prod/p'],
  },
  // simulate(): an L7 record is a request on a connection judged when it opened, with
  // the peer as the proxy resolved it (Hubble often says world for a pod): L7 rules only.
  {
    name: 'simulate: an L7 request from a peer no L3 rule allows is not blamed (its connection was judged at the SYN)',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, port: 80, verdict: 'FORWARDED', http: { method: 'GET', url: 'http://api/x' } },
    want: null,
    sim: null,
  },
  {
    name: 'simulate: an L7 request from a peer a deny rule matches is not blamed on the deny rule',
    yaml: ccnp('deny', '  endpointSelector: {}\n  ingressDeny:\n    - fromEntities: [world]'),
    flow: { src: world('7.7.7.7'), dst: api, port: 80, verdict: 'FORWARDED', http: { method: 'GET', url: 'http://api/x' } },
    want: null,
    sim: null,
  },
  {
    name: 'simulate: an L7 request the L7 rules refuse is blamed on them',
    yaml: ingressTo(
      'p',
      'prod',
      'api',
      `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
    ),
    flow: { src: web, dst: api, port: 80, verdict: 'FORWARDED', http: { method: 'DELETE', url: 'http://api/x' } },
    want: null,
    sim: ['prod/p'],
  },
  {
    name: 'a dropped ACK is still attributed (Cilium judged it)',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, tcpFlags: ['ACK'] },
    want: ['prod/p'],
  },
  {
    name: 'unknown direction: the sender egress, then the receiver ingress',
    yaml: ingressTo('p', 'prod', 'api', l3('app: web')),
    flow: { src: db, dst: api, dir: 'unknown' },
    want: ['prod/p'],
  },
];

describe('policy semantics', () => {
  for (const c of cases) {
    it(c.name, () => {
      const ps = policies(c.yaml);
      const f = flow(c.flow);
      for (const m of [new PolicyEngine(ps, c.opts), new LinearMatcher(ps, c.opts)]) {
        const a = m.attribute(f);
        expect(names(a), m.constructor.name).toEqual(c.want);
        if (a && c.reason) expect(a.reason).toBe(c.reason);
        if (c.sim !== undefined) {
          const s = m.simulate(f);
          expect(s === null ? null : s.responsible!.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)), `${m.constructor.name} simulate`).toEqual(
            c.sim,
          );
        }
      }
    });
  }
});

describe('attribution details', () => {
  it('explicit deny reason and direction', () => {
    const e = new PolicyEngine(
      policies(ccnp('meta', '  endpointSelector: {}\n  egressDeny:\n    - toCIDR: [169.254.169.254/32]\n  enableDefaultDeny:\n    egress: false')),
    );
    const a = e.attribute(flow({ src: api, dst: world('169.254.169.254'), dir: 'egress', reason: 181 }));
    expect(a).toEqual({
      direction: 'egress',
      reason: 'POLICY_DENY',
      policies: [{ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'meta' }],
      responsible: [{ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'meta' }],
    });
    expect(Object.isFrozen(a)).toBe(true);
  });

  it('an L7 refusal is blamed on the policies whose L7 rules cover the port', () => {
    const e = new PolicyEngine(
      policies(
        ingressTo(
          'l7',
          'prod',
          'api',
          `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
        ) + ingressTo('other', 'prod', 'api', l3('app: db')),
      ),
    );
    const a = e.attribute(flow({ src: web, dst: api, port: 80, http: { method: 'POST', url: '/' } }));
    expect(names(a)).toEqual(['prod/l7']);
    expect(a?.l7).toBe(true);
  });

  it('DNS rules: a refused query', () => {
    const e = new PolicyEngine(
      policies(
        egressFrom(
          'dns',
          'prod',
          'api',
          '    - toEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: kube-system\n            k8s:k8s-app: kube-dns\n      toPorts:\n        - ports:\n            - port: "53"\n              protocol: ANY\n          rules:\n            dns:\n              - matchPattern: "*.example.com"\n',
        ),
      ),
    );
    const dns = pod('kube-system', { 'k8s-app': 'kube-dns' });
    expect(names(e.attribute(flow({ src: api, dst: dns, dir: 'egress', proto: 'UDP', port: 53, dns: 'evil.net.' })))).toEqual(['prod/dns']);
    expect(e.attribute(flow({ src: api, dst: dns, dir: 'egress', proto: 'UDP', port: 53, dns: 'www.example.com.' }))).toBeNull();
  });

  it('a DROPPED L7 flow that carries POLICY_DENIED (event type 129) is judged by the L7 rules', () => {
    // Newer Hubbles fill drop_reason_desc on the proxy's access-log records too; the L4
    // default-deny reading would find the port open (it goes to the proxy) and blame nobody.
    const ps = policies(
      egressFrom(
        'dns',
        'prod',
        'api',
        '    - toEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: kube-system\n            k8s:k8s-app: kube-dns\n      toPorts:\n        - ports:\n            - port: "53"\n              protocol: ANY\n          rules:\n            dns:\n              - matchPattern: "*.example.com"\n',
      ) +
        ingressTo(
          'l7',
          'prod',
          'api',
          `${l3('app: web')}      toPorts:\n        - ports:\n            - port: "80"\n          rules:\n            http:\n              - method: GET\n`,
        ),
    );
    const kubeDns = pod('kube-system', { 'k8s-app': 'kube-dns' });
    const asHubble = (f: Flow): Flow => ({ ...f, Type: FlowType.L7, event_type: { type: 129, sub_type: 0 } });
    for (const m of [new PolicyEngine(ps), new LinearMatcher(ps)]) {
      const q = m.attribute(asHubble(flow({ src: api, dst: kubeDns, dir: 'egress', proto: 'UDP', port: 53, dns: 'evil.net.', reason: 133 })));
      expect(names(q), m.constructor.name).toEqual(['prod/dns']);
      expect(q).toMatchObject({ reason: 'POLICY_DENIED', l7: true });
      expect(m.attribute(asHubble(flow({ src: api, dst: kubeDns, dir: 'egress', proto: 'UDP', port: 53, dns: 'www.example.com.', reason: 133 })))).toBeNull();
      expect(names(m.attribute(asHubble(flow({ src: web, dst: api, port: 80, http: { method: 'POST', url: '/' }, reason: 133 }))))).toEqual(['prod/l7']);
    }
  });

  it('the same connection retried from another source port gives the same, cached attribution', () => {
    const e = new PolicyEngine(policies(ingressTo('p', 'prod', 'api', l3('app: web'))));
    const a = e.attribute(flow({ src: db, dst: api, srcPort: 40001 }));
    const b = e.attribute(flow({ src: db, dst: api, srcPort: 51234 }));
    expect(a).not.toBeNull();
    expect(b).toBe(a);
  });

  it('an address outside the cluster is resolved per identity: plain world, then kube-apiserver', () => {
    const ps = policies(egressFrom('p', 'prod', 'api', '    - toEntities: [kube-apiserver]\n'));
    const e = new PolicyEngine(ps);
    const l = new LinearMatcher(ps);
    const asWorld = flow({ src: api, dst: world('172.18.0.2'), dir: 'egress' });
    const asApiserver = flow({
      src: api,
      dst: { identity: 16777217, labels: ['reserved:kube-apiserver', 'reserved:world', 'cidr:172.18.0.2/32'], ip: '172.18.0.2' },
      dir: 'egress',
    });
    for (const m of [e, l]) {
      expect(names(m.attribute(asWorld)), m.constructor.name).toEqual(['prod/p']);
      expect(m.attribute(asApiserver), m.constructor.name).toBeNull();
    }
  });

  it('an identity number reused for other labels is not trusted', () => {
    const e = new PolicyEngine(policies(ingressTo('p', 'prod', 'api', l3('app: web'))));
    const src = { ...db, identity: 77777 };
    expect(names(e.attribute(flow({ src, dst: api })))).toEqual(['prod/p']);
    const same = { ...web, identity: 77777 };
    expect(e.attribute(flow({ src: same, dst: api }))).toBeNull();
  });

  it('the last definition of a policy wins and size counts each once', () => {
    const ps = [...policies(ingressTo('p', 'prod', 'api', l3('app: web'))), ...policies(ingressTo('p', 'prod', 'api', l3('app: db')))];
    const e = new PolicyEngine(ps);
    expect(e.size).toBe(1);
    expect(e.attribute(flow({ src: db, dst: api }))).toBeNull();
  });

  it('nodeSelector policies select the host', () => {
    const e = new PolicyEngine(policies(ccnp('host', '  nodeSelector: {}\n  ingress:\n    - fromEntities: [cluster]')));
    expect(names(e.attribute(flow({ src: world('1.2.3.4'), dst: reserved('host', 1) })))).toEqual(['host']);
    expect(e.attribute(flow({ src: web, dst: reserved('host', 1) }))).toBeNull();
    // and not pods
    expect(e.attribute(flow({ src: world('1.2.3.4'), dst: web }))).toBeNull();
  });
});

describe('index and caches agree with the linear scan', () => {
  it('on random flows over many policies', () => {
    let s = 7;
    const r = () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const apps = ['a', 'b', 'c', 'd', 'e'];
    const nss = ['n1', 'n2', 'n3'];
    let yaml = '';
    for (let i = 0; i < 60; i++) {
      const ns = nss[i % 3]!;
      const app = apps[Math.floor(r() * apps.length)]!;
      const peer = apps[Math.floor(r() * apps.length)]!;
      const port = 80 + Math.floor(r() * 4);
      switch (i % 6) {
        case 0:
          yaml += ingressTo(`i${i}`, ns, app, `${l3(`app: ${peer}`)}      toPorts:\n        - ports:\n            - port: "${port}"\n`, r() < 0.7);
          break;
        case 1:
          yaml += egressFrom(
            `e${i}`,
            ns,
            app,
            `    - toEndpoints:\n        - matchExpressions:\n            - key: app\n              operator: NotIn\n              values: [${peer}]\n    - toCIDRSet:\n        - cidr: 203.0.113.0/24\n          except: [203.0.113.128/25]\n`,
          );
          break;
        case 2:
          yaml += ccnp(
            `c${i}`,
            `  endpointSelector:\n    matchLabels:\n      app: ${app}\n  ingressDeny:\n    - fromEntities: [world]\n      toPorts:\n        - ports:\n            - port: "${port}"\n  enableDefaultDeny:\n    ingress: false`,
          );
          break;
        case 3:
          yaml += knp(
            `k${i}`,
            ns,
            `  podSelector:\n    matchLabels:\n      app: ${app}\n  ingress:\n    - from:\n        - namespaceSelector: {}\n          podSelector:\n            matchLabels:\n              app: ${peer}`,
          );
          break;
        case 4:
          yaml += cnp(
            `x${i}`,
            ns,
            `  endpointSelector:\n    matchExpressions:\n      - key: app\n        operator: Exists\n  egressDeny:\n    - toEndpoints:\n        - matchLabels:\n            app: ${peer}\n      toPorts:\n        - ports:\n            - port: "${port}"\n  enableDefaultDeny:\n    egress: false`,
          );
          break;
        default:
          yaml += cnp(
            `y${i}`,
            ns,
            `  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: ${nss[(i + 1) % 3]}\n`,
          );
          break;
      }
    }
    const ps = policies(yaml);
    const engine = new PolicyEngine(ps, { alertNamespaces: ['n1', 'n2'], cacheSize: 64 });
    const linear = new LinearMatcher(ps, { alertNamespaces: ['n1', 'n2'] });
    const eps = [...nss.flatMap((ns) => apps.map((a) => pod(ns, a))), world('203.0.113.5'), world('203.0.113.200'), world('8.8.8.8'), reserved('host', 1)];
    let alerts = 0;
    for (let i = 0; i < 2000; i++) {
      const src = eps[Math.floor(r() * eps.length)]!;
      const dst = eps[Math.floor(r() * eps.length)]!;
      const f = flow({
        src,
        dst,
        dir: r() < 0.5 ? 'ingress' : 'egress',
        port: 80 + Math.floor(r() * 4),
        reason: r() < 0.3 ? 181 : 133,
        verdict: r() < 0.8 ? 'DROPPED' : 'FORWARDED',
      });
      const a = engine.attribute(f);
      expect(a).toEqual(linear.attribute(f));
      expect(engine.simulate(f)).toEqual(linear.simulate(f));
      if (a) alerts++;
    }
    expect(alerts).toBeGreaterThan(100);
  });
});

describe('the index', () => {
  it('tests only rules that could select the endpoint, however many policies exist', () => {
    let yaml = '';
    for (let i = 0; i < 2000; i++) yaml += ingressTo(`p${i}`, `ns${i % 50}`, `svc${i}`, l3('app: web'));
    yaml += ingressTo('mine', 'shop', 'api', l3('app: web'));
    yaml += cnp('all-of-shop', 'shop', '  endpointSelector: {}\n  egress:\n    - {}');
    const e = new PolicyEngine(policies(yaml));
    expect(e.size).toBe(2002);
    const a = e.attribute(flow({ src: pod('shop', 'db'), dst: pod('shop', 'api') }));
    expect(names(a)).toEqual(['shop/mine']);
    // the api pod's own bucket, and the namespace-wide rule (which has no ingress)
    expect(e.stats().ruleChecks).toBe(1);
    e.attribute(flow({ src: pod('shop', 'db'), dst: pod('shop', 'api'), dir: 'egress' }));
    expect(e.stats().ruleChecks).toBe(2);
    // cached from now on
    e.attribute(flow({ src: pod('shop', 'db'), dst: pod('shop', 'api'), srcPort: 50000 }));
    expect(e.stats().ruleChecks).toBe(2);
  });
});
