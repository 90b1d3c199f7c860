import { createHash } from 'node:crypto';
import type { ProjectFile } from '../gen/verdict/agent.js';
import { errText, type Logger } from '../shared/log/logger.js';
import { type DB, migrate } from '../shared/sqlite/open.js';

// The last configuration the server served, kept in agent.db: an agent that
// (re)starts while the server is unreachable (a node reboot, a rollout during
// an outage) runs it until the server serves one, so its inputs (Falco's HTTP
// port above all: Falco does not retry) accept events and spool them. Only
// the modules that declare startsFromKept run from it (module.ts).
//
// The row is tied to the server and token it came from: a data directory (a
// PVC) reused by another agent, or pointed at another server, must not run a
// configuration that is not this agent's. The token is kept as its SHA-256
// only. A rotated token is tied again by the first configuration the server
// serves for it (rotation is done against a running server).
//
// The table's layout is final: a future change of what is kept changes
// `document` and bumps KEPT_CONFIG_FORMAT, never adds a migration. An agent
// that finds the kept_config scope at a migration it does not know refuses to
// start (migrate()), so a downgrade would stop the agent, where a format it
// does not know only makes it ignore the kept configuration.

const MIGRATIONS = [
  `CREATE TABLE kept_config (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     format INTEGER NOT NULL,
     commit_id TEXT NOT NULL,
     agent_name TEXT NOT NULL,
     kept_at TEXT NOT NULL,
     document TEXT NOT NULL
   )`,
];

/**
 * The layout of `document`. A release that stores it differently bumps it; an
 * agent finding a format it does not know ignores the kept configuration
 * (saying so) rather than run something it misreads.
 */
export const KEPT_CONFIG_FORMAT = 2;

/** Older than this, running the kept configuration is warned about: the server has not served this agent for a long time. */
export const KEPT_CONFIG_STALE_MS = 7 * 24 * 3600_000;

/** The server and token a configuration was served to; a kept one runs only for the same. */
export interface KeptTie {
  /** --kas-address as given. */
  kasAddress: string;
  /** SHA-256 (hex) of the agent token. */
  tokenSha256: string;
}

export function tokenSha256(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export interface KeptConfig {
  commitId: string;
  agentName: string;
  /** When the server served it (ISO 8601). */
  keptAt: string;
  config: Record<string, unknown>;
  files: ProjectFile[];
}

interface Document {
  config: Record<string, unknown>;
  files: { path: string; data: string }[];
  kas_address: string;
  token_sha256: string;
}

export class KeptConfigStore {
  constructor(
    private readonly db: DB,
    private readonly log: Logger,
  ) {
    migrate(db, 'kept_config', MIGRATIONS);
  }

  /** Replaces the kept configuration. A failure is logged, not thrown: the configuration runs anyway, only a restart without the server would miss it. */
  keep(c: Omit<KeptConfig, 'keptAt'>, tie: KeptTie): void {
    const doc: Document = {
      config: c.config,
      files: c.files.map((f) => ({ path: f.path, data: Buffer.from(f.data).toString('base64') })),
      kas_address: tie.kasAddress,
      token_sha256: tie.tokenSha256,
    };
    try {
      this.db
        .prepare(
          `INSERT INTO kept_config (id, format, commit_id, agent_name, kept_at, document) VALUES (1, ?, ?, ?, ?, ?)
           ON CONFLICT(id) DO UPDATE SET format = excluded.format, commit_id = excluded.commit_id, agent_name = excluded.agent_name,
             kept_at = excluded.kept_at, document = excluded.document`,
        )
        .run(KEPT_CONFIG_FORMAT, c.commitId, c.agentName, new Date().toISOString(), JSON.stringify(doc));
    } catch (e) {
      this.log.warn(
        { commit_id: c.commitId, error: errText(e) },
        'Config: could not keep the configuration in the data directory; it runs, but a restart while the server is unreachable starts no module',
      );
    }
  }

  /** The kept configuration; undefined when there is none, or (with a warning) when it cannot be read or was served to another server or token than `tie`. */
  load(tie: KeptTie): KeptConfig | undefined {
    const row = this.db.prepare('SELECT format, commit_id, agent_name, kept_at, document FROM kept_config WHERE id = 1').get() as
      | { format: number; commit_id: string; agent_name: string; kept_at: string; document: string }
      | undefined;
    if (!row) return undefined;
    const ignore = (reason: string) => {
      this.log.warn(
        { commit_id: row.commit_id, error: reason },
        'Config: the configuration kept in the data directory cannot be used; ignoring it, no module runs until the server serves a configuration',
      );
      return undefined;
    };
    if (row.format !== KEPT_CONFIG_FORMAT)
      return ignore(`it is stored in format ${row.format}, this agent reads format ${KEPT_CONFIG_FORMAT} (it was kept by another release)`);
    let doc: Document;
    try {
      doc = JSON.parse(row.document) as Document;
    } catch (e) {
      return ignore(`it is not valid JSON (${(e as Error).message}); agent.db was damaged or edited`);
    }
    if (
      typeof doc !== 'object' ||
      doc === null ||
      typeof doc.config !== 'object' ||
      doc.config === null ||
      Array.isArray(doc.config) ||
      !Array.isArray(doc.files) ||
      !doc.files.every((f) => typeof f?.path === 'string' && typeof f.data === 'string') ||
      typeof doc.kas_address !== 'string' ||
      typeof doc.token_sha256 !== 'string'
    )
      return ignore('it does not have the layout this agent writes (config, files, kas_address, token_sha256); agent.db was damaged or edited');
    if (doc.kas_address !== tie.kasAddress)
      return ignore(
        `it was served by ${doc.kas_address}, this agent connects to ${tie.kasAddress} (--kas-address changed, or the data directory was another agent's)`,
      );
    if (doc.token_sha256 !== tie.tokenSha256)
      return ignore(
        `it was served for another agent token (the data directory was another agent's, or the token was rotated: the first configuration served for the new token is kept in its place)`,
      );
    return {
      commitId: row.commit_id,
      agentName: row.agent_name,
      keptAt: row.kept_at,
      config: doc.config,
      files: doc.files.map((f) => ({ path: f.path, data: Buffer.from(f.data, 'base64') })),
    };
  }
}
