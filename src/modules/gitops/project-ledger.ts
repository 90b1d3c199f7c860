import { type DB, migrate } from '../../shared/sqlite/open.js';

// Which manifest projects this agent synchronised, kept in the agent's
// database: a project dropped from config.yaml is then noticed (and said)
// at the next start of the module, although its objects are left alone.

const MIGRATIONS = ['CREATE TABLE gitops_projects (project_id TEXT PRIMARY KEY, inventory TEXT NOT NULL)'];

export interface LedgerEntry {
  projectId: string;
  inventory: string;
}

/** Records the configured projects and returns those that were synchronised before and are configured no more. */
export function updateLedger(db: DB, current: readonly LedgerEntry[]): LedgerEntry[] {
  migrate(db, 'gitops', MIGRATIONS);
  const before = db.prepare('SELECT project_id AS projectId, inventory FROM gitops_projects').all() as LedgerEntry[];
  const keep = new Set(current.map((c) => c.projectId));
  const removed = before.filter((b) => !keep.has(b.projectId));
  db.transaction(() => {
    db.prepare('DELETE FROM gitops_projects').run();
    const put = db.prepare('INSERT INTO gitops_projects (project_id, inventory) VALUES (?, ?)');
    for (const c of current) put.run(c.projectId, c.inventory);
  })();
  return removed;
}
