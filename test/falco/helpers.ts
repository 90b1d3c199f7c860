import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { AlertAggregator } from '../../src/agent/alerts/aggregator.js';
import { openAgentDb } from '../../src/agent/spool/agent-db.js';
import { Spool } from '../../src/agent/spool/spool.js';
import type { AlertPayload } from '../../src/shared/alert/payload.js';
import { parseAgentConfig } from '../../src/server/config/agent-config.js';
import type { FalcoConfig } from '../../src/modules/falco/config.js';
import { runFalcoGrpcInput, type FalcoGrpcOptions } from '../../src/modules/falco/grpc.js';
import type { DB } from '../../src/shared/sqlite/open.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURE = resolve(repoRoot, '../shared/fixtures/falco/falco-events.jsonl');
export const silent = pino({ level: 'silent' });

export function fixtureLines(): string[] {
  return readFileSync(FIXTURE, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

const made: string[] = [];
process.once('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits. */
export function tmp(prefix = 'verdict-falco-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

export interface Store {
  db: DB;
  outbox: Spool;
  alerts: AlertAggregator;
  /** Moves every pending group to the outbox and returns the outbox's alerts. */
  flushed(): AlertPayload[];
}

export function store(dataDir = ':memory:', spoolMaxBytes = 1e10): Store {
  const db = openAgentDb(dataDir);
  const outbox = new Spool(db, { maxBytes: spoolMaxBytes, log: silent });
  const alerts = new AlertAggregator(db, outbox, { log: silent });
  return {
    db,
    outbox,
    alerts,
    flushed() {
      alerts.flush(true);
      return outbox.read(0, 1e6).map((r) => JSON.parse(r.payload.toString('utf8')) as AlertPayload);
    },
  };
}

/** The falco block of a config.yaml text, validated like the agent does. */
export function falcoConfig(yaml: string): FalcoConfig {
  const v = parseAgentConfig(yaml, 'config.yaml').value.falco;
  if (!v) throw new Error('no falco block');
  return v;
}

/** The gRPC input on a test peer (src/peers/falco), asking and reconnecting every 50-200 ms. */
export function runGrpcInput(o: Pick<FalcoGrpcOptions, 'address' | 'sink' | 'builder' | 'log' | 'signal'> & Partial<FalcoGrpcOptions>): Promise<void> {
  return runFalcoGrpcInput({ pollIntervalMs: 50, reconnect: { initial_backoff: 50, max_backoff: 200 }, ...o });
}
