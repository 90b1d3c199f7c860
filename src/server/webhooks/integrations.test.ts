import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { IntegrationSpec } from '../../shared/config/webhooks-config.js';
import { openServerDb } from '../store/server-db.js';
import { migrateWebhooks } from './db.js';
import { IntegrationRegistry, type SharedIntegration, type SharedIntegrationState, specChange } from './integrations.js';

// The tokens topic as replicas share integrations through it: one partition, compaction keeps the last message of
// each key. A replica made after compaction must end where the replicas that read every message are.
type Msg = SharedIntegration | SharedIntegrationState;
const log = pino({ level: 'silent' });
const keyOf = (m: Msg) => `${m.kind}:${m.name}`;

function replica(): IntegrationRegistry {
  const db = openServerDb(':memory:');
  migrateWebhooks(db);
  return new IntegrationRegistry(db);
}

const apply = (reg: IntegrationRegistry, m: Msg) => (m.kind === 'integration' ? reg.applyShared(m, log) : reg.applyState(m));

/** Reads `m` on every replica; the writer, reading back its own change, appends the repair it asks for. */
function append(topic: Msg[], replicas: IntegrationRegistry[], writer: IntegrationRegistry, m: Msg): boolean {
  topic.push(m);
  let applied = false;
  for (const r of replicas) {
    const ok = apply(r, m);
    if (r === writer) applied = ok;
  }
  const fix = writer.repairFor(m);
  if (fix) append(topic, replicas, writer, fix);
  return applied;
}

const compacted = (topic: Msg[]) => topic.filter((m, i) => !topic.slice(i + 1).some((n) => keyOf(n) === keyOf(m)));

function fromCompacted(topic: Msg[]): IntegrationRegistry {
  const fresh = replica();
  for (const m of compacted(topic)) apply(fresh, m);
  return fresh;
}

const spec = (url: string): IntegrationSpec => ({ name: 'x', type: 'generic', url, route: {}, repeat_milestones: [] }) as unknown as IntegrationSpec;
const msg = (op: SharedIntegration['op'], s: IntegrationSpec | null, created: string, change: string): SharedIntegration => ({
  kind: 'integration',
  name: 'x',
  origin: 'api',
  op,
  spec: s,
  deleted: op === 'delete',
  created_at: created,
  updated_at: new Date().toISOString(),
  change,
});
const view = (reg: IntegrationRegistry) => {
  const i = reg.byName('x');
  return i && { url: i.spec.url, created_at: i.created_at, disabled_reason: i.disabled_reason };
};

describe('integrations shared through a compacted topic', () => {
  it('an update that is all compaction left of a name makes the integration, with that life', () => {
    const a = replica();
    const topic: Msg[] = [];
    append(topic, [a], a, msg('create', spec('https://a.example/1'), 't1', 'c1'));
    append(topic, [a], a, msg('update', spec('https://a.example/2'), 't1', 'c2'));
    expect(compacted(topic).map((m) => (m as SharedIntegration).op)).toEqual(['update']);
    expect(view(fromCompacted(topic))).toEqual(view(a));
    expect(view(a)).toEqual({ url: 'https://a.example/2', created_at: 't1', disabled_reason: null });
  });

  it("a create that lost the race (409) is written over with the winner's spec and life", () => {
    const a = replica();
    const b = replica();
    const topic: Msg[] = [];
    expect(append(topic, [a, b], a, msg('create', spec('https://a.example/a'), 'tA', 'cA'))).toBe(true);
    expect(append(topic, [a, b], b, msg('create', spec('https://b.example/b'), 'tB', 'cB'))).toBe(false);
    expect(view(b)).toEqual({ url: 'https://a.example/a', created_at: 'tA', disabled_reason: null });
    expect(view(fromCompacted(topic))).toEqual(view(b));
  });

  it('a late update of a deleted life is not applied (404) and does not bring it back after compaction', () => {
    const a = replica();
    const b = replica();
    const topic: Msg[] = [];
    append(topic, [a, b], a, msg('create', spec('https://a.example/1'), 't1', 'c1'));
    append(topic, [a, b], a, msg('delete', null, 't1', 'c2'));
    expect(append(topic, [a, b], b, msg('update', spec('https://a.example/2'), 't1', 'c3'))).toBe(false);
    expect(view(a)).toBeUndefined();
    expect(view(b)).toBeUndefined();
    expect(view(fromCompacted(topic))).toBeUndefined();
  });

  it('a repair never undoes a change written between the stale change and it', () => {
    const a = replica();
    const b = replica();
    const topic: Msg[] = [];
    append(topic, [a, b], a, msg('create', spec('https://a.example/a'), 'tA', 'cA'));
    // B's losing create is read, then A's PATCH is written before B's repair.
    const lost = msg('create', spec('https://b.example/b'), 'tB', 'cB');
    topic.push(lost);
    for (const r of [a, b]) apply(r, lost);
    const fix = b.repairFor(lost)!;
    append(topic, [a, b], a, msg('update', spec('https://a.example/a2'), 'tA', 'cP'));
    append(topic, [a, b], b, fix);
    expect(view(a)?.url).toBe('https://a.example/a2');
    expect(view(b)?.url).toBe('https://a.example/a2');
    expect(view(fromCompacted(topic))).toEqual(view(a));
  });

  it('an enable about an old endpoint (409) is written over with the current disabled state', () => {
    const a = replica();
    const b = replica();
    const topic: Msg[] = [];
    append(topic, [a, b], a, msg('create', spec('https://a.example/1'), 't1', 'c1'));
    const old = a.byName('x')!;
    append(topic, [a, b], a, msg('update', spec('https://a.example/2'), 't1', 'c2'));
    const now = a.byName('x')!;
    const state = (i: typeof now, reason: string | null, change: string): SharedIntegrationState => ({
      kind: 'integration_state',
      name: 'x',
      spec_change: specChange(i),
      disabled_reason: reason,
      disabled_at: reason && '2026-12-01T00:00:00.000Z',
      change,
    });
    append(topic, [a, b], a, state(now, 'endpoint answered 410 Gone', 's1'));
    expect(append(topic, [a, b], b, state(old, null, 's2'))).toBe(false);
    expect(view(b)?.disabled_reason).toBe('endpoint answered 410 Gone');
    expect(view(fromCompacted(topic))).toEqual(view(a));
  });
});
