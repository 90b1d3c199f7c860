import { describe, expect, it } from 'vitest';
import { openEntry, OpenAlerts } from './open-alerts.js';
import { SearchIndex, SearchText } from './search-text.js';
import { openServerDb } from './server-db.js';
import type { AlertRow } from './types.js';

let nextId = 0;

function entry(agent: string, fingerprint: string) {
  const row: AlertRow = {
    id: ++nextId,
    fingerprint,
    agent,
    status: 'triggered',
    source: 'cilium',
    severity: 'medium',
    severity_rank: 2,
    title: 't',
    description: 'd',
    cluster: 'prod',
    namespace: 'shop',
    policies: '[]',
    rule: '',
    labels: '{}',
    details: '{}',
    count: 1,
    events: 1,
    first_seen: 1,
    last_seen: 1,
    created_at: 1,
    updated_at: 1,
    last_received_at: 1,
    clock_skew: 0,
    severity_event: 0,
    seq: nextId,
  };
  return openEntry(row, { labels: {}, policies: [], details: {}, search: SearchText.of('shop', [], ''), mainText: '', isNew: false });
}

/** Which of these fingerprints (agent/fingerprint) the cache still holds (the database has none of them). */
function held(open: OpenAlerts, keys: string[]): string[] {
  return keys.filter((k) => {
    const [agent, fp] = k.split('/') as [string, string];
    return open.get(agent, fp) !== undefined;
  });
}

describe('OpenAlerts', () => {
  it('evicts entries not used since the last pass, across agents, down to its size', () => {
    const db = openServerDb(':memory:');
    const open = new OpenAlerts(db, new SearchIndex(db), 2);
    for (const k of ['x/a1', 'x/a2', 'x/a3']) {
      const [agent, fp] = k.split('/') as [string, string];
      open.add(entry(agent, fp));
    }
    open.get('x', 'a1');
    open.add(entry('y', 'b1'));
    open.committed([]);
    expect(held(open, ['x/a1', 'x/a2', 'x/a3', 'y/b1'])).toEqual(['x/a1', 'y/b1']);
  });

  it('counts what it forgets and drops, so it evicts nothing while under its size', () => {
    const db = openServerDb(':memory:');
    const open = new OpenAlerts(db, new SearchIndex(db), 3);
    const a1 = entry('x', 'a1');
    const a2 = entry('x', 'a2');
    open.add(a1);
    open.add(a2);
    open.add(entry('y', 'b1'));
    open.forget('x', 'a1', a1.row.id);
    open.drop([a2]);
    open.add(entry('y', 'b2'));
    open.add(entry('z', 'c1'));
    // The same fingerprint again replaces its entry: still three.
    open.add(entry('z', 'c1'));
    open.committed([]);
    expect(held(open, ['x/a1', 'x/a2', 'y/b1', 'y/b2', 'z/c1'])).toEqual(['y/b1', 'y/b2', 'z/c1']);
  });
});
