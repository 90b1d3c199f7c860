import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Certs } from '../helpers/certs.js';
import { ConfigProject, freePort, spawnVerdict, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';

// Real server and agent processes for the tunnel tests, plus the tools the
// fault tests need: alerts written straight into the agent's spool file (as
// the alert stage would), a TCP proxy whose connections can be cut, and a
// read-only look into the server's store.

export type Transport = 'grpc' | 'ws';

export const AGENT = 'edge';

/** A server data dir with agent "edge" registered against a configuration project holding `config` (by default a minimal one). */
export function prepareServer(dir: string, config = 'observability:\n  logging:\n    level: info\n'): { data: string; tokenFile: string; token: string } {
  const project = new ConfigProject(join(dir, 'project'));
  project.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: config });
  const data = join(dir, 'server');
  const token = verdictSync(['agents', 'register', AGENT, '--config-project', project.dir, '--data-dir', data]).trim();
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token);
  return { data, tokenFile, token };
}

export class ServerProc {
  proc!: VerdictProcess;
  constructor(
    readonly data: string,
    readonly http: number,
    readonly grpc: number,
    private readonly certs?: Certs,
  ) {}

  static async start(data: string, certs?: Certs): Promise<ServerProc> {
    const s = new ServerProc(data, await freePort(), await freePort(), certs);
    await s.start();
    return s;
  }

  async start(): Promise<void> {
    const tls = this.certs ? ['--tls-cert-file', this.certs.serverCert, '--tls-key-file', this.certs.serverKey] : [];
    this.proc = spawnVerdict(
      [
        'server',
        '--data-dir',
        this.data,
        '--http-addr',
        `127.0.0.1:${this.http}`,
        '--grpc-addr',
        `127.0.0.1:${this.grpc}`,
        '--config-poll-interval',
        '200ms',
        ...tls,
      ],
      'server',
    );
    await this.proc.waitForLog((l) => l.msg === 'Verdict server started');
  }

  kasAddress(t: Transport, port?: number): string {
    const s = this.certs ? 's' : '';
    return t === 'grpc' ? `grpc${s}://localhost:${port ?? this.grpc}` : `ws${s}://localhost:${port ?? this.http}/-/kubernetes-agent/`;
  }
}

export function spawnAgent(kasAddress: string, tokenFile: string, dataDir: string, extra: string[] = []): VerdictProcess {
  return spawnVerdict(
    [
      'agent',
      '--kas-address',
      kasAddress,
      '--token-file',
      tokenFile,
      '--data-dir',
      dataDir,
      '--observability-addr',
      '',
      '--reconnect-initial',
      '100ms',
      '--reconnect-max',
      '500ms',
      ...extra,
    ],
    'agent',
  );
}

function alertPayload(i: number): Buffer {
  const now = new Date().toISOString();
  return Buffer.from(
    JSON.stringify({
      schema: 'verdict.alert/v1',
      source: 'cilium',
      fingerprint: `fp-${i % 40}`,
      severity: 'medium',
      title: `Dropped by test policy ${i % 40}`,
      description: `test alert ${i}`,
      cluster: 'test',
      namespace: 'shop',
      count: 1,
      first_seen: now,
      last_seen: now,
      policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'p' }],
      rule: 'test',
      labels: { n: String(i) },
      samples: [],
    }),
  );
}

/** Writes alerts into an agent's spool (agent.db) as the alert stage would; the agent may be running or not. */
export class SpoolWriter {
  readonly ids: string[] = [];
  private readonly db: Database.Database;
  private readonly insert;

  private constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.insert = this.db.prepare('INSERT INTO outbox (id, payload, bytes, created_at) VALUES (?, ?, ?, ?)');
  }

  /** Waits until the agent has created its spool. */
  static async open(agentDataDir: string): Promise<SpoolWriter> {
    const file = join(agentDataDir, 'agent.db');
    await until(
      () => {
        if (!existsSync(file)) return undefined;
        const db = new Database(file, { readonly: true });
        try {
          return db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").get() ? true : undefined;
        } finally {
          db.close();
        }
      },
      20_000,
      'the agent spool',
    );
    return new SpoolWriter(file);
  }

  add(n: number): void {
    this.db.transaction(() => {
      for (let k = 0; k < n; k++) {
        const id = randomUUID();
        const payload = alertPayload(this.ids.length);
        this.insert.run(id, payload, payload.length, Date.now());
        this.ids.push(id);
      }
    })();
  }

  spooled(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
  }

  close(): void {
    this.db.close();
  }
}

/** Alert events in the server's store and the sum of alert counts, read without disturbing the server. */
export function storeCounts(serverData: string): { events: number; total: number; ids: Set<string> } {
  const file = join(serverData, 'server.db');
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const ids = new Set((db.prepare('SELECT event_id FROM alert_events').all() as { event_id: string }[]).map((r) => r.event_id));
    const total = (db.prepare('SELECT coalesce(sum(count), 0) AS n FROM alerts').get() as { n: number }).n;
    return { events: ids.size, total, ids };
  } finally {
    db.close();
  }
}
