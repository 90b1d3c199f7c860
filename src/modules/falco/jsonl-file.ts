import { watch, type FSWatcher } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errText, type Logger } from '../../shared/log/logger.js';
import { retryLoop } from '../../shared/retry/loop.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import { isSpoolFull } from '../../agent/spool/spool.js';
import { countOutcomes } from './events.js';
import { LineDecoder } from './line-decoder.js';
import type { FalcoSink } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Follows the JSON lines file Falco's file_output appends to. The position
// (file identity + byte offset) is stored in the same transaction as the
// alerts of the lines before it, so a crash re-reads nothing that was stored
// and skips nothing that was not. Rotation is handled both ways logrotate does
// it: rename + create (the old file is read to its end first, even when the
// rename happened while the agent was down, as long as the renamed file is
// still in the same directory) and copytruncate (the file shrinks or its bytes
// before the offset change).
//
// While the agent's alert spool is full, the file is not read further: the
// offset stays before the lines whose alerts the spool refused, and they are
// read at a later pass, once it has room (Falco keeps appending meanwhile).

const MIGRATIONS = [
  `CREATE TABLE falco_file_positions (
     path TEXT PRIMARY KEY,
     file_id TEXT NOT NULL,
     offset INTEGER NOT NULL,
     tail BLOB NOT NULL
   )`,
  // rotatedWhileFull, comma-separated: a restart while the spool is full must not forget them.
  `ALTER TABLE falco_file_positions ADD COLUMN rotated TEXT NOT NULL DEFAULT ''`,
];

/** Bytes before the offset kept to notice a truncate-and-regrow between two polls. */
const TAIL_BYTES = 1024;
const CHUNK_BYTES = 1024 * 1024;

export interface JsonlFileOptions {
  path: string;
  startAt: 'beginning' | 'end';
  pollIntervalMs: number;
  db: DB;
  sink: FalcoSink;
  builder: FalcoAlertBuilder;
  log: Logger;
  signal: AbortSignal;
}

interface Position {
  fileId: string;
  offset: number;
  tail: Buffer;
}

interface Open {
  fh: FileHandle;
  fileId: string;
}

function fileIdOf(st: { dev: bigint; ino: bigint }): string {
  return `${st.dev}:${st.ino}`;
}

export async function followJsonlFile(opts: JsonlFileOptions): Promise<void> {
  const follower = new JsonlFollower(opts);
  await follower.run();
}

export class JsonlFollower {
  private readonly load;
  private readonly save;
  private pos: Position | undefined;
  private cur: Open | undefined;
  private readonly decoder: LineDecoder;
  private wake: (() => void) | undefined;
  /**
   * Identities the path took while the spool was full, oldest first: files
   * rotated in and out meanwhile, never opened, read (if still in the
   * directory) after the one being read when the spool filled up. Stored
   * with the position (a few dozen bytes per rotation).
   */
  private rotatedWhileFull: string[] = [];
  private readonly buf = Buffer.allocUnsafe(CHUNK_BYTES + TAIL_BYTES);
  /** Set while skipping the rest of a line longer than a chunk. */
  private skippingLongLine = false;

  constructor(private readonly opts: JsonlFileOptions) {
    migrate(opts.db, 'falco_file_positions', MIGRATIONS);
    this.load = opts.db.prepare('SELECT file_id, offset, tail, rotated FROM falco_file_positions WHERE path = ?');
    this.save = opts.db.prepare(
      'INSERT INTO falco_file_positions (path, file_id, offset, tail, rotated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET file_id = excluded.file_id, offset = excluded.offset, tail = excluded.tail, rotated = excluded.rotated',
    );
    this.decoder = new LineDecoder('file', opts.builder, opts.log);
    const row = this.load.get(opts.path) as { file_id: string; offset: number; tail: Buffer; rotated: string } | undefined;
    if (row) {
      this.pos = { fileId: row.file_id, offset: row.offset, tail: row.tail };
      this.rotatedWhileFull = row.rotated ? row.rotated.split(',') : [];
    }
  }

  async run(): Promise<void> {
    const { signal, log } = this.opts;
    let watcher: FSWatcher | undefined;
    try {
      // Wakes the loop early on writes and renames; polling still covers file systems without events.
      watcher = watch(dirname(this.opts.path), { persistent: false }, () => this.wake?.());
      watcher.on('error', () => undefined);
    } catch {
      watcher = undefined;
    }
    let failing = false;
    const onBackoff = (wait: number, e: unknown) => {
      if (!failing || (e as NodeJS.ErrnoException).code !== 'ENOENT') {
        log.warn(
          { path: this.opts.path, error: errText(e), retry_in_ms: wait },
          (e as NodeJS.ErrnoException).code === 'ENOENT'
            ? 'The Falco events file does not exist yet; waiting for Falco to create it (file_output.filename in falco.yaml)'
            : 'Cannot read the Falco events file; check that the agent can read it',
        );
      }
      failing = true;
    };
    log.info({ path: this.opts.path, resume_offset: this.pos?.offset }, 'Following Falco events file');
    try {
      await retryLoop({ backoff: { initialMs: 1_000, maxMs: 30_000 }, signal, onBackoff }, async (progress) => {
        await this.stepUnlessSpoolFull();
        if (failing) log.info({ path: this.opts.path }, 'Reading the Falco events file works again');
        failing = false;
        progress();
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, this.opts.pollIntervalMs);
          const onAbort = () => done();
          signal.addEventListener('abort', onAbort, { once: true });
          function done() {
            clearTimeout(t);
            signal.removeEventListener('abort', onAbort);
            resolve();
          }
          this.wake = done;
        });
        this.wake = undefined;
        return 'now';
      });
    } finally {
      watcher?.close();
      await this.cur?.fh.close().catch(() => undefined);
      this.cur = undefined;
    }
  }

  /**
   * step(), except while the spool is full: the lines after the stored offset
   * are then left in the file, and read at a later pass, once it has room.
   */
  private async stepUnlessSpoolFull(): Promise<void> {
    const { sink } = this.opts;
    if (sink.spoolFull) {
      sink.noteSpoolFull('file');
      // Nothing is read, but rotations are noted: a file rotated away again before there is room must not be skipped.
      const st = await stat(this.opts.path, { bigint: true }).catch(() => undefined);
      const id = st && fileIdOf(st);
      if (id && this.pos && id !== this.pos.fileId && id !== this.rotatedWhileFull.at(-1)) {
        this.rotatedWhileFull.push(id);
        this.persist(this.pos);
      }
      return;
    }
    try {
      await this.step();
    } catch (e) {
      // The offset stayed before the lines whose alerts were refused (sink.commit noted it).
      if (!isSpoolFull(e)) throw e;
    }
  }

  /** One pass: notice rotation or truncation, then read everything new. */
  async step(): Promise<void> {
    let st;
    try {
      st = await stat(this.opts.path, { bigint: true });
    } catch (e) {
      // Renamed away and not yet re-created: finish the old file meanwhile.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && this.cur && this.pos?.fileId === this.cur.fileId) {
        await this.readToEnd(this.cur.fh, false);
      }
      throw e;
    }
    const fileId = fileIdOf(st);
    if (!this.pos) {
      const offset = this.opts.startAt === 'end' ? Number(st.size) : 0;
      const tail = offset > 0 ? await this.readTailOf(this.opts.path, offset) : Buffer.alloc(0);
      this.pos = { fileId, offset, tail };
      this.persist(this.pos);
    }
    if (this.pos.fileId !== fileId) {
      await this.finishRotated(this.pos.fileId);
      // Then the files rotated in and out while the spool was full, oldest first.
      for (let next = this.rotatedWhileFull.shift(); next !== undefined; next = this.rotatedWhileFull.shift()) {
        if (next === fileId || next === this.pos.fileId) continue;
        this.pos = { fileId: next, offset: 0, tail: Buffer.alloc(0) };
        this.persist(this.pos);
        await this.finishRotated(next);
      }
      this.opts.log.info({ path: this.opts.path }, 'Falco events file was rotated; reading the new file from its start');
      this.pos = { fileId, offset: 0, tail: Buffer.alloc(0) };
      this.persist(this.pos);
    }
    if (!this.cur || this.cur.fileId !== fileId) {
      await this.cur?.fh.close().catch(() => undefined);
      const fh = await open(this.opts.path, 'r');
      const fst = await fh.stat({ bigint: true });
      if (fileIdOf(fst) !== fileId) {
        // Rotated between stat and open; the next pass sees the new identity.
        await fh.close();
        return;
      }
      this.cur = { fh, fileId };
    }
    await this.readToEnd(this.cur.fh, false);
  }

  /** The file we were reading was renamed: read what is left of it, if we can find it. */
  private async finishRotated(oldId: string): Promise<void> {
    let fh: FileHandle | undefined;
    let owned = false;
    if (this.cur?.fileId === oldId) {
      fh = this.cur.fh;
    } else {
      const dir = dirname(this.opts.path);
      const base = basename(this.opts.path);
      const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n !== base).slice(0, 1000);
      for (const n of names) {
        const s = await stat(join(dir, n), { bigint: true }).catch(() => undefined);
        if (s?.isFile() && fileIdOf(s) === oldId) {
          fh = await open(join(dir, n), 'r').catch(() => undefined);
          owned = true;
          break;
        }
      }
    }
    if (!fh) {
      this.opts.log.warn(
        { path: this.opts.path, offset: this.pos?.offset },
        'The Falco events file was rotated while the agent was not running and the rotated file is gone (compressed or deleted); lines written to it after the stored offset are missing. Delay compression in logrotate (delaycompress) to avoid this',
      );
      return;
    }
    try {
      await this.readToEnd(fh, true);
    } finally {
      if (owned) await fh.close().catch(() => undefined);
    }
  }

  /** Reads from the stored offset to the end in bounded chunks; `final` also takes an unterminated last line. */
  private async readToEnd(fh: FileHandle, final: boolean): Promise<void> {
    const pos = this.pos!;
    const size = Number((await fh.stat({ bigint: true })).size);
    if (size < pos.offset) {
      this.opts.log.info({ path: this.opts.path, size, offset: pos.offset }, 'Falco events file was truncated (copytruncate); reading it from its start');
      this.resetToStart();
    } else if (pos.offset > 0 && pos.tail.length > 0 && size > pos.offset) {
      const tailLen = pos.tail.length;
      const { bytesRead } = await fh.read(this.buf, 0, tailLen, pos.offset - tailLen);
      if (bytesRead !== tailLen || !this.buf.subarray(0, tailLen).equals(pos.tail)) {
        this.opts.log.info(
          { path: this.opts.path, offset: pos.offset },
          'Falco events file was truncated and written again since the last read; reading it from its start',
        );
        this.resetToStart();
      }
    }
    while (!this.opts.signal.aborted) {
      const start = this.pos!.offset;
      const { bytesRead } = await fh.read(this.buf, 0, CHUNK_BYTES, start);
      if (bytesRead === 0) return;
      const chunk = this.buf.subarray(0, bytesRead);
      const atEof = bytesRead < CHUNK_BYTES;
      let end = chunk.lastIndexOf(10);
      if (final && atEof) {
        // A rotated file gets no more writes: an unterminated last line is complete.
        end = bytesRead - 1;
      } else if (end < 0) {
        if (atEof) return; // a line still being written
        this.opts.log.warn({ path: this.opts.path, offset: start }, `Skipping a line longer than ${CHUNK_BYTES} bytes in the Falco events file`);
        this.skippingLongLine = true;
        this.advance(start + bytesRead, chunk, []);
        continue;
      }
      let text = chunk.toString('utf8', 0, end + 1);
      if (this.skippingLongLine) {
        const nl = text.indexOf('\n');
        text = text.slice(nl + 1);
      }
      this.advance(start + end + 1, chunk.subarray(0, end + 1), text.split('\n'));
      // Only once stored: if storing failed, the next pass reads this chunk again and must skip the same bytes.
      this.skippingLongLine = false;
      if (atEof) return;
    }
  }

  private resetToStart(): void {
    this.pos = { fileId: this.pos!.fileId, offset: 0, tail: Buffer.alloc(0) };
    this.skippingLongLine = false;
    this.persist(this.pos);
  }

  /** Stores the alerts of `lines` and the new offset in one transaction. */
  private advance(offset: number, consumed: Buffer, lines: string[]): void {
    // Skipped lines are counted once stored: a refused or failed commit reads them again.
    const skipped: (() => void)[] = [];
    const items = this.decoder.decode(lines, skipped);
    const prevTail = this.pos!.tail;
    const tail =
      consumed.length >= TAIL_BYTES ? Buffer.from(consumed.subarray(consumed.length - TAIL_BYTES)) : Buffer.concat([prevTail, consumed]).subarray(-TAIL_BYTES);
    const next: Position = { fileId: this.pos!.fileId, offset, tail: Buffer.from(tail) };
    const outcomes = this.opts.sink.commit(items, () => this.persist(next), 'file');
    this.pos = next;
    countOutcomes('file', outcomes);
    for (const f of skipped) f();
  }

  private persist(p: Position): void {
    this.save.run(this.opts.path, p.fileId, p.offset, p.tail, this.rotatedWhileFull.join(','));
  }

  private async readTailOf(path: string, offset: number): Promise<Buffer> {
    const fh = await open(path, 'r');
    try {
      const len = Math.min(TAIL_BYTES, offset);
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, offset - len);
      return b.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
}
