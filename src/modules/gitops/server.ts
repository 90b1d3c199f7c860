import { GitOpsService } from '../../gen/verdict/gitops.js';
import type { ServerModule } from '../../server/module.js';
import { type GitopsConfig, gitopsBlock } from './config.js';
import { objectsService } from './objects-service.js';
import { reportService, serverState } from './report-service.js';
import { projectSyncSchema, SyncStatusStore } from './sync-status.js';

// The server part of GitOps: the block's schema, the service that streams
// manifest projects' files to the agent and takes its sync reports, and the
// agents API's gitops part (each project's last sync). start() opens the sync
// status tables; the gRPC handlers reach them through the server's config.
export const gitopsServer: ServerModule<'gitops', GitopsConfig> = {
  name: 'gitops',
  config: gitopsBlock,
  grpcServices: (ctx) => {
    const objects = objectsService(ctx);
    return [{ definition: GitOpsService, implementation: { ...objects.implementation, reportSync: reportService(ctx) } }];
  },
  async start(ctx) {
    serverState.set(ctx.config, { status: new SyncStatusStore(ctx.db), alerts: ctx.alerts });
    return {
      async close() {
        serverState.delete(ctx.config);
      },
    };
  },
  agentStatus: {
    schema: {
      type: 'object',
      properties: { projects: { type: 'array', items: projectSyncSchema, description: "each manifest project's last sync the agent reported" } },
      required: ['projects'],
      additionalProperties: false,
    },
    view: (config, agent) => ({ projects: serverState.get(config)?.status.projects(agent) ?? [] }),
  },
};
