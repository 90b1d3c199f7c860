import type { ServerModule } from '../../server/module.js';
import { gitopsBlock } from './config.js';
import { objectsService } from './objects-service.js';

// The server part of GitOps: the block's schema, and the service that streams
// manifest projects' files to the agent through the tunnel.
export const gitopsServer: ServerModule<'gitops', undefined> = {
  name: 'gitops',
  config: gitopsBlock,
  grpcServices: (ctx) => [objectsService(ctx)],
};
