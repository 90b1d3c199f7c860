import type { SyncSettings } from '../../src/modules/gitops/sync.js';

/** The original's defaults, with timeouts short enough for tests. */
export const defaultsForTest: SyncSettings = {
  defaultNamespace: 'default',
  dryRun: 'none',
  prune: true,
  pruneTimeoutMs: 30_000,
  propagation: 'foreground',
  inventoryPolicy: 'must_match',
  reconcileTimeoutMs: 30_000,
};
