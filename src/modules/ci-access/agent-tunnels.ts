import type * as grpc from '@grpc/grpc-js';
import type { AgentFrame, ServerFrame } from '../../gen/verdict/kubernetes_api.js';

// The server's side of the reverse tunnel: Connect calls the agents hold open,
// waiting for a request. A request takes one (the agent opens the next at
// once); when an agent's calls are all taken, the request waits a moment for
// the next one rather than failing.

export type TunnelCall = grpc.ServerDuplexStream<AgentFrame, ServerFrame>;

interface Waiter {
  give(call: TunnelCall): void;
}

export class AgentTunnels {
  private readonly idle = new Map<number, Set<TunnelCall>>();
  private readonly waiters = new Map<number, Waiter[]>();
  /** Calls taken and not yet finished, per agent: a sign the agent is connected even with none idle. */
  private readonly busy = new Map<number, number>();
  private readonly watched = new WeakSet<TunnelCall>();

  /** Offers an agent's call, fresh or done with a request and kept by the agent for the next; it leaves the pool when the agent ends it. */
  add(agentId: number, call: TunnelCall): void {
    const w = this.waiters.get(agentId)?.shift();
    if (w) {
      w.give(call);
      return;
    }
    let set = this.idle.get(agentId);
    if (!set) this.idle.set(agentId, (set = new Set()));
    set.add(call);
    // Once per call, however often it comes back.
    if (this.watched.has(call)) return;
    this.watched.add(call);
    const drop = () => {
      const now = this.idle.get(agentId);
      if (!now?.delete(call)) return;
      if (now.size === 0) this.idle.delete(agentId);
    };
    call.once('cancelled', drop);
    call.once('error', drop);
    call.once('close', drop);
    call.once('end', drop);
  }

  /** Whether the agent holds a call to this server now. */
  connected(agentId: number): boolean {
    return (this.idle.get(agentId)?.size ?? 0) > 0 || (this.busy.get(agentId) ?? 0) > 0;
  }

  /** The agent's calls serving a request now (a watch, logs -f or exec holds one until it ends). */
  busyCalls(agentId: number): number {
    return this.busy.get(agentId) ?? 0;
  }

  /** Agents holding a call to this server now (replica-sync.ts tells the other replicas). */
  connectedAgents(): number[] {
    return [...new Set([...this.idle.keys(), ...this.busy.keys()])];
  }

  /**
   * Takes an idle call of the agent, waiting up to waitMs for one; undefined
   * when none came. The returned release() must be called when the request ends.
   */
  async take(agentId: number, waitMs: number, signal?: AbortSignal): Promise<{ call: TunnelCall; release: () => void } | undefined> {
    const call = this.takeIdle(agentId) ?? (waitMs > 0 ? await this.wait(agentId, waitMs, signal) : undefined);
    if (!call) return undefined;
    this.busy.set(agentId, (this.busy.get(agentId) ?? 0) + 1);
    let released = false;
    return {
      call,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.busy.get(agentId) ?? 1) - 1;
        if (n <= 0) this.busy.delete(agentId);
        else this.busy.set(agentId, n);
      },
    };
  }

  private takeIdle(agentId: number): TunnelCall | undefined {
    const set = this.idle.get(agentId);
    if (!set) return undefined;
    for (const call of set) {
      set.delete(call);
      if (set.size === 0) this.idle.delete(agentId);
      if (!call.cancelled && !call.destroyed) return call;
    }
    return undefined;
  }

  private wait(agentId: number, ms: number, signal?: AbortSignal): Promise<TunnelCall | undefined> {
    return new Promise((resolve) => {
      const list = this.waiters.get(agentId) ?? [];
      this.waiters.set(agentId, list);
      const done = (call: TunnelCall | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = list.indexOf(w);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0 && this.waiters.get(agentId) === list) this.waiters.delete(agentId);
        resolve(call);
      };
      const w: Waiter = { give: (call) => done(call) };
      const onAbort = () => done(undefined);
      const timer = setTimeout(() => done(undefined), ms);
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(w);
    });
  }
}
