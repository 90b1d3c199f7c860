import { readFileSync } from 'node:fs';

// What the benchmarks read about other processes (servers, agents, peers they
// spawn): CPU time and peak memory, from /proc, so a benchmark reports CPU per
// item for each process and not only wall-clock rates on a shared machine.

const TICK_MS = 1000 / Number(process.env.VERDICT_BENCH_CLK_TCK ?? 100);

/** CPU time (user + system) a process has used so far, in ms; NaN once it is gone. */
export function processCpuMs(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // utime and stime are the 12th and 13th fields after the command name, which may hold spaces.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return Number.NaN;
  }
}

/** Peak resident memory of a process, in MB; NaN once it is gone. */
export function peakRssMb(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
