import { GitOpsService } from '../../gen/verdict/gitops.js';
import type { ServerModule } from '../../server/module.js';
import { type GitopsConfig, gitopsBlock } from './config.js';
import { DEFAULT_POLL_INTERVAL_MS, objectsService } from './objects-service.js';
import { RemovedProjects } from './removed-projects.js';
import { RULE_DRIFT, RULE_FAILED, reportService, serverState } from './report-service.js';
import { projectSyncingSchema, projectSyncSchema, SyncStatusStore } from './sync-status.js';

/** Alertmanager's alertname by rule, so a receiver can route a failed sync and corrected drift apart. */
const ALERTNAMES: Readonly<Record<string, string>> = { [RULE_FAILED]: 'GitOpsSyncFailed', [RULE_DRIFT]: 'GitOpsDriftCorrected' };

// The server part of GitOps: the block's schema, the service that streams
// manifest projects' files to the agent and takes its sync reports, and the
// agents API's gitops part (each project's last sync). start() opens the sync
// status tables and drops projects that left an agent's configuration; the
// gRPC handlers reach them through the server's config.
export const gitopsServer: ServerModule<'gitops', GitopsConfig> = {
  name: 'gitops',
  config: gitopsBlock,
  grpcServices: (ctx) => {
    const objects = objectsService(ctx);
    return [{ definition: GitOpsService, implementation: { ...objects.implementation, reportSync: reportService(ctx) } }];
  },
  async start(ctx) {
    const status = new SyncStatusStore(ctx.db);
    const removed = new RemovedProjects({ status, alerts: ctx.alerts, agents: ctx.agents, log: ctx.log });
    serverState.set(ctx.config, { status, alerts: ctx.alerts, removed });
    // Projects dropped from an agent's configuration get no report again: checked at the pace the server reads refs,
    // so their alerts resolve without anyone opening the Agents view (a check costs a git read only once per commit).
    const sweep = setInterval(() => {
      for (const a of ctx.agents.list()) void removed.check(a.name);
    }, ctx.config.gitops_poll_interval ?? DEFAULT_POLL_INTERVAL_MS);
    sweep.unref();
    return {
      async close() {
        clearInterval(sweep);
        removed.close();
        serverState.delete(ctx.config);
      },
    };
  },
  alertSource: {
    source: 'gitops',
    // Raised here from the agents' sync reports; an agent sending one would be forging it.
    fromAgent: false,
    monitoringTool: 'Verdict (GitOps)',
    alertname: (a) => ALERTNAMES[a.rule] ?? 'GitOps',
  },
  agentStatus: {
    schema: {
      type: 'object',
      properties: {
        projects: { type: 'array', items: projectSyncSchema, description: "each manifest project's last sync the agent reported" },
        syncing: {
          type: 'array',
          items: projectSyncingSchema,
          description: 'the syncs under way: a commit the server sent the agent, not reported yet (a first sync, or a newer commit than in projects)',
        },
      },
      required: ['projects', 'syncing'],
      additionalProperties: false,
    },
    view: (config, agent) => {
      const state = serverState.get(config);
      if (!state) return { projects: [], syncing: [] };
      // Rows of projects the configuration no longer lists are hidden at once, and dropped by the check.
      void state.removed.check(agent);
      const listed = state.removed.listed(agent);
      const shown = (p: { project_id: string }) => !listed || listed.has(p.project_id);
      return { projects: state.status.projects(agent).filter(shown), syncing: state.status.syncing(agent).filter(shown) };
    },
  },
};
