import type { SyncObject, SyncReport } from '../../gen/verdict/gitops.js';
import type { DB } from '../../shared/sqlite/open.js';
import { migrate } from '../../shared/sqlite/open.js';

// The server's record of GitOps syncs: the latest report per agent and
// project, the commit it last sent each (a sync runs until its report), and
// the gitops alerts each project has raised and not yet seen
// resolved. In the server's database under the module's own migration scope,
// so it survives a restart (an agent reports again only at its next sync).

const MIGRATIONS = [
  `CREATE TABLE gitops_syncs (
     agent TEXT NOT NULL,
     project_id TEXT NOT NULL,
     commit_id TEXT NOT NULL,
     ok INTEGER NOT NULL,
     error TEXT NOT NULL,
     applied INTEGER NOT NULL,
     changed INTEGER NOT NULL,
     unchanged INTEGER NOT NULL,
     pruned INTEGER NOT NULL,
     failed INTEGER NOT NULL,
     duration_ms INTEGER NOT NULL,
     drift_corrected INTEGER NOT NULL,
     objects TEXT NOT NULL,
     finished_at TEXT NOT NULL,
     received_at TEXT NOT NULL,
     last_ok_commit TEXT,
     last_ok_at TEXT,
     PRIMARY KEY (agent, project_id)
   );
   CREATE TABLE gitops_raised (
     agent TEXT NOT NULL,
     project_id TEXT NOT NULL,
     fingerprint TEXT NOT NULL,
     PRIMARY KEY (agent, project_id, fingerprint)
   );`,
  // The last commit the server sent each agent's project: a sync runs from then until its report.
  `CREATE TABLE gitops_sent (
     agent TEXT NOT NULL,
     project_id TEXT NOT NULL,
     commit_id TEXT NOT NULL,
     sent_at TEXT NOT NULL,
     PRIMARY KEY (agent, project_id)
   );`,
];

/** A failed or drift-corrected object of a sync, as the agent reported it. */
export type SyncObjectView = SyncObject;

/** A project's latest sync as the agents API shows it: the agent's report (verdict/gitops.proto) and what the server adds. */
export interface ProjectSyncView extends SyncReport {
  received_at: string;
  /** The last commit synchronised without a failure, and when; null before the first. */
  last_ok_commit: string | null;
  last_ok_at: string | null;
}

/** A sync the agent has not reported yet: the commit the server sent, and when. */
export interface ProjectSyncingView {
  project_id: string;
  commit_id: string;
  since: string;
}

type Row = Omit<ProjectSyncView, 'ok' | 'drift_corrected' | 'objects'> & { agent: string; ok: number; drift_corrected: number; objects: string };

export class SyncStatusStore {
  /**
   * The agents' open GetObjectsToSynchronize streams on this server, per agent and project. An agent keeps one open per
   * project while it syncs (it asks for the next commit at once): without one here, it failed over to another server,
   * stopped or was uninstalled, and a sync this server sent is not shown as under way. In memory, as connections are.
   */
  private readonly open = new Map<string, number>();

  constructor(private readonly db: DB) {
    migrate(db, 'gitops', MIGRATIONS);
  }

  record(agent: string, s: SyncReport): void {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO gitops_syncs (agent, project_id, commit_id, ok, error, applied, changed, unchanged, pruned, failed, duration_ms,
                                   drift_corrected, objects, finished_at, received_at, last_ok_commit, last_ok_at)
         VALUES (@agent, @project_id, @commit_id, @ok, @error, @applied, @changed, @unchanged, @pruned, @failed, @duration_ms,
                 @drift_corrected, @objects, @finished_at, @received_at, @last_ok_commit, @last_ok_at)
         ON CONFLICT (agent, project_id) DO UPDATE SET
           commit_id = excluded.commit_id, ok = excluded.ok, error = excluded.error, applied = excluded.applied,
           changed = excluded.changed, unchanged = excluded.unchanged, pruned = excluded.pruned, failed = excluded.failed,
           duration_ms = excluded.duration_ms, drift_corrected = excluded.drift_corrected, objects = excluded.objects,
           finished_at = excluded.finished_at, received_at = excluded.received_at,
           last_ok_commit = coalesce(excluded.last_ok_commit, gitops_syncs.last_ok_commit),
           last_ok_at = coalesce(excluded.last_ok_at, gitops_syncs.last_ok_at)`,
      )
      .run({
        ...s,
        agent,
        ok: s.ok ? 1 : 0,
        drift_corrected: s.drift_corrected ? 1 : 0,
        objects: JSON.stringify(s.objects),
        received_at: now,
        last_ok_commit: s.ok ? s.commit_id : null,
        last_ok_at: s.ok ? s.finished_at : null,
      });
  }

  projects(agent: string): ProjectSyncView[] {
    const rows = this.db.prepare('SELECT * FROM gitops_syncs WHERE agent = ? ORDER BY project_id').all(agent) as Row[];
    return rows.map(({ agent: _, ok, drift_corrected, objects, ...r }) => ({
      ...r,
      ok: ok === 1,
      drift_corrected: drift_corrected === 1,
      objects: JSON.parse(objects) as SyncObjectView[],
    }));
  }

  /** The server sent the agent this commit of the project (the whole batch): its sync starts. */
  sent(agent: string, projectId: string, commitId: string, at = new Date()): void {
    this.db
      .prepare(
        `INSERT INTO gitops_sent (agent, project_id, commit_id, sent_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (agent, project_id) DO UPDATE SET commit_id = excluded.commit_id, sent_at = excluded.sent_at`,
      )
      .run(agent, projectId, commitId, at.toISOString());
  }

  /** The agent opened a GetObjectsToSynchronize stream for the project; the returned function closes it. */
  streamOpened(agent: string, projectId: string): () => void {
    const key = JSON.stringify([agent, projectId]);
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const n = (this.open.get(key) ?? 1) - 1;
      if (n > 0) this.open.set(key, n);
      else this.open.delete(key);
    };
  }

  /**
   * Syncs under way: a commit sent and not reported since, while the agent has a stream of the project open on this
   * server. The same commit sent again (the agent restarted and asked from the start) is under way again until a
   * report received after it.
   */
  syncing(agent: string): ProjectSyncingView[] {
    const rows = this.db
      .prepare(
        `SELECT s.project_id, s.commit_id, s.sent_at AS since FROM gitops_sent s
         LEFT JOIN gitops_syncs r ON r.agent = s.agent AND r.project_id = s.project_id
         WHERE s.agent = ? AND (r.commit_id IS NULL OR r.commit_id <> s.commit_id OR r.received_at < s.sent_at)
         ORDER BY s.project_id`,
      )
      .all(agent) as ProjectSyncingView[];
    return rows.filter((r) => this.open.has(JSON.stringify([agent, r.project_id])));
  }

  raised(agent: string, projectId: string): string[] {
    return (this.db.prepare('SELECT fingerprint FROM gitops_raised WHERE agent = ? AND project_id = ?').all(agent, projectId) as { fingerprint: string }[]).map(
      (r) => r.fingerprint,
    );
  }

  /**
   * The project's gitops alerts still open in the server's alert store, found by the
   * `project` label they carry. gitops_raised holds what this server raised; on a Kafka
   * replica the store is the projection of the shared log, so it also holds what another
   * replica raised before the agent came here (a replica restarted, a reconnect landing
   * elsewhere), which a good sync must resolve too. Read-only: status changes go through
   * ModuleAlerts, as every other.
   */
  openInStore(agent: string, projectLabel: string, rules: readonly string[]): string[] {
    // By rule first: the store's index on it holds only gitops alerts here, where the status index holds every open alert.
    return (
      this.db
        .prepare(
          `SELECT a.fingerprint FROM alerts a JOIN alert_text t ON t.id = a.id
           WHERE a.rule IN (${rules.map(() => '?').join(', ')}) AND a.agent = ? AND a.source = 'gitops'
             AND a.status IN ('triggered', 'acknowledged') AND json_extract(t.labels, '$.project') = ?`,
        )
        .all(...rules, agent, projectLabel) as { fingerprint: string }[]
    ).map((r) => r.fingerprint);
  }

  /** Every project the agent has a sync status or raised alerts for. */
  projectIds(agent: string): string[] {
    return (
      this.db.prepare('SELECT project_id FROM gitops_syncs WHERE agent = ? UNION SELECT project_id FROM gitops_raised WHERE agent = ?').all(agent, agent) as {
        project_id: string;
      }[]
    ).map((r) => r.project_id);
  }

  /** Drops a project's sync status and record of raised alerts (it left the agent's configuration). */
  forget(agent: string, projectId: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM gitops_syncs WHERE agent = ? AND project_id = ?').run(agent, projectId);
      this.db.prepare('DELETE FROM gitops_raised WHERE agent = ? AND project_id = ?').run(agent, projectId);
      this.db.prepare('DELETE FROM gitops_sent WHERE agent = ? AND project_id = ?').run(agent, projectId);
    })();
  }

  setRaised(agent: string, projectId: string, fingerprints: readonly string[]): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM gitops_raised WHERE agent = ? AND project_id = ?').run(agent, projectId);
      const ins = this.db.prepare('INSERT OR IGNORE INTO gitops_raised (agent, project_id, fingerprint) VALUES (?, ?, ?)');
      for (const f of fingerprints) ins.run(agent, projectId, f);
    })();
  }
}

const str = { type: 'string' } as const;
const int = { type: 'integer', minimum: 0 } as const;
const objectSchema = {
  type: 'object',
  properties: { object: str, source: str, action: str, reason: str },
  required: ['object', 'source', 'action', 'reason'],
  additionalProperties: false,
} as const;

/** The JSON schema of ProjectSyncingView. */
export const projectSyncingSchema = {
  type: 'object',
  properties: {
    project_id: { type: 'string', description: 'empty: the configuration project' },
    commit_id: { type: 'string', description: 'the commit being synchronised' },
    since: { type: 'string', format: 'date-time', description: 'when the server sent it to the agent' },
  },
  required: ['project_id', 'commit_id', 'since'],
  additionalProperties: false,
} as const;

/** The JSON schema of ProjectSyncView, exact (the OpenAPI document and the serialiser use it). */
export const projectSyncSchema = {
  type: 'object',
  properties: {
    project_id: { type: 'string', description: 'empty: the configuration project' },
    commit_id: str,
    ok: { type: 'boolean', description: 'every object applied and pruned' },
    error: { type: 'string', description: 'why the sync could not run at all; empty otherwise' },
    applied: int,
    changed: { ...int, description: 'of the applied objects, those created or changed' },
    unchanged: int,
    pruned: int,
    failed: int,
    duration_ms: int,
    drift_corrected: { type: 'boolean', description: 'a periodic re-apply of the same commit changed objects someone had changed in the cluster' },
    objects: { type: 'array', items: objectSchema, description: "the failed objects (with the API server's reason), and the corrected ones after drift" },
    finished_at: { type: 'string', format: 'date-time' },
    received_at: { type: 'string', format: 'date-time' },
    last_ok_commit: { type: ['string', 'null'] },
    last_ok_at: { type: ['string', 'null'], format: 'date-time' },
  },
  required: [
    'project_id',
    'commit_id',
    'ok',
    'error',
    'applied',
    'changed',
    'unchanged',
    'pruned',
    'failed',
    'duration_ms',
    'drift_corrected',
    'objects',
    'finished_at',
    'received_at',
    'last_ok_commit',
    'last_ok_at',
  ],
  additionalProperties: false,
} as const;
