import type { ServerModule } from '../../server/module.js';
import { type GitopsConfig, gitopsBlock } from './config.js';
import { objectsService } from './objects-service.js';

// The server part of GitOps: the block's schema, and the service that streams
// manifest projects' files to the agent through the tunnel.
export const gitopsServer: ServerModule<'gitops', GitopsConfig> = {
  name: 'gitops',
  config: gitopsBlock,
  grpcServices: (ctx) => [objectsService(ctx)],
};
