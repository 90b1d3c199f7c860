import type { ServerModule } from '../../server/module.js';
import { gitopsBlock, type GitopsConfig } from './config.js';

export const gitopsServer: ServerModule<'gitops', GitopsConfig> = { name: 'gitops', config: gitopsBlock };
