import { migrate, type DB } from '../../shared/sqlite/open.js';

// The Falcosidekick uuids the agent has taken events of, so that a resent
// event is acknowledged without being counted twice. Lookups are in memory;
// the table is an append-only log of the recent set, read at start and trimmed
// to the configured size.

const MIGRATIONS = [
  `CREATE TABLE falco_uuids (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     uuid TEXT NOT NULL UNIQUE
   )`,
  // Lookups moved to memory: a unique index on random uuids cost one random
  // B-tree page write per event, more than the rest of the HTTP path together.
  // The table is now an append-only log of the recent set, read at start.
  `CREATE TABLE falco_uuids_log (seq INTEGER PRIMARY KEY, uuid TEXT NOT NULL);
   INSERT INTO falco_uuids_log (seq, uuid) SELECT seq, uuid FROM falco_uuids;
   DROP TABLE falco_uuids;
   ALTER TABLE falco_uuids_log RENAME TO falco_uuids;`,
];

/** What one transaction wrote: applied to memory once it commits. */
export interface UuidsWritten {
  /** Claimed uuids written, from the oldest unwritten one. */
  rows: number;
  /** The oldest remembered uuids the transaction deleted. */
  trimmed: number;
}

export class FalcoUuids {
  private readonly seen = new Set<string>();
  /** Remembered uuids, oldest first, from `head`; seq of uuids[i] is seqs[i]. */
  private uuids: string[] = [];
  private seqs: number[] = [];
  private head = 0;
  /** uuids[written..] are claimed but not in the table yet. */
  private written: number;
  private nextSeq = 1;
  private readonly insert;
  private readonly trim;

  /** `cap` uuids are remembered; 0 turns idempotency off. */
  constructor(
    db: DB,
    private readonly cap: number,
  ) {
    migrate(db, 'falco_uuids', MIGRATIONS);
    this.insert = db.prepare('INSERT INTO falco_uuids (seq, uuid) VALUES (?, ?)');
    this.trim = db.prepare('DELETE FROM falco_uuids WHERE seq < ?');
    const rows = db.prepare('SELECT seq, uuid FROM falco_uuids ORDER BY seq').all() as { seq: number; uuid: string }[];
    for (const r of rows) {
      this.seen.add(r.uuid);
      this.uuids.push(r.uuid);
      this.seqs.push(r.seq);
    }
    if (rows.length) this.nextSeq = rows[rows.length - 1]!.seq + 1;
    this.written = this.uuids.length;
  }

  get enabled(): boolean {
    return this.cap > 0;
  }

  /**
   * Takes an event's uuid: false when its event was taken already. The uuid
   * counts as seen at once; its row is written by the next writeInTx().
   */
  claim(uuid: string | undefined): boolean {
    if (uuid === undefined || !this.enabled) return true;
    if (this.seen.has(uuid)) return false;
    this.seen.add(uuid);
    this.uuids.push(uuid);
    this.seqs.push(this.nextSeq++);
    return true;
  }

  /** Where the claims are now, for rollBack(). */
  mark(): number {
    return this.uuids.length;
  }

  /** Forgets the uuids claimed since `mark`: their events could not be stored, so a retry must not look like a duplicate. */
  rollBack(mark: number): void {
    while (this.uuids.length > mark) {
      this.seen.delete(this.uuids.pop()!);
      this.seqs.pop();
      this.nextSeq--;
    }
    if (this.written > this.uuids.length) this.written = this.uuids.length;
  }

  /** Inside a transaction: writes the claimed uuids and deletes the oldest beyond the bound. */
  writeInTx(): UuidsWritten {
    const from = Math.max(this.written, this.head);
    for (let i = from; i < this.uuids.length; i++) this.insert.run(this.seqs[i]!, this.uuids[i]!);
    const over = this.uuids.length - this.head - this.cap;
    // In steps, so the delete is rare, and small, so it never holds the loop long.
    let trimmed = 0;
    if (this.enabled && over >= Math.max(1, Math.min(Math.floor(this.cap / 10), 1024))) {
      trimmed = over;
      this.trim.run(this.head + over < this.seqs.length ? this.seqs[this.head + over]! : this.nextSeq);
    }
    return { rows: this.uuids.length - this.written, trimmed };
  }

  /** The transaction of writeInTx() committed. */
  committed(w: UuidsWritten): void {
    this.written += w.rows;
    for (let i = 0; i < w.trimmed; i++) this.seen.delete(this.uuids[this.head + i]!);
    this.head += w.trimmed;
    if (this.head > 4096 && this.head * 2 > this.uuids.length) {
      this.uuids = this.uuids.slice(this.head);
      this.seqs = this.seqs.slice(this.head);
      this.written -= this.head;
      this.head = 0;
    }
  }

  /** Claimed uuids not written yet. */
  get unwritten(): number {
    return this.uuids.length - this.written;
  }
}
