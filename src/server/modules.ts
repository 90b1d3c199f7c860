import { ciAccessServer } from '../modules/ci-access/server.js';
import { ciliumServer } from '../modules/cilium/server.js';
import { falcoServer } from '../modules/falco/server.js';
import { gitopsServer } from '../modules/gitops/server.js';

// The server's module registry: a module is added by writing src/modules/<name>/
// and naming its server part here (and its agent part in src/agent/modules.ts).
export const serverModules = [ciliumServer, falcoServer, gitopsServer, ciAccessServer] as const;
