import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRootLogger } from '../shared/log/logger.js';
import { ModuleManager } from './module-manager.js';
import type { AgentModule, Lingering, ModuleContext } from './module.js';

const fast = { initialMs: 5, maxMs: 20, jitter: false };
const base = {} as Omit<ModuleContext, 'log' | 'files'>;
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
};

/** A cilium module that fails its first `failures` runs, then runs until aborted. */
function flaky(failures: number) {
  const runs: string[] = [];
  const mod: AgentModule<{ hubble_relay_address: string }> = {
    name: 'cilium',
    run: (block, _ctx, signal) => {
      runs.push(block.hubble_relay_address);
      if (runs.length <= failures) return Promise.reject(new Error('relay unreachable'));
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    },
  };
  return { mod, runs };
}

const config = (relay: string) => ({ cilium: { hubble_relay_address: relay } });

/**
 * The clock becomes the test's: the manager's backoff and grace timers fire
 * only when the test moves time on, so what happens within a delay does not
 * depend on the machine's speed.
 */
const fakeClock = () => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
/** Whether `p` has settled once the clock has moved on `ms`. */
async function settledAfter(p: Promise<unknown>, ms: number): Promise<() => boolean> {
  let over = false;
  void p.then(() => (over = true));
  await vi.advanceTimersByTimeAsync(ms);
  return () => over;
}

describe('ModuleManager', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs a module that failed again after a backoff, with the same configuration', async () => {
    const { mod, runs } = flaky(2);
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast);
    await m.apply(config('relay:4245'), []);
    await until(() => runs.length === 3);
    expect(runs).toEqual(['relay:4245', 'relay:4245', 'relay:4245']);
    expect(m.runningModules).toEqual(['cilium']);
    await m.stopAll();
    expect(m.runningModules).toEqual([]);
  });

  it('restarts a module only when its own block changes, and stops it when the block goes', async () => {
    const { mod, runs } = flaky(0);
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast);
    await m.apply(config('a:1'), []);
    await m.apply(config('a:1'), []);
    await until(() => runs.length === 1);
    await m.apply(config('b:2'), []);
    await until(() => runs.length === 2);
    expect(runs).toEqual(['a:1', 'b:2']);
    await m.apply({}, []);
    expect(m.runningModules).toEqual([]);
  });

  it('restarts a module whose block is unchanged when the agent name changes (a kept configuration of another agent)', async () => {
    const names: string[] = [];
    const mod: AgentModule<{ hubble_relay_address: string }> = {
      name: 'cilium',
      run: (_block, ctx, signal) => {
        names.push(ctx.agentName);
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      },
    };
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast);
    await m.apply(config('a:1'), [], 'old');
    await m.apply(config('a:1'), [], 'old');
    await until(() => names.length === 1);
    await m.apply(config('a:1'), [], 'new');
    await until(() => names.length === 2);
    expect(names).toEqual(['old', 'new']);
    await m.stopAll();
  });

  it('stops waiting to restart a failing module when its block is removed', async () => {
    fakeClock();
    const { mod, runs } = flaky(1_000);
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), { initialMs: 60_000, maxMs: 60_000, jitter: false });
    await m.apply(config('relay:4245'), []);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toHaveLength(1);
    // Stopped with no time passing: not after the 60 s backoff it would otherwise sit out.
    const stopped = await settledAfter(m.apply({}, []), 0);
    expect(stopped()).toBe(true);
    expect(m.runningModules).toEqual([]);
    expect(runs).toHaveLength(1);
  });

  it('lets work a stopped module left in flight finish on a restart, and ends it after the grace when the agent stops', async () => {
    // Each run leaves one piece of work (a watch) that ends only when ended or finished by the test.
    const left: { ended: boolean; finish: () => void; over: boolean }[] = [];
    const mod: AgentModule<{ hubble_relay_address: string }> = {
      name: 'cilium',
      run: async (_block, _ctx, signal): Promise<Lingering> => {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        let finish: () => void = () => undefined;
        const w = { ended: false, over: false, finish: () => finish() };
        const done = new Promise<void>((resolve) => (finish = resolve)).then(() => {
          w.over = true;
        });
        left.push(w);
        return {
          done,
          end: () => {
            w.ended = true;
            w.finish();
          },
        };
      },
    };
    fakeClock();
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast, 300);
    await m.apply(config('a:1'), []);
    await m.apply(config('b:2'), []);
    // The restart neither waited for the first run's work nor ended it, not even past the grace.
    expect(left).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(400);
    expect(left[0]!.ended).toBe(false);

    // Stopping: both pieces of work get the whole grace, and are ended when it is over.
    const stopped = await settledAfter(m.stopAll(), 299);
    expect(stopped()).toBe(false);
    expect(left.map((w) => [w.ended, w.over])).toEqual([
      [false, false],
      [false, false],
    ]);
    await vi.advanceTimersByTimeAsync(1);
    expect(stopped()).toBe(true);
    expect(left.map((w) => [w.ended, w.over])).toEqual([
      [true, true],
      [true, true],
    ]);
  });

  it('does not end work that finishes within the grace, nor wait the grace out', async () => {
    let ended = false;
    const mod: AgentModule<{ hubble_relay_address: string }> = {
      name: 'cilium',
      run: async (_block, _ctx, signal): Promise<Lingering> => {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return { done: new Promise((r) => setTimeout(r, 50)), end: () => (ended = true) };
      },
    };
    fakeClock();
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast, 10_000);
    await m.apply(config('a:1'), []);
    // Stopped once the work is over (50 ms), not at the end of the 10 s grace.
    const stopped = await settledAfter(m.stopAll(), 50);
    expect(stopped()).toBe(true);
    expect(ended).toBe(false);
  });

  it('stops even when work it ended never settles: one more grace, then without it', async () => {
    let ended = false;
    const mod: AgentModule<{ hubble_relay_address: string }> = {
      name: 'cilium',
      run: async (_block, _ctx, signal): Promise<Lingering> => {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return { done: new Promise(() => undefined), end: () => (ended = true) };
      },
    };
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast, 100);
    await m.apply(config('a:1'), []);
    await m.stopAll();
    expect(ended).toBe(true);
  });
});
