import type { Flow } from '../../gen/flow/flow.js';

// Cilium reports each denied packet twice: a policy-verdict event (type 5) and
// a drop event (type 1). Counting both would double every alert's count, and
// neither type can simply be ignored (policy-verdict notifications can be off;
// drop events never carry policy names). So the second event of a pair seen
// within a short window is recognised and not counted again.

const PAIR_WINDOW_MS = 1000;

function packetKey(f: Flow): string {
  const l4 = f.l4?.protocol;
  let ports = '';
  if (l4 && (l4.$case === 'TCP' || l4.$case === 'UDP' || l4.$case === 'SCTP')) ports = `${l4.value.source_port}>${l4.value.destination_port}`;
  else if (l4) ports = `${l4.$case}:${(l4.value as { type: number }).type}`;
  return `${f.IP?.source ?? ''}>${f.IP?.destination ?? ''}|${ports}|${f.traffic_direction}`;
}

export class DropPairFilter {
  // key -> time ms * 2, plus 1 for a policy-verdict event (type 5): a number,
  // not an object, as an entry of every dropped flow lives a second, long
  // enough for the garbage collector to move it. Bounded by periodic sweeps.
  private readonly recent = new Map<string, number>();
  private lastSweep = 0;

  /** True when the flow is the second half of a pair already counted. */
  isPairedRepeat(f: Flow, now = Date.now()): boolean {
    const type = f.event_type?.type ?? 0;
    if (type !== 1 && type !== 5) return false;
    if (now - this.lastSweep > PAIR_WINDOW_MS) this.sweep(now);
    const key = packetKey(f);
    const seen = this.recent.get(key);
    const verdict = type === 5 ? 1 : 0;
    if (seen !== undefined && (seen & 1) !== verdict && now - Math.floor(seen / 2) <= PAIR_WINDOW_MS) {
      this.recent.delete(key);
      return true;
    }
    this.recent.set(key, now * 2 + verdict);
    return false;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, v] of this.recent) if (now - Math.floor(v / 2) > PAIR_WINDOW_MS) this.recent.delete(k);
  }
}
