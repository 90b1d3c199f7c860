import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PolicyEngine } from './engine.js';
import { loadPolicyFiles } from './parse.js';
import { flow, pod, world, type FlowSpec } from './testing.js';

// The example policies in policies/ drop what policies/README.md says they
// drop, with the reason it says, and let the rest through.

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');

const frontend = pod('shop', 'frontend');
const cart = pod('shop', 'cart');
const payments = pod('shop', 'payments');
const postgres = pod('db', 'postgres');
const dns = pod('kube-system', { 'k8s-app': 'kube-dns' });

const cases: [string, FlowSpec, string | null, string?][] = [
  ['frontend -> payments:8443 ingress', { src: frontend, dst: payments, port: 8443 }, 'shop/payments-ingress', 'POLICY_DENIED'],
  ['cart -> payments:9090 ingress', { src: cart, dst: payments, port: 9090 }, 'shop/payments-ingress', 'POLICY_DENIED'],
  ['cart -> payments:8443 is allowed', { src: cart, dst: payments, port: 8443 }, null],
  ['payments -> cart:8080 ingress', { src: payments, dst: cart, port: 8080 }, 'shop/cart-ingress', 'POLICY_DENIED'],
  [
    'frontend -> cart DELETE /api/cart (L7)',
    { src: frontend, dst: cart, port: 8080, http: { method: 'DELETE', url: 'http://cart:8080/api/cart' } },
    'shop/cart-ingress',
    'POLICY_DENIED',
  ],
  [
    'frontend -> cart GET /api/cart/42 is allowed',
    { src: frontend, dst: cart, port: 8080, http: { method: 'GET', url: 'http://cart:8080/api/cart/42' } },
    null,
  ],
  ['frontend -> 198.51.100.7:6667 egress', { src: frontend, dst: world('198.51.100.7'), dir: 'egress', port: 6667 }, 'shop/frontend-egress', 'POLICY_DENIED'],
  ['frontend -> 198.51.100.7:443 is allowed', { src: frontend, dst: world('198.51.100.7'), dir: 'egress', port: 443 }, null],
  ['frontend -> payments:8443 egress', { src: frontend, dst: payments, dir: 'egress', port: 8443 }, 'shop/frontend-egress', 'POLICY_DENIED'],
  ['frontend -> kube-dns:53/UDP is allowed by the unannotated allow-dns', { src: frontend, dst: dns, dir: 'egress', proto: 'UDP', port: 53 }, null],
  [
    'frontend -> postgres:5432 egress, explicit deny',
    { src: frontend, dst: postgres, dir: 'egress', port: 5432, reason: 181 },
    'shop/deny-frontend-to-db',
    'POLICY_DENY',
  ],
  ['cart -> postgres:5432 ingress', { src: cart, dst: postgres, port: 5432 }, 'db/postgres-ingress', 'POLICY_DENIED'],
  ['payments -> postgres:5432 is allowed', { src: payments, dst: postgres, port: 5432 }, null],
  [
    'payments-labelled pod of another namespace -> postgres',
    { src: pod('other', 'payments'), dst: postgres, port: 5432 },
    'db/postgres-ingress',
    'POLICY_DENIED',
  ],
  [
    'payments -> 169.254.169.254:80 egress, explicit deny',
    { src: payments, dst: world('169.254.169.254'), dir: 'egress', port: 80, reason: 181 },
    'deny-cloud-metadata',
    'POLICY_DENY',
  ],
];

describe('the example policies in policies/ do what policies/README.md says', async () => {
  const loaded = await loadPolicyFiles([resolve(repoRoot, 'policies')]);
  const engine = new PolicyEngine(loaded.policies);
  for (const [name, spec, want, reason] of cases) {
    it(name, () => {
      const a = engine.attribute(flow(spec));
      expect(a === null ? null : a.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)).join()).toBe(want);
      if (a && reason) expect(a.reason).toBe(reason);
      // What the drop says and what the policies would do agree.
      const s = engine.simulate(flow({ ...spec, verdict: 'FORWARDED' }));
      expect(s === null ? null : s.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)).join()).toBe(want);
    });
  }
});
