import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { type DataSink, pipeFrames } from './frames.js';

// A stand-in for a Connect call: records each data frame's buffer and runs the
// write's callback, or never does (a call torn down in the middle of a write).
function sink(runCallbacks: boolean): DataSink & { frames: Buffer[]; firsts: number[] } {
  const frames: Buffer[] = [];
  const firsts: number[] = [];
  return {
    frames,
    firsts,
    destroyed: false,
    writableEnded: false,
    write(frame, done) {
      frames.push(frame.msg.value);
      // Read at the write: a reused buffer holds a later frame afterwards.
      firsts.push(frame.msg.value[0]!);
      if (runCallbacks) done?.();
      return true;
    },
    once: () => undefined,
  };
}

/** Pipes `frames` bodies of `bytes` each through `call`, one frame per turn of the event loop. */
async function send(call: DataSink, frames: number, bytes: number): Promise<void> {
  const from = new PassThrough();
  const ended = new Promise<void>((resolve) => pipeFrames(from, call, resolve));
  for (let i = 0; i < frames; i++) {
    from.write(Buffer.alloc(bytes, i));
    await new Promise((r) => setImmediate(r));
  }
  from.end();
  await ended;
}

describe('pipeFrames buffer pool', () => {
  it('builds large frames in buffers used again, also after many calls lost buffers that never came back', async () => {
    // Many calls whose writes' callbacks never run: their buffers may still be held by grpc-js, so they are not reused.
    for (let i = 0; i < 20; i++) {
      const lost = sink(false);
      await send(lost, 2, 64 << 10);
      expect(new Set(lost.frames.map((f) => f.buffer)).size).toBe(2);
    }
    // A call whose writes complete: its frames are built in the same few buffers again.
    const ok = sink(true);
    await send(ok, 10, 64 << 10);
    expect(ok.frames).toHaveLength(10);
    expect(ok.frames.map((f) => f.length)).toEqual(Array(10).fill(64 << 10));
    expect(ok.firsts).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new Set(ok.frames.map((f) => f.buffer)).size).toBe(1);
  });
});

describe('pipeFrames linger', () => {
  /**
   * Writes 40 pieces of 4 KiB, one a millisecond of a fake clock, as the API server sends a gzip list; resolves
   * with the frames. The clock is fake so that a loaded machine's late timers do not change the count.
   */
  async function trickle(lingerMs: number | undefined): Promise<Buffer[]> {
    // Copied at the write: a pooled buffer holds a later frame afterwards.
    const frames: Buffer[] = [];
    const call: DataSink = {
      destroyed: false,
      writableEnded: false,
      write(frame, done) {
        frames.push(Buffer.from(frame.msg.value));
        done?.();
        return true;
      },
      once: () => undefined,
    };
    const from = new PassThrough();
    const ended = new Promise<void>((resolve) => pipeFrames(from, call, resolve, lingerMs ? { lingerMs } : {}));
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      for (let i = 0; i < 40; i++) {
        from.write(Buffer.alloc(4096, i));
        // A real turn, so the piece reaches pipeFrames and its end-of-turn flush (setImmediate, not faked) runs.
        await new Promise((r) => setImmediate(r));
        vi.advanceTimersByTime(1);
      }
      from.end();
      await ended;
    } finally {
      vi.useRealTimers();
    }
    return frames;
  }

  it('gathers a body read whole into few frames, in order; without it each turn is a frame', async () => {
    const lingered = await trickle(10);
    const turns = await trickle(undefined);
    const bytes = (fs: Buffer[]) => Buffer.concat(fs);
    const want = Buffer.concat(Array.from({ length: 40 }, (_, i) => Buffer.alloc(4096, i)));
    expect(bytes(lingered).equals(want)).toBe(true);
    expect(bytes(turns).equals(want)).toBe(true);
    expect(turns.length).toBe(40);
    // 40 pieces over 40 ms: a frame per 10 ms, and what came after the last at the end.
    expect(lingered.length).toBeLessThanOrEqual(5);
  });
});
