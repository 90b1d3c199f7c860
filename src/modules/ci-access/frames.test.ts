import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
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
