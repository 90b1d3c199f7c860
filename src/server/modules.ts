import { ciAccessServer } from '../modules/ci-access/server.js';
import { ciliumServer } from '../modules/cilium/server.js';
import { falcoServer } from '../modules/falco/server.js';
import { gitopsServer } from '../modules/gitops/server.js';
import type { ModuleAlertSource } from './module.js';

// The server's module registry: a module is added by writing src/modules/<name>/
// and naming its server part here (and its agent part in src/agent/modules.ts).
export const serverModules = [ciliumServer, falcoServer, gitopsServer, ciAccessServer] as const;

/** The alert sources the modules declare, by source: read once, where alerts are checked and named. */
export const moduleAlertSources: ReadonlyMap<string, ModuleAlertSource> = new Map(
  serverModules.flatMap((m): [string, ModuleAlertSource][] => (m.alertSource ? [[m.alertSource.source, m.alertSource]] : [])),
);
