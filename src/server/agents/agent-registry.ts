import { resolve } from 'node:path';
import type Database from 'better-sqlite3';
import { VerdictError } from '../../shared/errors.js';
import { preparedCache, type DB } from '../../shared/sqlite/open.js';
import { hashSecret, newSecret, secretMatches } from '../auth/secret.js';
import { checkConfigProject } from './config-project.js';

export interface AgentRecord {
  id: number;
  name: string;
  config_project: string;
  created_at: string;
}

export interface AuthenticatedAgent extends AgentRecord {
  token_id: number;
}

export interface AgentTokenInfo {
  id: number;
  agent: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const AGENT_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const TOKEN_NAME = /^[\w.@-]{1,64}$/;

// Bumped in the transaction that revokes a token or moves an agent to another
// configuration project. The CLI (and, with Kafka, the tokens topic) changes
// them from elsewhere, so a running server cannot be told directly: it polls
// this one row (cheap) and only looks at its open streams when the number moves.
const REVISION_KEY = 'agent_tokens_revision';

// last_used_at is advisory; writing it on every call would turn each
// reconnect into a write, so it is refreshed at most this often per token.
const LAST_USED_RESOLUTION_MS = 60_000;

/** A finding in config.yaml, as `file:line: path: message` in parts. */
export interface ConfigFinding {
  file: string;
  line: number;
  path: string;
  message: string;
}

/** What the server last did with an agent's configuration (GET /api/v1/admin/agents). */
export interface AgentConfigStatus {
  /** The commit whose configuration the agent was sent and runs. */
  commit_id: string | null;
  /** Findings in that commit's config.yaml that did not make it invalid (keys Verdict does not use, unknown keys). */
  warnings: ConfigFinding[];
  /** A later commit that does not validate, and why; the agent keeps running commit_id meanwhile. */
  invalid?: { commit_id: string; error: string };
  updated_at: string;
}

/**
 * What a user asks to register, checked before anything is written (VERDICT_BAD_REQUEST): the agent's and token's
 * names, and the configuration project (checkConfigProject: its path and notes). An existing agent is refused by
 * register() itself.
 */
export async function checkRegistration(name: string, configProject: string, tokenName: string): Promise<{ path: string; notes: string[] }> {
  checkAgentNames(name, tokenName);
  return checkConfigProject(configProject, name);
}

/** A new agent's name and its first token's name, as registering takes them (VERDICT_BAD_REQUEST). */
function checkAgentNames(name: string, tokenName: string): void {
  if (!AGENT_NAME.test(name)) {
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      `agent name "${name}" is invalid: use lowercase letters, digits and dashes (a DNS label, as in .gitlab/agents/<name>/)`,
    );
  }
  checkTokenName(tokenName);
}

/**
 * Agents, their configuration projects and their tokens (stored as hashes only). An invalid agent or token name or (in
 * registerChecked, setConfigProjectChecked) a configuration project that is not the top of a git repository is a
 * VERDICT_BAD_REQUEST, an agent registered twice a VERDICT_CONFLICT, an unknown agent a VERDICT_NOT_FOUND.
 */
export class AgentRegistry {
  private readonly lastUsedWritten = new Map<number, number>();
  // In memory: it describes this server's configuration streams, which the
  // agent reopens (and so refills) after a restart of the server.
  private readonly configStatuses = new Map<string, AgentConfigStatus>();

  /** Statements of the request path, prepared once. */
  private readonly sql: (text: string) => Database.Statement<unknown[]>;

  constructor(private readonly db: DB) {
    this.sql = preparedCache(db);
  }

  /**
   * Registers a new agent from what a user sent (`verdict agents register`, POST /api/v1/admin/agents) and returns its
   * first token, once, with notes on its configuration project (no commit or no config.yaml yet: the agent waits for it).
   * The project is checked first (async: it runs git, and neither the server nor the database waits meanwhile).
   */
  async registerChecked(
    name: string,
    configProject: string,
    tokenName = 'default',
  ): Promise<{ agent: AgentRecord; token: string; tokenId: number; notes: string[] }> {
    const { path, notes } = await checkRegistration(name, configProject, tokenName);
    return { ...this.register(name, path, tokenName), notes };
  }

  /**
   * Registers a new agent and returns its first token, once. The configuration project is taken as it is: for one this
   * process made (tests, the demo); registerChecked checks a user's. An agent already registered is a VERDICT_CONFLICT:
   * a second registration must not move an agent to another configuration project unseen, nor add a token to it under
   * another name.
   */
  register(name: string, configProject: string, tokenName = 'default'): { agent: AgentRecord; token: string; tokenId: number } {
    checkAgentNames(name, tokenName);
    const path = resolve(configProject);
    const now = new Date().toISOString();
    return this.db.transaction(() => {
      this.refuseExisting(name);
      const info = this.db.prepare('INSERT INTO agents (name, config_project, created_at) VALUES (?, ?, ?)').run(name, path, now);
      const agent: AgentRecord = { id: Number(info.lastInsertRowid), name, config_project: path, created_at: now };
      const { token, id } = this.insertToken(agent.id, tokenName, now);
      return { agent, token, tokenId: id };
    })();
  }

  /**
   * Moves an agent to another configuration project from what a user sent (`verdict agents set-project`, PATCH
   * /api/v1/admin/agents/{agent}), checked as registering checks it (checkConfigProject), with the same notes. The
   * agent keeps its name, so its tokens and alerts stay. An unknown agent is refused before git runs.
   */
  async setConfigProjectChecked(name: string, configProject: string): Promise<{ agent: AgentRecord; from: string; notes: string[] }> {
    this.mustGet(name);
    const { path, notes } = await checkConfigProject(configProject, name);
    return { ...this.setConfigProject(name, path), notes };
  }

  /**
   * Moves an agent to another configuration project, taken as it is (setConfigProjectChecked checks a user's), and
   * returns the project it had. The revision moves, so a running server ends the configuration streams that serve the
   * old project (RevocationWatcher) and the agent asks again. `publish: false` is for a change another replica made,
   * taken from the tokens topic (kafka/tokens.ts); one made here waits in agent_project_changes until this replica reads it back from the topic.
   */
  setConfigProject(name: string, configProject: string, { publish = true } = {}): { agent: AgentRecord; from: string } {
    const path = resolve(configProject);
    return this.db.transaction(() => {
      const agent = this.mustGet(name);
      if (agent.config_project !== path) {
        this.sql('UPDATE agents SET config_project = ? WHERE id = ?').run(path, agent.id);
        this.bumpRevision();
      }
      // Published even when unchanged here: another replica may hold another project for the agent.
      if (publish)
        this.sql(`INSERT INTO agent_project_changes (agent, config_project, changed_at) VALUES (?, ?, ?)
                  ON CONFLICT (agent) DO UPDATE SET config_project = excluded.config_project, changed_at = excluded.changed_at`).run(
          name,
          path,
          new Date().toISOString(),
        );
      return { agent: { ...agent, config_project: path }, from: agent.config_project };
    })();
  }

  /** A new token for an existing agent; the secret is returned once and stored hashed. */
  createToken(agentName: string, tokenName = 'default'): { token: string; info: AgentTokenInfo } {
    checkTokenName(tokenName);
    const agent = this.mustGet(agentName);
    const now = new Date().toISOString();
    const { token, id } = this.insertToken(agent.id, tokenName, now);
    return { token, info: { id, agent: agent.name, name: tokenName, created_at: now, last_used_at: null, revoked_at: null } };
  }

  listTokens(agentName: string): AgentTokenInfo[] {
    const agent = this.mustGet(agentName);
    return this.db
      .prepare('SELECT id, ? AS agent, name, created_at, last_used_at, revoked_at FROM agent_tokens WHERE agent_id = ? ORDER BY id')
      .all(agent.name, agent.id) as AgentTokenInfo[];
  }

  /** Revokes one token of an agent. Returns false when it is unknown or already revoked. */
  revokeToken(agentName: string, tokenId: number): boolean {
    const agent = this.mustGet(agentName);
    return this.db.transaction(() => {
      const changed =
        this.db
          .prepare('UPDATE agent_tokens SET revoked_at = ? WHERE id = ? AND agent_id = ? AND revoked_at IS NULL')
          .run(new Date().toISOString(), tokenId, agent.id).changes > 0;
      if (changed) this.bumpRevision();
      return changed;
    })();
  }

  private bumpRevision(): void {
    this.sql(`INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)`).run(REVISION_KEY);
  }

  /** Changes whenever a token is revoked or an agent's configuration project changes, by any process sharing the database. */
  revision(): number {
    const row = this.sql('SELECT value FROM meta WHERE key = ?').get(REVISION_KEY) as { value: string } | undefined;
    return row ? Number(row.value) : 0;
  }

  /** Which of these token ids are revoked or gone. */
  revokedAmong(ids: readonly number[]): number[] {
    if (ids.length === 0) return [];
    const active = new Set(
      (this.db.prepare(`SELECT id FROM agent_tokens WHERE revoked_at IS NULL AND id IN (${ids.map(() => '?').join(',')})`).all(...ids) as { id: number }[]).map(
        (r) => r.id,
      ),
    );
    return ids.filter((id) => !active.has(id));
  }

  authenticate(token: string): AuthenticatedAgent | undefined {
    const row = this.sql(`SELECT a.*, t.id AS token_id, t.token_hash FROM agent_tokens t JOIN agents a ON a.id = t.agent_id
                WHERE t.token_hash = ? AND t.revoked_at IS NULL`).get(hashSecret(token)) as (AuthenticatedAgent & { token_hash: string }) | undefined;
    if (!row || !secretMatches(token, row.token_hash)) return undefined;
    const { token_hash: _, ...agent } = row;
    const now = Date.now();
    if (now - (this.lastUsedWritten.get(agent.token_id) ?? 0) > LAST_USED_RESOLUTION_MS) {
      this.lastUsedWritten.set(agent.token_id, now);
      this.sql('UPDATE agent_tokens SET last_used_at = ? WHERE id = ?').run(new Date(now).toISOString(), agent.token_id);
    }
    return agent;
  }

  list(): (AgentRecord & { tokens: number })[] {
    return this.db
      .prepare(`SELECT a.*, (SELECT count(*) FROM agent_tokens t WHERE t.agent_id = a.id AND t.revoked_at IS NULL) AS tokens FROM agents a ORDER BY a.name`)
      .all() as (AgentRecord & { tokens: number })[];
  }

  /** Records that the agent was sent (or already runs) the configuration of a commit. */
  recordConfig(name: string, commitId: string, warnings: readonly ConfigFinding[]): void {
    this.configStatuses.set(name, {
      commit_id: commitId,
      warnings: warnings.map(({ file, line, path, message }) => ({ file, line, path, message })),
      updated_at: new Date().toISOString(),
    });
  }

  /** Records a commit whose configuration does not validate; what the agent runs is unchanged. */
  recordConfigInvalid(name: string, commitId: string, error: string): void {
    const prev = this.configStatuses.get(name);
    this.configStatuses.set(name, {
      commit_id: prev?.commit_id ?? null,
      warnings: prev?.warnings ?? [],
      invalid: { commit_id: commitId, error },
      updated_at: new Date().toISOString(),
    });
  }

  /** The configuration status of an agent that opened a configuration stream to this server, else undefined. */
  configStatus(name: string): AgentConfigStatus | undefined {
    return this.configStatuses.get(name);
  }

  /** The name of the agent a token (revoked or not) belongs to. */
  nameOfToken(tokenId: number): string | undefined {
    return (this.db.prepare('SELECT a.name FROM agent_tokens t JOIN agents a ON a.id = t.agent_id WHERE t.id = ?').get(tokenId) as { name: string } | undefined)
      ?.name;
  }

  get(name: string): AgentRecord | undefined {
    return this.sql('SELECT * FROM agents WHERE name = ?').get(name) as AgentRecord | undefined;
  }

  getById(id: number): AgentRecord | undefined {
    return this.sql('SELECT * FROM agents WHERE id = ?').get(id) as AgentRecord | undefined;
  }

  private refuseExisting(name: string): void {
    const agent = this.get(name);
    if (agent)
      throw new VerdictError(
        'VERDICT_CONFLICT',
        `agent "${name}" is already registered, with configuration project ${agent.config_project}; add a token with \`verdict agents tokens create ${name}\` or POST /api/v1/admin/agents/${name}/tokens, and move it to another configuration project with \`verdict agents set-project ${name} <path>\` or PATCH /api/v1/admin/agents/${name}`,
      );
  }

  private mustGet(name: string): AgentRecord {
    const agent = this.get(name);
    if (!agent)
      throw new VerdictError(
        'VERDICT_NOT_FOUND',
        `no agent named "${name}"; register it first with \`verdict agents register ${name} --config-project <path>\` (see \`verdict agents list\`)`,
      );
    return agent;
  }

  private insertToken(agentId: number, tokenName: string, now: string): { token: string; id: number } {
    const token = newSecret('vdt_agent_');
    const info = this.db
      .prepare('INSERT INTO agent_tokens (agent_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)')
      .run(agentId, tokenName, hashSecret(token), now);
    return { token, id: Number(info.lastInsertRowid) };
  }
}

function checkTokenName(name: string): void {
  if (!TOKEN_NAME.test(name)) {
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      `token name "${name}" is invalid: use 1 to 64 letters, digits, dots, dashes, underscores or @ (e.g. "prod-2025")`,
    );
  }
}
