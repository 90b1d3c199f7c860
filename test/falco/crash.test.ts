import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readInboxDir, type InboxPosition } from '../../src/modules/falco/inbox.js';
import { openDatabase } from '../../src/shared/sqlite/open.js';
import { scenarioEvent, toFalcoJson } from '../../src/peers/falco/scenario.js';
import { repoRoot, tmp } from './helpers.js';

// Never lose an accepted event: Falco (here: Falcosidekick, with uuids) posts
// events, the agent process is killed with SIGKILL mid-stream, restarted, and the
// sender retries everything. Every event must then be stored exactly once, and
// every event acknowledged before the kill must already have been stored.

const STANDALONE = join(repoRoot, 'dist/modules/falco/standalone.js');
const N = 600;
const KILL_AFTER = 250;

function newestMtime(dir: string): number {
  let m = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    m = Math.max(m, st.isDirectory() ? newestMtime(p) : name.endsWith('.ts') ? st.mtimeMs : 0);
  }
  return m;
}

/** Builds dist/ when the standalone runner is missing or older than the sources. */
function ensureBuilt(): void {
  // Only what the standalone runner is built from; other parts of the tree change all the time.
  const deps = ['src/modules/falco', 'src/agent/alerts', 'src/agent/spool', 'src/shared', 'src/peers/falco', 'src/gen/falco'];
  const newest = Math.max(...deps.map((d) => newestMtime(join(repoRoot, d))));
  if (existsSync(STANDALONE) && statSync(STANDALONE).mtimeMs >= newest) return;
  try {
    execFileSync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: repoRoot, stdio: 'ignore' });
  } catch {
    // Type errors elsewhere in the tree do not stop tsc from emitting.
  }
  if (!existsSync(STANDALONE)) throw new Error(`${STANDALONE} is missing after building; run npm run build`);
}

const children = new Set<ChildProcess>();

function startAgent(dataDir: string, config: string): Promise<{ proc: ChildProcess; address: string }> {
  const proc = spawn(process.execPath, [STANDALONE, '--data-dir', dataDir, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`standalone did not start: ${err}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"ready":true,"http":"([^"]+)"\}/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ proc, address: m[1]! });
      }
    });
    proc.on('exit', (code) => reject(new Error(`standalone exited with ${code}: ${err}`)));
  });
}

function post(address: string, body: string, agent: Agent): Promise<number> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const req = request({ host, port, method: 'POST', path: '/', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/**
 * Occurrences stored per pod: answered events still in the HTTP inbox, groups
 * pending in the dedup window (their counts; a quiet group, whose alert is in
 * the spool already, holds none) and alerts already in the spool.
 */
function storedCounts(dataDir: string): { counts: Map<string, number>; inInbox: number } {
  const db = openDatabase(join(dataDir, 'agent.db'));
  try {
    const counts = new Map<string, number>();
    const add = (pod: string, n: number) => counts.set(pod, (counts.get(pod) ?? 0) + n);
    const state = db.prepare('SELECT gen, offset FROM falco_inbox_state').get() as InboxPosition | undefined;
    const inbox = readInboxDir(dataDir, state);
    for (const body of inbox) add((JSON.parse(body.toString()) as { output_fields: Record<string, string> }).output_fields['k8s.pod.name']!, 1);
    const pending = db.prepare('SELECT p.payload, c.count FROM pending_alerts p JOIN pending_alert_counts c USING (fingerprint) WHERE c.count > 0').all() as {
      payload: Buffer;
      count: number;
    }[];
    for (const r of pending) add((JSON.parse(r.payload.toString()) as { labels: { pod: string } }).labels.pod, r.count);
    for (const r of db.prepare('SELECT payload FROM outbox').all() as { payload: Buffer }[]) {
      const a = JSON.parse(r.payload.toString()) as { labels: { pod: string }; count: number };
      add(a.labels.pod, a.count);
    }
    return { counts, inInbox: inbox.length };
  } finally {
    db.close();
  }
}

describe('Falco HTTP input under kill -9', () => {
  beforeAll(() => ensureBuilt(), 180_000);
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  it('stores every acknowledged event exactly once across a crash and a retry', async () => {
    const dir = tmp('verdict-falco-crash-');
    const dataDir = join(dir, 'data');
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'falco:\n  http:\n    listen: 127.0.0.1:0\n  dedup_window: 1h\n');
    // One pod per event: each event is its own alert, so counts show losses and doubles.
    const bodies = Array.from({ length: N }, (_, i) => {
      const ev = scenarioEvent(i, new Date(), { uuid: true });
      ev.output_fields['k8s.pod.name'] = `pod-${i}`;
      ev.output_fields['ka.target.name'] = `pod-${i}`;
      return toFalcoJson(ev);
    });

    let { proc, address } = await startAgent(dataDir, config);
    const acked = new Set<number>();
    let agent = new Agent({ keepAlive: true, maxSockets: 16 });
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        if ((await post(address, bodies[i]!, agent)) === 200) {
          acked.add(i);
          if (acked.size === KILL_AFTER) proc.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r)));
    agent.destroy();
    expect(proc.signalCode).toBe('SIGKILL');
    expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(acked.size).toBeLessThan(N);

    const { counts: afterCrash, inInbox } = storedCounts(dataDir);
    // The newest events were answered but not yet written as occurrences: the restart reads them from the inbox.
    expect(inInbox).toBeGreaterThan(0);
    for (const i of acked) expect(afterCrash.get(`pod-${i}`), `acknowledged event ${i} after the crash`).toBe(1);
    for (const [pod, n] of afterCrash) expect(n, pod).toBe(1);

    // Restart; the sender retries everything (acknowledged or not), as Falcosidekick would.
    ({ proc, address } = await startAgent(dataDir, config));
    agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const statuses = await Promise.all(bodies.map((b) => post(address, b, agent)));
    agent.destroy();
    expect(statuses.every((s) => s === 200)).toBe(true);
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));

    const { counts: final } = storedCounts(dataDir);
    expect(final.size).toBe(N);
    for (let i = 0; i < N; i++) expect(final.get(`pod-${i}`), `event ${i}`).toBe(1);
  });
});
