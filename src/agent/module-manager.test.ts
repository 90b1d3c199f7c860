import { describe, expect, it } from 'vitest';
import { createRootLogger } from '../shared/log/logger.js';
import { ModuleManager } from './module-manager.js';
import type { AgentModule, ModuleContext } from './module.js';

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
});
