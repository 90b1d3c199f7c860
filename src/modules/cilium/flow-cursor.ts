import { createHash } from 'node:crypto';
import { Flow } from '../../gen/flow/flow.js';
import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';

// Where the agent is in a relay's flow stream. Relay sends flows with
// time >= since, so the flows at the boundary time come again after a resume:
// their ids are remembered and skipped. Relay merges the nodes' flows in a
// short sorting buffer, so its output is only roughly in time order: a flow
// older than the newest one seen is a late flow from a slower node, never a
// repeat, and is handled. The cursor is saved in the agent's database so a
// restarted agent resumes instead of starting from "now".

const MIGRATIONS = [
  `CREATE TABLE hubble_cursor (
     relay TEXT PRIMARY KEY,
     seconds INTEGER NOT NULL,
     nanos INTEGER NOT NULL,
     boundary TEXT NOT NULL
   )`,
];

/** The flow's id: its uuid, or a digest of its bytes (as received, when given: encoding it again costs more than the digest). */
export function flowKey(flow: Flow, bytes?: Uint8Array): string {
  if (flow.uuid) return flow.uuid;
  return createHash('sha1')
    .update(bytes?.length ? bytes : Flow.encode(flow).finish())
    .digest('base64');
}

export class FlowCursor {
  private seconds = 0;
  private nanos = 0;
  /**
   * Ids of the flows at the boundary time: the first, and the others only
   * when several share it. Flows rarely do (nanosecond times), and a set made
   * for every flow cost the garbage collector more than the rest of advance().
   */
  private boundaryFirst: string | undefined;
  private boundaryMore: Set<string> | undefined;
  private readonly save;
  private dirty = false;
  private held = false;

  constructor(
    db: DB,
    private readonly relay: string,
  ) {
    migrate(db, 'hubble_cursor', MIGRATIONS);
    this.save = db.prepare(
      'INSERT INTO hubble_cursor (relay, seconds, nanos, boundary) VALUES (?, ?, ?, ?) ON CONFLICT(relay) DO UPDATE SET seconds = excluded.seconds, nanos = excluded.nanos, boundary = excluded.boundary',
    );
    const row = db.prepare('SELECT seconds, nanos, boundary FROM hubble_cursor WHERE relay = ?').get(relay) as
      | { seconds: number; nanos: number; boundary: string }
      | undefined;
    if (row) {
      this.seconds = row.seconds;
      this.nanos = row.nanos;
      const ids = JSON.parse(row.boundary) as string[];
      this.boundaryFirst = ids[0];
      if (ids.length > 1) this.boundaryMore = new Set(ids.slice(1));
    }
  }

  /** `since` for the next GetFlows call, or undefined to start with new flows. */
  get since(): Timestamp | undefined {
    return this.seconds || this.nanos ? { seconds: this.seconds, nanos: this.nanos } : undefined;
  }

  /**
   * Moves past a flow. Returns false when the flow was seen already (the repeated
   * boundary after a resume).
   */
  advance(flow: Flow, bytes?: Uint8Array): boolean {
    const t = flow.time;
    if (!t) return true;
    const cmp = t.seconds - this.seconds || t.nanos - this.nanos;
    if (cmp < 0) return true;
    const key = flowKey(flow, bytes);
    if (cmp === 0) {
      if (key === this.boundaryFirst || this.boundaryMore?.has(key)) return false;
      if (this.boundaryFirst === undefined) this.boundaryFirst = key;
      else (this.boundaryMore ??= new Set()).add(key);
    } else {
      this.seconds = t.seconds;
      this.nanos = t.nanos;
      this.boundaryFirst = key;
      this.boundaryMore = undefined;
    }
    this.dirty = true;
    return true;
  }

  /**
   * Stops saving the position: the work for a flow the cursor has moved past
   * failed, so the saved position must stay before it and a restart reads it again.
   */
  hold(): void {
    this.held = true;
  }

  /** The position moved since it was last saved. */
  get unsaved(): boolean {
    return this.dirty && !this.held;
  }

  /** Saves the position; call inside the transaction that stores the flow's alerts. */
  persist(): void {
    if (!this.dirty || this.held) return;
    const ids = this.boundaryFirst === undefined ? [] : [this.boundaryFirst, ...(this.boundaryMore ?? [])];
    this.save.run(this.relay, this.seconds, this.nanos, JSON.stringify(ids));
    this.dirty = false;
  }
}
