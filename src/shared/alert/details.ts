import type { AlertPayload } from './payload.js';
import { fitsBytes, MAX_SAMPLE_BYTES, SAMPLE_PREVIEW_BYTES } from './samples.js';

// How an alert's details (its `falco` or `cilium` object: a Falco output and
// output fields, which Falco lets a rule make as big as it likes) are cut when
// the alert is too big for a message even without samples. A cut value stays
// where it was, under its own name, and says it was cut and by how much: a
// string keeps its start as a sample preview does, then a marker; what has to
// go whole becomes the marker alone (in an array, or under the key "…", for
// a list or an object), so every field keeps its type.

/** The detail objects an alert may carry; everything in them may be cut. */
const DETAIL_KEYS = ['falco', 'cilium'] as const;

/** The key that holds the marker of an object cut whole. */
export const CUT_KEY = '…';

const encoder = new TextEncoder();

/** What ends a cut value: how many UTF-8 bytes of it were cut, of how many. */
export function cutMarker(cut: number, of: number): string {
  return `[cut ${cut} of ${of} bytes]`;
}

/** A string over MAX_SAMPLE_BYTES (UTF-8) as its first SAMPLE_PREVIEW_BYTES, never half a character, and the marker; else the string itself. */
export function previewText(s: string): string {
  if (fitsBytes(s, MAX_SAMPLE_BYTES)) return s;
  const bytes = Buffer.byteLength(s);
  // encodeInto writes whole characters only, so `read` ends on a character's boundary.
  const { read, written } = encoder.encodeInto(s, new Uint8Array(SAMPLE_PREVIEW_BYTES));
  return `${s.slice(0, read)}…${cutMarker(bytes - written, bytes)}`;
}

/** What stands for a value cut whole, of the same type: a string, a list or an object holding the marker. */
function dropped(v: unknown, json: string, origBytes?: number): unknown {
  const bytes = origBytes ?? (typeof v === 'string' ? Buffer.byteLength(v) : Buffer.byteLength(json));
  const marker = cutMarker(bytes, bytes);
  return typeof v === 'string' ? marker : Array.isArray(v) ? [marker] : { [CUT_KEY]: marker };
}

type Container = Record<string, unknown>;

/** A value inside the details: where it is, and its name for logs (`falco.output_fields.proc.cmdline`). */
interface Place {
  parent: Container;
  key: string;
  path: string;
  /** The object's place that holds this value, when it is not the top one. */
  up: Place | undefined;
  cut: boolean;
  /** UTF-8 bytes of the string before previews() cut it: the marker of a preview cut whole tells the size sent. */
  origBytes?: number;
}

const inCut = (p: Place | undefined): boolean => p !== undefined && (p.cut || inCut(p.up));

const isObject = (v: unknown): v is Container => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * An alert's details, copied so that they can be cut in place (plain objects
 * are copied, their strings and lists shared), with every string and list in
 * them (`leaves`) and every object below the top one (`objects`).
 */
export class DetailCut {
  readonly alert: AlertPayload;
  private readonly leaves: Place[] = [];
  private readonly objects: Place[] = [];
  private readonly cutPaths = new Set<string>();

  constructor(alert: AlertPayload) {
    const out: Container = { ...alert };
    for (const k of DETAIL_KEYS) {
      const d = out[k];
      if (isObject(d)) out[k] = this.copy(d, k, undefined);
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

  private copy(o: Container, path: string, up: Place | undefined): Container {
    // Spread defines every key as the object's own, "__proto__" (which JSON allows) too, so assigning to it sets that field.
    const c: Container = { ...o };
    for (const key in c) {
      const v = c[key];
      const at: Place = { parent: c, key, path: `${path}.${key}`, up, cut: false };
      if (isObject(v)) {
        c[key] = this.copy(v, at.path, at);
        this.objects.push(at);
      } else if (typeof v === 'string' || Array.isArray(v)) this.leaves.push(at);
    }
    return c;
  }

  /** Cuts every string over MAX_SAMPLE_BYTES to its preview (previewText); whether any was. */
  previews(): boolean {
    let any = false;
    for (const p of this.leaves) {
      const v = p.parent[p.key];
      if (typeof v !== 'string') continue;
      const cut = previewText(v);
      if (cut === v) continue;
      p.parent[p.key] = cut;
      p.origBytes = Buffer.byteLength(v);
      this.cutPaths.add(p.path);
      any = true;
    }
    return any;
  }

  /**
   * Cuts whole values, biggest first, until the alert's encoding, `bytes`
   * long now, would be at most `maxBytes`: strings and lists first, then, if
   * their names alone are still too much (thousands of fields), objects.
   * Returns the bytes the encoding is then (a value's JSON appears in it once).
   */
  drop(bytes: number, maxBytes: number): number {
    for (const places of [this.leaves, this.objects]) {
      // An object cut whole takes what is inside it along.
      const sized = places
        .filter((p) => !inCut(p.up))
        .map((p) => {
          const json = JSON.stringify(p.parent[p.key]) ?? '';
          return { p, json, bytes: Buffer.byteLength(json) };
        });
      sized.sort((a, b) => b.bytes - a.bytes);
      for (const s of sized) {
        if (bytes <= maxBytes) return bytes;
        if (inCut(s.p.up)) continue;
        const v = dropped(s.p.parent[s.p.key], s.json, s.p.origBytes);
        const saved = s.bytes - Buffer.byteLength(JSON.stringify(v));
        if (saved <= 0) continue;
        s.p.parent[s.p.key] = v;
        s.p.cut = true;
        this.cutPaths.add(s.p.path);
        bytes -= saved;
      }
    }
    return bytes;
  }
}
