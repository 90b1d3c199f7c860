import type { ServerModule } from '../../server/module.js';
import { ciAccessBlock, type CiAccessConfig } from './config.js';

export const ciAccessServer: ServerModule<'ci_access', CiAccessConfig> = { name: 'ci_access', config: ciAccessBlock };
