import type { Endpoint, Flow, Service } from '../../../gen/flow/flow.js';
import { parseIp } from './cidr.js';
import { Matcher, type EngineOptions } from './matcher.js';
import { endpointLabelSet, ENTITY, WORLD_BITS } from './labels.js';
import { decide, makeSelection, ruleSelects, type EndpointView, type Policy, type SectionRef } from './policy.js';
import { flowL4 } from './ports.js';

// The straightforward matcher: for every flow, read both endpoints' labels and
// test every rule of every policy. Same semantics as PolicyEngine (it shares
// the evaluation), none of its index or caches; the benchmark's baseline and
// the tests' oracle for the engine.

function view(ep: Endpoint | undefined, ip: string, names: readonly string[], service: Service | undefined, nodeLabels: readonly string[]): EndpointView {
  const identity = ep?.identity ?? 0;
  const labels = ep?.labels ?? [];
  const worldish = identity === 2 || identity === 9 || identity === 10 || identity >= 1 << 24 || (labels.length === 0 && identity === 0);
  const v = endpointLabelSet(labels, identity, ep?.namespace ?? '', identity === 1 ? nodeLabels : []);
  let flags = v.flags;
  if (worldish || (flags & WORLD_BITS) !== 0) {
    flags = (flags | ENTITY.world) & ~ENTITY.cluster;
    if (!v.set.has('reserved', 'world')) v.set.add({ source: 'reserved', key: 'world', value: '' });
    const addr = ip ? parseIp(ip) : null;
    if (addr) flags |= addr.v6 ? ENTITY.worldV6 : ENTITY.worldV4;
    return { id: 0, labels: v.set, flags, ns: '', ip: addr, names, service: service ?? null };
  }
  return { id: 0, labels: v.set, flags, ns: v.ns, ip: null, names: [], service: null };
}

export class LinearMatcher extends Matcher {
  constructor(policies: readonly Policy[], opts: EngineOptions = {}) {
    super(policies, opts);
  }

  protected decision(flow: Flow, dir: 0 | 1) {
    const ip = flow.IP;
    const subject =
      dir === 0
        ? view(flow.destination, ip?.destination ?? '', [], undefined, flow.node_labels)
        : view(flow.source, ip?.source ?? '', [], undefined, flow.node_labels);
    const peer =
      dir === 0
        ? view(flow.source, ip?.source ?? '', flow.source_names, flow.source_service, flow.node_labels)
        : view(flow.destination, ip?.destination ?? '', flow.destination_names, flow.destination_service, flow.node_labels);
    const sections: SectionRef[] = [];
    for (const policy of this.policies) {
      for (const rule of policy.rules) {
        const section = dir === 0 ? rule.ingress : rule.egress;
        if (section !== null && ruleSelects(rule, subject)) sections.push({ policy, section });
      }
    }
    return { d: decide(makeSelection(sections), peer, flowL4(flow, this.l4), this.named) };
  }
}
