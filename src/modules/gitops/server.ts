import type { ServerModule } from '../../server/module.js';
import { gitopsBlock } from './config.js';

export const gitopsServer: ServerModule<'gitops', undefined> = { name: 'gitops', config: gitopsBlock };
