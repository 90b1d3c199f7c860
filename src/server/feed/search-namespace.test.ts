import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { falcoPayload } from '../store/test-payloads.js';
import { buildHttpServer } from './http-server.js';

// Searches the full-text index cannot look up (no letter or digit: an emoji, `*`,
// `--`) and alerts with no namespace, or one that is not a DNS label, through the
// server over HTTP and its WebSocket stream: a search never turns into no filter,
// and every namespace the counts name can be asked for.

let n = 0;
const ev = (payload: AlertPayload) => ({ id: `sn-${++n}`, payload });

/** A Falco event with this process name and namespace ('' for a host event). */
function falco(fp: string, ns: string, proc: string, output = `process ${proc} started (proc.name=${proc})`): AlertPayload {
  const p = falcoPayload({ fp, ns, pod: `${fp}-pod`, output });
  return { ...p, namespace: ns, labels: { ...p.labels, process: proc } };
}

describe('feed API: literal searches and namespaces', () => {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const read = tokens.create('reader', 'read').token;
  let app: FastifyInstance;
  let base = '';

  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${read}` } });
    return { status: res.status, body: (await res.json()) as any };
  };
  const fps = async (query: string) => {
    const r = await get(`/api/v1/alerts?${query}`);
    expect(r.status, `${query}: ${JSON.stringify(r.body)}`).toBe(200);
    return (r.body.alerts as { fingerprint: string }[]).map((a) => a.fingerprint).sort();
  };

  beforeAll(async () => {
    app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    store.ingest('edge', [
      ev(falco('shell', 'shop', '🐚')),
      ev(falco('dashes', 'shop', 'bash', 'bash -- -i started with a * glob')),
      ev(falco('host', '', 'sshd', 'sshd login on the host')),
      ev(falco('odd', 'Not_A_Valid NS!', 'nginx')),
      ev(falco('plain', 'db', 'postgres')),
      ev(falco('commas', 'odd,ns, with commas', 'nginx')),
    ]);
    // A repeat brings a process name the alert did not open with (kept apart: alerts_fts_added).
    store.ingest('edge', [ev(falco('plain', 'db', '✓check'))]);
  });
  afterAll(async () => {
    await app.close();
    db.close();
  });

  it('finds text with no letter or digit as written, never every alert', async () => {
    expect(await fps(`q=${encodeURIComponent('🐚')}`)).toEqual(['shell']);
    expect(await fps(`q=${encodeURIComponent('✓')}`)).toEqual(['plain']);
    expect(await fps(`q=${encodeURIComponent('*')}`)).toEqual(['dashes']);
    // A trailing star is dropped as after letters, unless the word is only stars.
    expect(await fps(`q=${encodeURIComponent('🐚*')}`)).toEqual(['shell']);
    expect(await fps(`q=${encodeURIComponent('--**')}`)).toEqual(['dashes']);
    expect(await fps(`q=${encodeURIComponent('**')}`)).toEqual([]);
    expect(await fps('q=--')).toEqual(['dashes']);
    expect(await fps(`q=${encodeURIComponent('✗')}`)).toEqual([]);
    expect(await fps(`q=${encodeURIComponent('""')}`)).toEqual([]);
    // With words: both must be there, whichever drives the query.
    expect(await fps(`q=${encodeURIComponent('🐚 started')}`)).toEqual(['shell']);
    expect(await fps(`q=${encodeURIComponent('-- sshd')}`)).toEqual([]);
    expect(await fps(`q=${encodeURIComponent('🐚')}&sort=created`)).toEqual(['shell']);
    const c = await get(`/api/v1/alerts/counts?by=namespace&q=${encodeURIComponent('🐚')}`);
    expect(c.body.counts).toEqual([{ key: 'shop', alerts: 1, events: 1 }]);
  });

  it('filters alerts with no namespace (namespace=), as the counts name them (key "")', async () => {
    const counts = await get('/api/v1/alerts/counts?by=namespace');
    expect((counts.body.counts as { key: string }[]).map((c) => c.key).sort()).toEqual(['', 'Not_A_Valid NS!', 'db', 'odd,ns, with commas', 'shop']);
    expect(await fps('namespace=')).toEqual(['host']);
    expect(await fps('namespace=db&namespace=')).toEqual(['host', 'plain']);
    expect(await fps('namespace=db,shop')).toEqual(['dashes', 'plain', 'shell']);
    const c = await get('/api/v1/alerts/counts?by=source&namespace=');
    expect(c.body.counts).toEqual([{ key: 'falco', alerts: 1, events: 1 }]);
  });

  it('filters by every namespace the store holds, a DNS label or not', async () => {
    expect(await fps(`namespace=${encodeURIComponent('Not_A_Valid NS!')}`)).toEqual(['odd']);
    expect(await fps('namespace=Shop')).toEqual([]);
    // A namespace with commas that is not a list of names is one namespace when an alert holds it.
    expect(await fps(`namespace=${encodeURIComponent('odd,ns, with commas')}`)).toEqual(['commas']);
  });

  it('refuses a comma-separated namespace list with an empty part or a part that is not a namespace name, naming it', async () => {
    const refused = async (value: string) => {
      const r = await get(`/api/v1/alerts?namespace=${encodeURIComponent(value)}`);
      expect(r.status, value).toBe(400);
      const c = await get(`/api/v1/alerts/counts?by=source&namespace=${encodeURIComponent(value)}`);
      expect(c.status, value).toBe(400);
      expect(c.body.message).toBe(r.body.message);
      const s = await fetch(`${base}/api/v1/alerts/stream?namespace=${encodeURIComponent(value)}`, { headers: { authorization: `Bearer ${read}` } });
      expect(s.status, value).toBe(400);
      return r.body.message as string;
    };
    expect(await refused('db,')).toBe(
      'namespace: "db," has an empty part; for alerts with no namespace as well, repeat the parameter (namespace=db&namespace=)',
    );
    expect(await refused(',db')).toMatch(/^namespace: ",db" has an empty part/);
    expect(await refused('shop,Kube_System,db')).toBe(
      'namespace: "Kube_System" in "shop,Kube_System,db" is not a namespace name (lowercase letters, digits and \'-\'); separate only Kubernetes namespace names with commas, and send any other namespace alone in its own namespace= (no alert holds "shop,Kube_System,db" as a whole)',
    );
    expect(await fps('namespace=db,shop')).toEqual(['dashes', 'plain', 'shell']);
    expect(await fps(`namespace=${encodeURIComponent('db, shop')}`)).toEqual(['dashes', 'plain', 'shell']);
  });

  it('takes namespaces and rules at their longest in one query, within the header limit', async () => {
    const wide = (len: number) => encodeURIComponent('𝄞'.repeat(len));
    const label = 'a'.repeat(63);
    const query = [
      ...Array.from({ length: 5 }, () => `namespace=${wide(253)}`),
      ...Array.from({ length: 20 }, () => `rule=${wide(253)}`),
      ...Array.from({ length: 20 }, () => `policy=${label}%2F${'b'.repeat(253)}`),
      ...Array.from({ length: 20 }, () => `agent=${label}`),
      `q=${wide(200)}`,
    ].join('&');
    expect(await fps(query)).toEqual([]);
    const six = Array.from({ length: 6 }, () => 'namespace=shop').join('&');
    const r = await get(`/api/v1/alerts?${six}`);
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/^namespace: /);
  });

  it('streams what the list finds: a literal search and no namespace, caught up and live', async () => {
    const cursor = store.currentSeq();
    const open = (query: string) => {
      const got: { fingerprint: string }[] = [];
      const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/alerts/stream?${query}&cursor=${cursor}`, ['verdict.v1'], {
        headers: { authorization: `Bearer ${read}` },
      });
      let live = false;
      ws.on('message', (d) => {
        const m = JSON.parse(String(d)) as { type: string; alerts?: { fingerprint: string }[] };
        if (m.type === 'live') live = true;
        got.push(...(m.alerts ?? []));
      });
      return { ws, got, isLive: () => live };
    };
    const waitFor = async (pred: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!pred()) {
        if (Date.now() > end) throw new Error('timed out');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // One change before the streams open (caught up from the database), then one live.
    store.ingest('edge', [ev(falco('shell2', 'shop', '🐚')), ev(falco('host2', '', 'sshd')), ev(falco('other', 'shop', 'bash'))]);
    const shells = open(`q=${encodeURIComponent('🐚')}`);
    const hosts = open('namespace=');
    await waitFor(() => shells.isLive() && hosts.isLive());
    store.ingest('edge', [ev(falco('shell3', 'db', '🐚')), ev(falco('host3', '', 'cron')), ev(falco('other2', 'db', 'bash'))]);
    await waitFor(() => shells.got.length >= 2 && hosts.got.length >= 2);
    await new Promise((r) => setTimeout(r, 200));
    expect(shells.got.map((a) => a.fingerprint)).toEqual(['shell2', 'shell3']);
    expect(hosts.got.map((a) => a.fingerprint)).toEqual(['host2', 'host3']);
    shells.ws.close();
    hosts.ws.close();
  });
});

describe('feed API: counts with a search that has no index', () => {
  it("refuses counts that would read more alerts' text than the store allows, saying what to narrow", async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db, { countsTextBudget: 3 });
    const tokens = new FeedTokens(db);
    const read = tokens.create('reader', 'read').token;
    const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      store.ingest('edge', [
        ev(falco('s1', 'shop', '🐚')),
        ev(falco('s2', 'shop', 'bash')),
        ev(falco('d1', 'db', '🐚')),
        ev(falco('d2', 'db', 'bash')),
        ev(falco('k1', 'kube-system', 'bash')),
      ]);
      const counts = async (query: string) => {
        const res = await fetch(`${base}/api/v1/alerts/counts?by=namespace&${query}`, { headers: { authorization: `Bearer ${read}` } });
        return { status: res.status, body: (await res.json()) as any };
      };
      const all = await counts(`q=${encodeURIComponent('🐚')}`);
      expect(all.status).toBe(400);
      expect(all.body.message).toBe(
        'q: counting alerts that contain "🐚" (text with no letter or digit, which has no index) would read the text of more than 3 alerts; narrow the counts with since, another filter or a word',
      );
      // Other filters first: only the alerts they keep have their text read.
      expect((await counts(`q=${encodeURIComponent('🐚')}&namespace=shop,kube-system`)).body.counts).toEqual([{ key: 'shop', alerts: 1, events: 1 }]);
      expect((await counts(`q=${encodeURIComponent('🐚 started')}`)).status).toBe(400);
      expect((await counts(`q=${encodeURIComponent('🐚 s1-pod')}`)).body.counts).toEqual([{ key: 'shop', alerts: 1, events: 1 }]);
      // The list is bounded by its own walk: it answers.
      const list = await fetch(`${base}/api/v1/alerts?q=${encodeURIComponent('🐚')}`, { headers: { authorization: `Bearer ${read}` } });
      expect(list.status).toBe(200);
    } finally {
      await app.close();
      db.close();
    }
  });
});

describe('feed stream: catching up with a search that has no index', () => {
  it('reads a cursor far behind in bounded steps, and still sends exactly the matches, then goes live', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db, { changesScanBudget: 4 });
    const tokens = new FeedTokens(db);
    const read = tokens.create('reader', 'read').token;
    // Each read of the catch-up: how many changes it examined (all after its cursor, up to where it says it stopped).
    const examined: number[] = [];
    const countSeqs = db.prepare('SELECT count(*) AS n FROM alerts WHERE seq > ? AND seq <= ?');
    const changesSince = store.changesSince.bind(store);
    store.changesSince = (after, f, limit) => {
      const page = changesSince(after, f, limit);
      const to = page.scannedTo ?? (page.alerts.length === limit ? page.alerts.at(-1)!.seq : store.currentSeq());
      examined.push((countSeqs.get(after, to) as { n: number }).n);
      return page;
    };
    const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      const shells = new Set([2, 11, 19]);
      store.ingest(
        'edge',
        Array.from({ length: 20 }, (_, i) => ev(falco(`c${i}`, 'shop', shells.has(i) ? '🐚' : 'bash'))),
      );
      const got: string[] = [];
      let live = false;
      const ws = new WebSocket(`${base}/api/v1/alerts/stream?cursor=0&q=${encodeURIComponent('🐚')}`, ['verdict.v1'], {
        headers: { authorization: `Bearer ${read}` },
      });
      ws.on('message', (d) => {
        const m = JSON.parse(String(d)) as { type: string; alerts?: { fingerprint: string }[] };
        if (m.type === 'live') live = true;
        else if (live) got.push('live:');
        got.push(...(m.alerts ?? []).map((a) => a.fingerprint));
      });
      const end = Date.now() + 10_000;
      while (!live) {
        if (Date.now() > end) throw new Error(`not live; got ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(got).toEqual(['c2', 'c11', 'c19']);
      expect(Math.max(...examined)).toBeLessThanOrEqual(4);
      expect(examined.reduce((a, b) => a + b, 0)).toBe(20);
      store.ingest('edge', [ev(falco('c20', 'db', '🐚')), ev(falco('c21', 'db', 'bash'))]);
      while (got.length < 5) {
        if (Date.now() > end) throw new Error(`no live change; got ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(got).toEqual(['c2', 'c11', 'c19', 'live:', 'c20']);
      ws.close();
    } finally {
      await app.close();
      db.close();
    }
  });
});
