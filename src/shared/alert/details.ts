import type { AlertPayload } from './payload.js';
import { fitsBytes, MAX_SAMPLE_BYTES, previewStart } from './samples.js';

// How an alert's details (its `falco` or `cilium` object: a Falco output and
// output fields, which Falco lets a rule make as big as it likes) are cut when
// the alert is too big for a message even with its samples cut. A cut value stays
// where it was, under its own name, and says it was cut and by how much: a
// string keeps its start as a sample preview does, then a marker; what has to
// go whole becomes the marker alone (in an array, or under the key "…", for
// a list or an object), so every field keeps its type.

/** The detail objects an alert may carry; everything in them may be cut. */
const DETAIL_KEYS = ['falco', 'cilium'] as const;

/** The key that holds the marker of an object cut whole. */
export const CUT_KEY = '…';

/** What ends a cut value: how many UTF-8 bytes of it were cut, of how many. */
export function cutMarker(cut: number, of: number): string {
  return `[cut ${cut} of ${of} bytes]`;
}

/** A string over MAX_SAMPLE_BYTES (UTF-8) as its first SAMPLE_PREVIEW_BYTES, never half a character, and the marker; else the string itself. */
export function previewText(s: string): string {
  if (fitsBytes(s, MAX_SAMPLE_BYTES)) return s;
  const bytes = Buffer.byteLength(s);
  const start = previewStart(s);
  return `${start.text}…${cutMarker(bytes - start.bytes, bytes)}`;
}

/** What stands for a value cut whole, of the same type: a string, a list or an object holding the marker, which gives `came`, its size as it came. */
function dropped(v: unknown, came: number): unknown {
  const marker = cutMarker(came, came);
  return typeof v === 'string' ? marker : Array.isArray(v) ? [marker] : { [CUT_KEY]: marker };
}

// Printable ASCII but `"` and `\`: what JSON writes as it is, a byte a character.
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** UTF-8 bytes of a value's JSON; 0 for what JSON leaves out of an object (undefined, a function). */
function jsonBytes(v: unknown): number {
  if (typeof v === 'string' && v.length < 256 && PLAIN.test(v)) return v.length + 2;
  const json = JSON.stringify(v);
  return json === undefined ? 0 : Buffer.byteLength(json);
}

/**
 * A value whose cut would save fewer bytes than this is cut only when nothing
 * bigger is left to cut: thousands of short values, each cut for a few bytes
 * more than its marker, would all be lost where cutting the object that holds
 * them saves as much at once.
 */
export const MIN_CUT_SAVING = 256;

type Container = Record<string, unknown>;

/** A string, list or object inside the details: where it is, its name for logs (`falco.output_fields.proc.cmdline`), and its sizes once measured. */
interface Place {
  key: string;
  path: string;
  /** The object that holds it; undefined for a top detail object (`falco`), which the alert holds. */
  up: Place | undefined;
  /** For an object: as it came, its copy once something in it is cut, the strings, lists and objects directly in it, and the bytes of the rest of its JSON (braces, names, numbers). */
  src?: Container;
  copy?: Container;
  kids?: Place[];
  fixed: number;
  cut: boolean;
  /** The string as it came, when previews() cut it. */
  orig?: string;
  /** UTF-8 bytes of its JSON now. */
  bytes: number;
  /** Its size as it came, which its marker gives: UTF-8 bytes of a string, of a list's or object's JSON. */
  came: number;
  /** Bytes that cutting it whole saves now. */
  saving: number;
  /** For an object: bytes of its JSON that no cut of a value in it would save (names, numbers, short values); it is ranked by these. */
  own: number;
  /** For an object: what cutting every value in it worth cutting (MIN_CUT_SAVING) would save. */
  inner: number;
}

const inCut = (p: Place | undefined): boolean => p !== undefined && (p.cut || inCut(p.up));

const isObject = (v: unknown): v is Container => typeof v === 'object' && v !== null && !Array.isArray(v);

const worth = (p: Place): boolean => p.kids === undefined && p.saving >= MIN_CUT_SAVING;

const place = (key: string, path: string, up: Place | undefined): Place => ({
  key,
  path,
  up,
  fixed: 0,
  cut: false,
  bytes: 0,
  came: 0,
  saving: 0,
  own: 0,
  inner: 0,
});

/**
 * An alert's details, with every string and list in them (`leaves`) and
 * every object below the top one (`objects`). Cutting a value copies the
 * objects that hold it first (their strings and lists shared): the alert
 * given is never changed, and an object with thousands of fields that goes
 * whole is never copied.
 */
export class DetailCut {
  readonly alert: AlertPayload;
  private readonly leaves: Place[] = [];
  private readonly objects: Place[] = [];
  private readonly tops: Place[] = [];
  private readonly cutPaths = new Set<string>();

  constructor(alert: AlertPayload) {
    const out: Container = { ...alert };
    for (const k of DETAIL_KEYS) {
      const d = out[k];
      if (!isObject(d)) continue;
      const top = place(k, k, undefined);
      this.walk(top, d);
      this.tops.push(top);
    }
    this.alert = out as unknown as AlertPayload;
  }

  /** Whether there is anything to cut. */
  get empty(): boolean {
    return this.leaves.length === 0 && this.objects.length === 0;
  }

  /** The names of the values cut, in the order they were first cut. */
  get paths(): string[] {
    return [...this.cutPaths];
  }

  /** Finds the places in object `o` at `at`, and the bytes of the rest of its JSON. */
  private walk(at: Place, o: Container): void {
    at.src = o;
    at.kids = [];
    let fixed = 2;
    let n = 0;
    for (const key in o) {
      const v = o[key];
      if (isObject(v) || typeof v === 'string' || Array.isArray(v)) {
        const kid = place(key, `${at.path}.${key}`, at);
        at.kids.push(kid);
        if (isObject(v)) {
          this.walk(kid, v);
          this.objects.push(kid);
        } else this.leaves.push(kid);
      } else {
        const bytes = jsonBytes(v);
        // JSON leaves out a field whose value it cannot write.
        if (bytes === 0) continue;
        fixed += bytes;
      }
      fixed += jsonBytes(key) + 1;
      n++;
    }
    at.fixed = fixed + Math.max(0, n - 1);
  }

  /** The value at `p` now. */
  private get(p: Place): unknown {
    const up = p.up!;
    return (up.copy ?? up.src!)[p.key];
  }

  /** Sets the value at `p`, copying the objects that hold it first. */
  private set(p: Place, v: unknown): void {
    this.writable(p.up!)[p.key] = v;
  }

  private writable(o: Place): Container {
    if (o.copy) return o.copy;
    // Spread defines every key as the object's own, "__proto__" (which JSON allows) too, so assigning to it sets that field.
    o.copy = { ...o.src! };
    if (o.up) this.writable(o.up)[o.key] = o.copy;
    else (this.alert as unknown as Container)[o.key] = o.copy;
    return o.copy;
  }

  /** Cuts every string over MAX_SAMPLE_BYTES to its preview (previewText); whether any was. */
  previews(): boolean {
    let any = false;
    for (const p of this.leaves) {
      const v = this.get(p);
      if (typeof v !== 'string') continue;
      const cut = previewText(v);
      if (cut === v) continue;
      this.set(p, cut);
      p.orig = v;
      this.cutPaths.add(p.path);
      any = true;
    }
    return any;
  }

  /**
   * Cuts whole values until the alert's encoding, `bytes` long now, would be
   * at most `maxBytes`, each the marker alone, and returns the bytes it is
   * then (a value's JSON appears in it once). Values are cut biggest saving
   * first, stopping as soon as it fits; an object is cut whole only when even
   * all the values in the details worth cutting (MIN_CUT_SAVING) would not be
   * enough, the one with the most bytes no cut inside it saves (thousands of
   * fields, or one huge name) first. So a value is cut only when it is among
   * the biggest, and never for a few bytes while something bigger is left.
   */
  drop(bytes: number, maxBytes: number): number {
    if (bytes <= maxBytes) return bytes;
    for (const t of this.tops) this.measure(t);
    const leaves = this.leaves.filter((p) => p.saving > 0).sort((a, b) => b.saving - a.saving);
    let inner = 0;
    for (const p of leaves) if (worth(p)) inner += p.saving;
    const objects = this.objects.filter((p) => p.saving > 0).sort((a, b) => b.own - a.own);
    for (const o of objects) {
      if (bytes - inner <= maxBytes) break;
      if (o.saving <= 0 || inCut(o)) continue;
      bytes -= o.saving;
      inner -= o.inner;
      this.cut(o);
    }
    for (const p of leaves) {
      if (bytes <= maxBytes) break;
      if (inCut(p)) continue;
      bytes -= p.saving;
      this.cut(p);
    }
    return bytes;
  }

  /** Replaces `p` with its marker, and takes what that saves off the objects that hold it. */
  private cut(p: Place): void {
    this.set(p, dropped(this.get(p), p.came));
    p.cut = true;
    this.cutPaths.add(p.path);
    const inner = worth(p) ? p.saving : p.inner;
    for (let up = p.up; up; up = up.up) {
      up.bytes -= p.saving;
      up.saving -= p.saving;
      up.inner -= inner;
    }
  }

  /** Sets the sizes of object `o` and of the places in it, bottom-up, so that each value is encoded once however deep it is. */
  private measure(o: Place): void {
    o.bytes = o.came = o.own = o.fixed;
    o.inner = 0;
    for (const kid of o.kids!) {
      let came: number;
      if (kid.kids) {
        this.measure(kid);
        came = kid.came;
        o.inner += kid.inner;
      } else {
        const v = this.get(kid);
        kid.bytes = jsonBytes(v);
        came = kid.orig === undefined ? kid.bytes : jsonBytes(kid.orig);
        kid.came = typeof v === 'string' ? Buffer.byteLength(kid.orig ?? v) : kid.bytes;
      }
      kid.saving = kid.bytes - jsonBytes(dropped(this.get(kid), kid.came));
      o.bytes += kid.bytes;
      o.came += came;
      if (worth(kid)) {
        o.inner += kid.saving;
        o.own += kid.bytes - kid.saving;
      } else if (!kid.kids) o.own += kid.bytes;
    }
  }
}
