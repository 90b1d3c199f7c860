import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DB } from '../../shared/sqlite/open.js';
import { hashSecret, newSecret, secretMatches } from '../auth/secret.js';

export interface AgentRecord {
  id: number;
  name: string;
  config_project: string;
  created_at: string;
}

export interface AuthenticatedAgent extends AgentRecord {
  token_id: number;
}

const AGENT_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class AgentRegistryError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Agents, their configuration projects and their tokens (stored as hashes only). */
export class AgentRegistry {
  constructor(private readonly db: DB) {}

  /** Registers an agent (or adds a token to an existing one) and returns the new token, once. */
  register(name: string, configProject: string, tokenName = 'default'): { agent: AgentRecord; token: string } {
    if (!AGENT_NAME.test(name)) {
      throw new AgentRegistryError('VERDICT_AGENT_NAME', `agent name "${name}" is invalid: use lowercase letters, digits and dashes (a DNS label, as in .gitlab/agents/<name>/)`);
    }
    const project = resolve(configProject);
    if (!existsSync(project)) {
      throw new AgentRegistryError('VERDICT_CONFIG_PROJECT', `configuration project ${project} does not exist; pass the path of a git repository with .gitlab/agents/${name}/config.yaml`);
    }
    const now = new Date().toISOString();
    return this.db.transaction(() => {
      let agent = this.db.prepare('SELECT * FROM agents WHERE name = ?').get(name) as AgentRecord | undefined;
      if (!agent) {
        const info = this.db.prepare('INSERT INTO agents (name, config_project, created_at) VALUES (?, ?, ?)').run(name, project, now);
        agent = { id: Number(info.lastInsertRowid), name, config_project: project, created_at: now };
      } else if (agent.config_project !== project) {
        this.db.prepare('UPDATE agents SET config_project = ? WHERE id = ?').run(project, agent.id);
        agent.config_project = project;
      }
      const token = newSecret('vdt_agent_');
      this.db.prepare('INSERT INTO agent_tokens (agent_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)').run(agent.id, tokenName, hashSecret(token), now);
      return { agent, token };
    })();
  }

  authenticate(token: string): AuthenticatedAgent | undefined {
    const row = this.db
      .prepare(`SELECT a.*, t.id AS token_id, t.token_hash FROM agent_tokens t JOIN agents a ON a.id = t.agent_id
                WHERE t.token_hash = ? AND t.revoked_at IS NULL`)
      .get(hashSecret(token)) as (AuthenticatedAgent & { token_hash: string }) | undefined;
    if (!row || !secretMatches(token, row.token_hash)) return undefined;
    const { token_hash: _, ...agent } = row;
    return agent;
  }

  list(): (AgentRecord & { tokens: number })[] {
    return this.db
      .prepare(`SELECT a.*, (SELECT count(*) FROM agent_tokens t WHERE t.agent_id = a.id AND t.revoked_at IS NULL) AS tokens FROM agents a ORDER BY a.name`)
      .all() as (AgentRecord & { tokens: number })[];
  }

  get(name: string): AgentRecord | undefined {
    return this.db.prepare('SELECT * FROM agents WHERE name = ?').get(name) as AgentRecord | undefined;
  }
}
