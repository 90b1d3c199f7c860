import WebSocket from 'ws';

// The WebSocket clients of feed.bench.ts, run in a child process so that their
// work (receiving, UTF-8 checking) does not run on the server's event loop or
// in its V8 heap. Per message a client records only the cursor (read from the
// first bytes) and the time of receipt on the monotonic clock, which both
// processes share (process.hrtime is CLOCK_MONOTONIC); the parent turns them
// into latencies with the send times it kept per cursor.
//
// Parent -> child: {pools: Pool[]}, then {collect: true}, or {count: true}.
// Child -> parent: {ready: true} once every client of every pool is connected
// (and, for stream pools, has seen its "live" message); {counts: number[]};
// {results: {cursors: Float64Array, times: Float64Array}[]}; {error}.

interface Pool {
  url: string;
  protocols: string[];
  /** One query string per client (appended to url), or empty for none. */
  queries: string[];
  /** Ready on the stream's "live" message rather than on open. */
  waitLive: boolean;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const send = (m: unknown) => process.send!(m);

class Recorder {
  cursors = new Float64Array(1 << 16);
  times = new Float64Array(1 << 16);
  n = 0;
  add(cursor: number, t: number): void {
    if (this.n === this.cursors.length) {
      const c = new Float64Array(this.n * 2);
      c.set(this.cursors);
      this.cursors = c;
      const t2 = new Float64Array(this.n * 2);
      t2.set(this.times);
      this.times = t2;
    }
    this.cursors[this.n] = cursor;
    this.times[this.n++] = t;
  }
}

let pools: Pool[] = [];
const recs: Recorder[] = [];
const sockets: WebSocket[] = [];
let waiting = 0;
const CURSOR = /"cursor":(\d+)/;

function start(): void {
  for (const [i, p] of pools.entries()) {
    const rec = new Recorder();
    recs.push(rec);
    for (const q of p.queries) {
      waiting++;
      const ws = new WebSocket(q ? `${p.url}?${q}` : p.url, p.protocols);
      sockets.push(ws);
      let ready = false;
      const isReady = () => {
        if (ready) return;
        ready = true;
        if (--waiting === 0) send({ ready: true });
      };
      ws.on('message', (d: Buffer) => {
        const t = nowMs();
        const head = d.toString('latin1', 0, 48);
        if (head.startsWith('{"type":"live"')) return isReady();
        const m = CURSOR.exec(head);
        if (m) rec.add(Number(m[1]), t);
        else send({ error: `pool ${i}: unexpected message ${head}` });
      });
      if (!p.waitLive) ws.on('open', isReady);
      ws.on('error', (e) => send({ error: `pool ${i}: ${e.message}` }));
    }
  }
}

process.on('message', (m: { pools?: Pool[]; count?: boolean; collect?: boolean }) => {
  if (m.pools) {
    pools = m.pools;
    start();
  } else if (m.count) {
    send({ counts: recs.map((r) => r.n) });
  } else if (m.collect) {
    send({ results: recs.map((r) => ({ cursors: r.cursors.subarray(0, r.n), times: r.times.subarray(0, r.n) })) });
    for (const ws of sockets) ws.terminate();
  }
});
