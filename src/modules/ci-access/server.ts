import type { ServerModule } from '../../server/module.js';
import { ciAccessBlock } from './config.js';

export const ciAccessServer: ServerModule<'ci_access', undefined> = { name: 'ci_access', config: ciAccessBlock };
