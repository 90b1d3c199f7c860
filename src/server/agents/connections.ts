import { StreamRegistry, VERSION_METADATA } from '../tunnel/grpc-service.js';
import type { AgentCall } from '../module.js';

// Whether each agent is connected to this server, since when, and with which
// version: the agent API's open calls (every admitted call is tracked for
// revocation already), counted per agent. In memory: it describes this
// server's connections, which a restart ends anyway.

export interface AgentConnection {
  connected: boolean;
  /** Connected: since the first of its open calls; not: since the last one ended. */
  since: string;
  /** The verdict-version the agent sent with its latest call. */
  version: string | null;
}

export class AgentConnections extends StreamRegistry {
  private readonly byAgent = new Map<string, { open: number; since: string; version: string | null }>();

  constructor(private readonly nameOfToken: (tokenId: number) => string | undefined) {
    super();
  }

  override add(tokenId: number, call: AgentCall): () => void {
    const untrack = super.add(tokenId, call);
    const name = this.nameOfToken(tokenId);
    if (name === undefined) return untrack;
    const v = call.metadata.get(VERSION_METADATA)[0];
    const prev = this.byAgent.get(name);
    const now = new Date().toISOString();
    const entry = prev && prev.open > 0 ? prev : { open: 0, since: now, version: prev?.version ?? null };
    entry.open++;
    if (typeof v === 'string') entry.version = v;
    this.byAgent.set(name, entry);
    let done = false;
    return () => {
      untrack();
      if (done) return;
      done = true;
      if (--entry.open === 0) entry.since = new Date().toISOString();
    };
  }

  /** Undefined: the agent has not called this server since it started. */
  status(agent: string): AgentConnection | undefined {
    const e = this.byAgent.get(agent);
    return e ? { connected: e.open > 0, since: e.since, version: e.version } : undefined;
  }
}
