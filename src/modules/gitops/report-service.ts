import * as grpc from '@grpc/grpc-js';
import type { SyncReport, SyncReportAck } from '../../gen/verdict/gitops.js';
import type { ModuleAlerts, ServerModuleContext } from '../../server/module.js';
import type { ServerConfig } from '../../shared/config/server-config.js';
import { fingerprint } from '../../shared/alert/fingerprint.js';
import { ALERT_SCHEMA, type AlertPayload } from '../../shared/alert/payload.js';
import type { IncomingEvent } from '../../server/store/types.js';
import { errText } from '../../shared/log/logger.js';
import type { RemovedProjects } from './removed-projects.js';
import type { SyncStatusStore } from './sync-status.js';

// ReportSync: the agent's report of one sync -> the latest per project (the
// agents API) -> gitops alerts. A failed object, a sync that could not run,
// and each object corrected after drift is one alert (fingerprint: agent's
// project + object + what happened), raised as an agent's event so repeats
// fold into it. A sync without failures and without drift resolves what the
// project raised before (status change by actor 'gitops', in the alert's
// history); one with drift resolves all but the drift it raised itself.

export const ACTOR = 'gitops';
/** The alerts' rules; SyncStatusStore.openInStore finds them by these (the store's rule index). */
export const RULE_FAILED = 'gitops-sync-failed';
export const RULE_DRIFT = 'gitops-drift-corrected';
const MAX_OBJECTS = 200;

/** What start() made for a server: ReportSync and the agents API reach it through the server's config object. */
export interface GitopsServerState {
  status: SyncStatusStore;
  alerts: ModuleAlerts;
  removed: RemovedProjects;
}
export const serverState = new WeakMap<ServerConfig, GitopsServerState>();

type Call = grpc.ServerUnaryCall<SyncReport, SyncReportAck>;

export function projectName(id: string): string {
  return id || '(configuration project)';
}

/**
 * The project's gitops alerts not yet seen resolved: those this server raised, and those open in its store
 * (raised by another replica before the agent came here).
 */
export function projectAlerts(status: SyncStatusStore, agent: string, projectId: string): string[] {
  return [...new Set([...status.raised(agent, projectId), ...status.openInStore(agent, projectName(projectId), [RULE_FAILED, RULE_DRIFT])])];
}

/** The alerts a report stands for, by fingerprint. */
export function alertsOf(agent: string, r: SyncReport, at: string): Map<string, AlertPayload> {
  const out = new Map<string, AlertPayload>();
  const project = projectName(r.project_id);
  const add = (kind: 'failed' | 'drift' | 'error', object: string, source: string, reason: string) => {
    const fp = fingerprint(['gitops', agent, r.project_id, kind, object]);
    const failed = kind !== 'drift';
    out.set(fp, {
      schema: ALERT_SCHEMA,
      source: 'gitops',
      fingerprint: fp,
      severity: failed ? 'high' : 'medium',
      title:
        kind === 'error'
          ? `GitOps sync of ${project} could not run`
          : kind === 'failed'
            ? `GitOps sync failed: ${object}`
            : `GitOps corrected drift: ${object}`,
      description:
        kind === 'error'
          ? `Commit ${r.commit_id} of ${project}: ${reason}`
          : kind === 'failed'
            ? `${object}${source ? ` (${source})` : ''} of ${project} at commit ${r.commit_id}: ${reason}`
            : `${object}${source ? ` (${source})` : ''} of ${project} was changed in the cluster behind GitOps; the re-apply of commit ${r.commit_id} put it back`,
      cluster: '',
      namespace: namespaceOf(object),
      count: 1,
      first_seen: at,
      last_seen: at,
      policies: [],
      rule: kind === 'drift' ? RULE_DRIFT : RULE_FAILED,
      labels: {
        project: project,
        commit: r.commit_id,
        ...(object ? { object } : {}),
        ...(source ? { file: source } : {}),
        ...(reason ? { reason: reason.slice(0, 1000) } : {}),
      },
      samples: [],
    });
  };
  if (r.error) add('error', '', '', r.error);
  for (const o of r.objects) {
    if (o.action === 'failed') add('failed', o.object, o.source, o.reason);
    else if (r.drift_corrected) add('drift', o.object, o.source, '');
  }
  return out;
}

/** "apps/Deployment shop/web" -> "shop"; cluster-scoped objects have no namespace. */
function namespaceOf(object: string): string {
  const name = object.split(' ')[1] ?? '';
  const i = name.indexOf('/');
  return i > 0 ? name.slice(0, i) : '';
}

export function reportService(ctx: ServerModuleContext): grpc.UntypedHandleCall {
  const handle = async (call: Call, answer: grpc.sendUnaryData<SyncReportAck>) => {
    // admit() is made for streams: it refuses by emitting 'error' (a unary
    // call has no listener of its own, so it is answered here) and untracks
    // the call on 'finish' (emitted once the answer is sent).
    let answered = false;
    const done: grpc.sendUnaryData<SyncReportAck> = (err, value) => {
      if (answered) return;
      answered = true;
      answer(err, value);
      call.emit('finish');
    };
    call.on('error', (e: grpc.ServerErrorResponse) => done(e));
    const agent = ctx.admit(call as never, 'ReportSync', { perCall: true });
    if (!agent) return;
    const state = serverState.get(ctx.config);
    if (!state) return done({ code: grpc.status.UNAVAILABLE, details: 'GitOps: the server is starting' });
    const r = call.request;
    const log = ctx.log.child({ agent_name: agent.name, project_id: projectName(r.project_id), commit_id: r.commit_id });
    try {
      const objects = r.objects.slice(0, MAX_OBJECTS).map((o) => ({ object: o.object, source: o.source, action: o.action, reason: o.reason }));
      const finishedAt = Number.isNaN(Date.parse(r.finished_at)) ? new Date().toISOString() : new Date(r.finished_at).toISOString();
      state.status.record(agent.name, {
        project_id: r.project_id,
        commit_id: r.commit_id,
        ok: r.ok,
        error: r.error,
        applied: r.applied,
        changed: r.changed,
        unchanged: r.unchanged,
        pruned: r.pruned,
        failed: r.failed,
        duration_ms: r.duration_ms,
        drift_corrected: r.drift_corrected,
        objects,
        finished_at: finishedAt,
      });
      const raisedNow = alertsOf(agent.name, { ...r, objects }, finishedAt);
      const before = projectAlerts(state.status, agent.name, r.project_id);
      if (r.ok) {
        // A good sync: what the project raised before is over, except the drift this very sync corrected.
        const over = before.filter((f) => !raisedNow.has(f));
        if (over.length) {
          const n = await state.alerts.resolve(agent.name, 'gitops', over, ACTOR);
          log.info({ resolved: n }, 'GitOps: sync succeeded; resolved its earlier alerts');
        }
      }
      if (raisedNow.size) {
        const events: IncomingEvent[] = [...raisedNow.values()].map((payload) => ({
          id: `gitops:${agent.name}:${r.project_id}:${r.commit_id}:${payload.fingerprint}:${finishedAt}`,
          payload,
        }));
        await state.alerts.raise(agent.name, events);
      }
      state.status.setRaised(agent.name, r.project_id, r.ok ? [...raisedNow.keys()] : [...new Set([...before, ...raisedNow.keys()])]);
      done(null, {});
      // A report on a project the agent's configuration has dropped since (a retry of the reporter before the module restarted) does not stay.
      void state.removed.check(agent.name);
    } catch (e) {
      log.error({ error: errText(e) }, 'GitOps: failed to record a sync report');
      done({ code: grpc.status.UNAVAILABLE, details: `GitOps: failed to record the sync report: ${errText(e)}` });
    }
  };
  return (call: Call, done: grpc.sendUnaryData<SyncReportAck>) => void handle(call, done);
}
