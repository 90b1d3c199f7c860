import { closeSync, fstatSync, ftruncateSync, openSync, readdirSync, readSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

// The HTTP input's inbox: the raw bodies of answered Falco events until the
// aggregator has written their alert occurrences. An append-only journal of
// files in the data directory, one write() per batch of requests, read back
// only after a crash. Appending to a file costs one system call per batch; the
// same bytes in a SQLite table cost a B-tree insert per event, WAL frames, a
// checkpoint copying them again into the database file, and a delete.
//
// Durability is SQLite's with synchronous=NORMAL (the agent's setting): a
// batch is in the kernel's page cache once write() returns, so it survives the
// process dying (kill -9); a power loss can cost the last batches. Each record
// is framed [length u32][crc32 u32][body]: a torn or zeroed tail is detected and
// ignored (it was never acknowledged). Files are named falco-inbox-<gen>.log;
// after a write error or once a file is fully consumed and large, appends move
// to the next generation, and consumed generations are deleted. What has been
// consumed is recorded by the caller as a position (gen, offset) in SQLite, in
// the transaction that wrote the occurrences.

export interface InboxPosition {
  gen: number;
  offset: number;
}

export interface InboxRecord {
  body: Buffer;
  /** Where this record begins (for logs). */
  start: InboxPosition;
  /** The position just after this record. */
  end: InboxPosition;
}

export interface Inbox {
  /** Appends the bodies with one write; throws if they could not be stored (none of them counts then). */
  append(bodies: readonly Buffer[]): InboxPosition;
  /** Up to `limit` records after `from`, in order. */
  read(from: InboxPosition, limit: number): InboxRecord[];
  /** Everything before `upTo` is consumed and recorded as such: its storage may go. */
  release(upTo: InboxPosition): void;
  /** The position after the last record appended. */
  end(): InboxPosition;
  close(): void;
}

const HEADER = 8;
const PREFIX = 'falco-inbox-';
const SUFFIX = '.log';
/** A fully consumed file at least this large is replaced by a new generation. */
const ROTATE_BYTES = 16 * 1024 * 1024;
/** Bytes read per system call when reading back. */
const READ_CHUNK = 1024 * 1024;

/** Whether `dir` holds inbox files (what a previous run left). */
export function hasInboxFiles(dir: string): boolean {
  try {
    return listGens(dir).length > 0;
  } catch {
    return false;
  }
}

export function comparePositions(a: InboxPosition, b: InboxPosition): number {
  return a.gen !== b.gen ? a.gen - b.gen : a.offset - b.offset;
}

/** Frames bodies into one buffer: [length][crc32][body]... */
function frame(bodies: readonly Buffer[]): Buffer {
  let size = 0;
  for (const b of bodies) size += HEADER + b.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const b of bodies) {
    out.writeUInt32LE(b.length, at);
    out.writeUInt32LE(crc32(b), at + 4);
    b.copy(out, at + HEADER);
    at += HEADER + b.length;
  }
  return out;
}

/** Appends to `out` the records of generation `gen` from `offset`, up to `limit` in all. */
function readRecords(fd: number, gen: number, offset: number, fileSize: number, limit: number, out: InboxRecord[]): void {
  let buf = Buffer.alloc(0);
  let bufAt = offset;
  /** Reads from `at` at least `need` bytes (more if there are); false if the file ends before. */
  const fill = (at: number, need: number): boolean => {
    const len = Math.min(fileSize - at, Math.max(need, READ_CHUNK));
    if (len < need) return false;
    buf = Buffer.allocUnsafe(len);
    const n = readSync(fd, buf, 0, len, at);
    buf = buf.subarray(0, n);
    bufAt = at;
    return n >= need;
  };
  while (out.length < limit && offset < fileSize) {
    if (offset + HEADER > bufAt + buf.length && !fill(offset, HEADER)) break;
    const len = buf.readUInt32LE(offset - bufAt);
    if (len === 0) break;
    if (offset + HEADER + len > bufAt + buf.length && !fill(offset, HEADER + len)) break;
    const at = offset - bufAt;
    const body = buf.subarray(at + HEADER, at + HEADER + len);
    // A torn or zeroed tail (a crash or power loss mid-write): the rest of this file is not records.
    if (crc32(body) !== buf.readUInt32LE(at + 4)) break;
    const start = offset;
    offset += HEADER + len;
    out.push({ body: Buffer.from(body), start: { gen, offset: start }, end: { gen, offset } });
  }
}

function listGens(dir: string): number[] {
  const gens: number[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue;
    const gen = Number(name.slice(PREFIX.length, -SUFFIX.length));
    if (Number.isSafeInteger(gen)) gens.push(gen);
  }
  return gens.sort((a, b) => a - b);
}

/** Every record after `from` in the inbox files of `dir`, without changing anything (tools, tests). */
export function readInboxDir(dir: string, from: InboxPosition = { gen: 0, offset: 0 }): Buffer[] {
  const out: InboxRecord[] = [];
  for (const gen of listGens(dir)) {
    if (gen < from.gen) continue;
    const fd = openSync(join(dir, `${PREFIX}${gen}${SUFFIX}`), 'r');
    try {
      readRecords(fd, gen, gen === from.gen ? from.offset : 0, fstatSync(fd).size, Infinity, out);
    } finally {
      closeSync(fd);
    }
  }
  return out.map((r) => r.body);
}

export class FileInbox implements Inbox {
  /** Generations present, ascending; the last is the one appended to. */
  private gens: number[] = [];
  private fd: number;
  private size = 0;

  /** Directories with an open inbox in this process (and whether its owner still runs): two owners would take each other's events as their own. */
  private static readonly open = new Map<string, () => boolean>();

  /**
   * Opens the inbox in `dir`; `consumed` is the recorded position (files
   * before its generation are deleted). `alive` tells whether this owner still
   * runs (its database is open), for the next one to take over after it died.
   */
  constructor(
    private readonly dir: string,
    consumed: InboxPosition,
    private readonly alive: () => boolean = () => true,
  ) {
    if (FileInbox.open.get(dir)?.())
      throw new Error(
        `another Falco HTTP input already uses the inbox in ${dir}; run one agent per --data-dir (stop the other one, or give this one its own --data-dir)`,
      );
    for (const gen of listGens(dir)) {
      // Consumed, or empty (a run that received nothing): nothing to read there.
      if (gen < consumed.gen || statSync(this.path(gen)).size === 0) unlinkSync(this.path(gen));
      else this.gens.push(gen);
    }
    // Never append after what a crash left: a torn tail would hide later records.
    const next = Math.max(consumed.gen, this.gens.length ? this.gens[this.gens.length - 1]! : 0) + 1;
    this.fd = this.openGen(next);
    FileInbox.open.set(dir, alive);
  }

  append(bodies: readonly Buffer[]): InboxPosition {
    const buf = frame(bodies);
    try {
      for (let at = 0; at < buf.length; ) at += writeSync(this.fd, buf, at, buf.length - at);
    } catch (e) {
      // Part of the batch may be in the file: cut it off, or move on to a new file.
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        this.rotate();
      }
      throw e;
    }
    this.size += buf.length;
    return this.end();
  }

  read(from: InboxPosition, limit: number): InboxRecord[] {
    const out: InboxRecord[] = [];
    for (const gen of this.gens) {
      if (gen < from.gen) continue;
      const current = gen === this.current;
      const fd = current ? this.fd : openSync(this.path(gen), 'r');
      try {
        readRecords(fd, gen, gen === from.gen ? from.offset : 0, current ? this.size : fstatSync(fd).size, limit, out);
      } finally {
        if (!current) closeSync(fd);
      }
      if (out.length >= limit) break;
    }
    return out;
  }

  release(upTo: InboxPosition): void {
    while (this.gens.length > 1 && this.gens[0]! < upTo.gen) {
      unlinkSync(this.path(this.gens.shift()!));
    }
    if (upTo.gen === this.current && upTo.offset >= this.size && this.size >= ROTATE_BYTES) this.rotate();
  }

  end(): InboxPosition {
    return { gen: this.current, offset: this.size };
  }

  close(): void {
    if (FileInbox.open.get(this.dir) === this.alive) FileInbox.open.delete(this.dir);
    closeSync(this.fd);
  }

  private get current(): number {
    return this.gens[this.gens.length - 1]!;
  }

  private path(gen: number): string {
    return join(this.dir, `${PREFIX}${gen}${SUFFIX}`);
  }

  private openGen(gen: number): number {
    const fd = openSync(this.path(gen), 'a+');
    this.gens.push(gen);
    this.size = 0;
    return fd;
  }

  private rotate(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already unusable
    }
    this.fd = this.openGen(this.current + 1);
  }
}

/** For an in-memory database (tests, tools): the same interface, nothing on disk. */
export class MemoryInbox implements Inbox {
  private records: { body: Buffer; offset: number }[] = [];
  private first = 0;
  private offset = 0;

  append(bodies: readonly Buffer[]): InboxPosition {
    for (const b of bodies) {
      this.offset += HEADER + b.length;
      this.records.push({ body: b, offset: this.offset });
    }
    return this.end();
  }

  read(from: InboxPosition, limit: number): InboxRecord[] {
    const out: InboxRecord[] = [];
    for (let i = this.first; i < this.records.length && out.length < limit; i++) {
      const r = this.records[i]!;
      if (r.offset > from.offset) out.push({ body: r.body, start: { gen: 0, offset: r.offset - HEADER - r.body.length }, end: { gen: 0, offset: r.offset } });
    }
    return out;
  }

  release(upTo: InboxPosition): void {
    while (this.first < this.records.length && this.records[this.first]!.offset <= upTo.offset) this.first++;
    if (this.first > 1024 && this.first * 2 > this.records.length) {
      this.records = this.records.slice(this.first);
      this.first = 0;
    }
  }

  end(): InboxPosition {
    return { gen: 0, offset: this.offset };
  }

  close(): void {
    this.records = [];
  }
}
