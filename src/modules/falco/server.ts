import type { ServerModule } from '../../server/module.js';
import { falcoBlock, type FalcoConfig } from './config.js';

/** Server part of the Falco module: its events reach the server as alerts, so only its block is validated here. */
export const falcoServer: ServerModule<'falco', FalcoConfig> = { name: 'falco', config: falcoBlock };
