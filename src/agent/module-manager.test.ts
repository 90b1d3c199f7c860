import { describe, expect, it } from 'vitest';
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

describe('ModuleManager', () => {
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

  it('stops waiting to restart a failing module when its block is removed', async () => {
    const { mod, runs } = flaky(1_000);
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), { initialMs: 60_000, maxMs: 60_000, jitter: false });
    await m.apply(config('relay:4245'), []);
    const t0 = Date.now();
    await m.apply({}, []);
    // Far below the 60 s backoff it would otherwise sit out; loose enough for a loaded machine.
    expect(Date.now() - t0).toBeLessThan(10_000);
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
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast, 300);
    await m.apply(config('a:1'), []);
    await m.apply(config('b:2'), []);
    // The restart neither waited for the first run's work nor ended it.
    expect(left).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(left[0]!.ended).toBe(false);

    const t0 = Date.now();
    await m.stopAll();
    const took = Date.now() - t0;
    expect(left.map((w) => [w.ended, w.over])).toEqual([
      [true, true],
      [true, true],
    ]);
    expect(took).toBeGreaterThanOrEqual(290);
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
    const m = new ModuleManager([mod], base, createRootLogger({ level: 'silent' }), fast, 10_000);
    await m.apply(config('a:1'), []);
    const t0 = Date.now();
    await m.stopAll();
    expect(ended).toBe(false);
    // Far below the 10 s grace; loose enough for a loaded machine.
    expect(Date.now() - t0).toBeLessThan(5_000);
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
