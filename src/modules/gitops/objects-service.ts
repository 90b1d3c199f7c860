import * as grpc from '@grpc/grpc-js';
import { existsSync } from 'node:fs';
import { GitOpsService, type ObjectsToSynchronizeRequest, type ObjectsToSynchronizeResponse } from '../../gen/verdict/gitops.js';
import { headCommit, projectGone, resolveCommit } from '../../server/config/git-project.js';
import type { ModuleGrpcService, ServerModuleContext } from '../../server/module.js';
import { type ErrorCode, isVerdictError, VerdictError } from '../../shared/errors.js';
import { errText } from '../../shared/log/logger.js';
import { retryLoop } from '../../shared/retry/loop.js';
import { refSpec } from './git-ref.js';
import { MAX_PATHS, readFiles, selectFiles, type Selection } from './manifest-files.js';
import { resolveProject } from './project-repos.js';
import { serverState } from './report-service.js';
import { configuredProjects, sharedRepository } from './configured-projects.js';
import { entryName } from './config.js';
import { logNewCommit } from './new-commit-log.js';

// GetObjectsToSynchronize, as the GitLab agent server serves it: poll the
// project's ref until it points at a commit the agent has not synchronised,
// then send one batch (header, the files in chunks, trailer) and end. Data
// flows one way: ref poll -> file selection -> chunked objects.

/** The original's chunk size: a file larger than this spans consecutive Object messages. */
export const CHUNK_BYTES = 128 * 1024;
export const DEFAULT_POLL_INTERVAL_MS = 20_000;

type Call = grpc.ServerWritableStream<ObjectsToSynchronizeRequest, ObjectsToSynchronizeResponse>;

/**
 * What the agent is refused with: a VerdictError whose grpcStatus is the status sent (INVALID_ARGUMENT for a bad
 * request or ref, NOT_FOUND for an unknown project or ref, FAILED_PRECONDITION for files the project must change, or
 * an entry of config.yaml naming a repository an earlier entry names);
 * anything else is UNAVAILABLE (VERDICT_UNAVAILABLE), which the agent retries.
 */
const REFUSALS = ['VERDICT_BAD_REQUEST', 'VERDICT_NOT_FOUND', 'VERDICT_MANIFEST_FILES', 'VERDICT_CONFIG_INVALID'] as const satisfies readonly ErrorCode[];

/** A step's error of `code` as the refusal sent, its message prefixed with where; any other error as it is. */
function refusal(e: unknown, code: (typeof REFUSALS)[number], prefix: string): unknown {
  return isVerdictError(e, code) ? new VerdictError(code, `${prefix}${e.message}`, { cause: e }) : e;
}

/** Resolves when the signal aborts, or at once when it has: a stream may be ended while git is read for it. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
}

/**
 * Writes with backpressure, so a 20 MiB project is not buffered twice. Settles on the abort too: a call ended or failed
 * meanwhile never drains (an agent that stopped reading), and serve() must still finish.
 */
function write(call: Call, msg: ObjectsToSynchronizeResponse, signal: AbortSignal): Promise<void> {
  if (signal.aborted || call.write(msg)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The abort's reason when the agent moved to another configuration project: the stream then ends cleanly. */
const MOVED = Symbol('moved');

export function objectsService(ctx: ServerModuleContext): ModuleGrpcService {
  const intervalMs = ctx.config.gitops_poll_interval ?? DEFAULT_POLL_INTERVAL_MS;

  /** Two entries of config.yaml for one repository would fight over its objects: the later one is refused, saying which. */
  function refuseSecondEntry(agent: { name: string; config_project: string }, ids: readonly string[] | undefined, projectId: string, repo: string): void {
    const shared = sharedRepository(ids, agent.name, projectId, repo, (id) => resolveProject(id, agent.config_project, ctx.config.projects_dir).repo);
    if (!shared) return;
    throw new VerdictError(
      'VERDICT_CONFIG_INVALID',
      `GitOps: ${shared.file}: gitops.manifest_projects[${shared.index}] (${entryName(shared.id)}) names the repository gitops.manifest_projects[${shared.earlier}] ` +
        `(${entryName(shared.earlierId)}) already synchronises; two entries would apply its objects under two inventories, each refusing or pruning the other's: ` +
        'remove one of the two (keep the one whose inventory owns the objects in the cluster)',
    );
  }

  async function serve(call: Call): Promise<void> {
    const agent = ctx.admit(call, 'GetObjectsToSynchronize');
    if (!agent) return;
    const abort = new AbortController();
    // A hang-up, or a revoked token (the core ends the call with an error), stops the poll.
    for (const ev of ['cancelled', 'error']) call.on(ev, () => abort.abort());
    const req = call.request;
    const log = ctx.log.child({ agent_name: agent.name, project_id: req.project_id || '(configuration project)' });
    let unfollow: (() => void) | undefined;
    let ended = false;
    // While it is open the agent is here: a sync this server sent it shows as under way (sync-status.ts).
    const closed = serverState.get(ctx.config)?.status.streamOpened(agent.name, req.project_id);
    // The configuration the agent runs: a moved agent keeps its last configuration until the new project has a valid
    // one, and its configuration project's manifests come from the old project meanwhile.
    const served = ctx.servedConfigOf(agent);
    const own = { name: agent.name, config_project: served?.project ?? agent.config_project };
    // Moved away from (or back from) the project whose config.yaml it runs: the agent no longer follows that project,
    // so a commit pushed there since the one it runs must not be applied or pruned. The entry without id is served
    // at that commit, and the stream ends when the agent is sent another configuration.
    const pinned = served && served.project !== agent.config_project ? served.commit : undefined;
    try {
      if (req.paths.length > MAX_PATHS) {
        throw new VerdictError('VERDICT_BAD_REQUEST', `invalid ObjectsToSynchronizeRequest.Paths: value must contain no more than ${MAX_PATHS} item(s)`);
      }
      const project = (() => {
        try {
          return resolveProject(req.project_id, own.config_project, ctx.config.projects_dir);
        } catch (e) {
          throw refusal(e, 'VERDICT_NOT_FOUND', 'GitOps: ');
        }
      })();
      const fromConfigProject = project.repo === own.config_project;
      // Served from the configuration project: once the agent runs another project's config.yaml (it was moved, and
      // that configuration reached it), the stream ends cleanly (below, once serve() stops), and the agent asks
      // again at once, for the entry as the new project has it. Followed before anything is awaited: a configuration
      // stream arriving meanwhile (a reconnect) tells what the agent runs, and must find this stream to end it.
      if (fromConfigProject) unfollow = ctx.followConfigProject(agent.name, served?.project ?? '', () => abort.abort(MOVED), pinned);
      // The entries of the config.yaml the agent runs (undefined: none valid at the commit read).
      const ids = await configuredProjects(
        own.config_project,
        agent.name,
        served?.commit ?? (await headCommit(own.config_project).catch((e: unknown) => Promise.reject(refusal(e, 'VERDICT_NOT_FOUND', 'GitOps: ')))),
      );
      if (fromConfigProject && served === undefined && ids === undefined) {
        // Which project's config.yaml the agent runs is not known here (this server restarted; or the agent came
        // from another replica, restarted, was sent a configuration elsewhere, or is another agent registered under the
        // name), and the registered one has no valid config.yaml for it: the agent runs an older project's (it was
        // moved), or none. Served from the registered project, its entry would read a commit without its manifests and
        // prune what it applied. Its configuration stream ends this one once a configuration is sent (servedFrom), and
        // the agent asks again.
        log.debug("GitOps: holding the configuration project's objects until the agent is sent a configuration");
        await aborted(abort.signal);
        return;
      }
      refuseSecondEntry(own, ids, req.project_id, project.repo);
      const ref = (() => {
        try {
          return refSpec(req.ref);
        } catch (e) {
          throw refusal(e, 'VERDICT_BAD_REQUEST', 'GitOps: ');
        }
      })();

      // The poll: nothing is sent while the ref stays at the agent's commit.
      let commit: string | undefined;
      let failure: unknown;
      await retryLoop({ backoff: { initialMs: intervalMs, maxMs: intervalMs, jitter: false }, signal: abort.signal }, async () => {
        try {
          const c = fromConfigProject && pinned !== undefined ? pinned : await resolveCommit(project.repo, ref.rev);
          if (!c)
            throw new VerdictError(
              'VERDICT_NOT_FOUND',
              `GitOps: repository poll failed: NotFound: file/directory/ref not found: ${ref.name} of project ${project.id}`,
            );
          if (c === req.commit_id) {
            if (!ref.pinned && (!fromConfigProject || pinned === undefined)) return 'backoff';
            // A pinned commit never changes: wait for the agent to hang up (or, pinned by a move, for its next configuration).
            await aborted(abort.signal);
            return 'done';
          }
          commit = c;
        } catch (e) {
          failure = e;
        }
        return 'done';
      });
      if (failure) throw failure;
      if (!commit || abort.signal.aborted) return;

      logNewCommit(ctx.config, log, { agent: agent.name, projectId: req.project_id, commit, ref: ref.name });
      await write(call, { message: { $case: 'header', value: { commit_id: commit, project_id: project.id } } }, abort.signal);
      let selection: Selection;
      let contents: Buffer[];
      try {
        selection = await selectFiles(
          project.repo,
          commit,
          req.paths.map((p) => p.path?.value ?? ''),
        );
        contents = await readFiles(project.repo, selection.files);
      } catch (e) {
        throw refusal(e, 'VERDICT_MANIFEST_FILES', 'GitOps: failed to get objects to synchronize: ');
      }
      for (let i = 0; i < contents.length && !abort.signal.aborted; i++) {
        const data = contents[i]!;
        const source = selection.files[i]!.path;
        // An empty file is still one Object, so the agent knows it exists.
        for (let at = 0; (at === 0 || at < data.length) && !abort.signal.aborted; at += CHUNK_BYTES) {
          await write(call, { message: { $case: 'object', value: { source, data: data.subarray(at, at + CHUNK_BYTES) } } }, abort.signal);
        }
      }
      if (abort.signal.aborted) return;
      await write(call, { message: { $case: 'trailer', value: {} } }, abort.signal);
      call.end();
      ended = true;
      // Keyed as the agent's report is (the id of its config.yaml entry), so the report ends it.
      serverState.get(ctx.config)?.status.sent(agent.name, req.project_id, commit);
      log.info({ commit_id: commit, files_visited: selection.visited, files_sent: selection.files.length }, 'GitOps: fetched files');
    } catch (e) {
      // Stopped by a hang-up, a revoked token (the call has its status already) or a move (ended below).
      if (abort.signal.aborted) return;
      // A configuration project moved or deleted on the server's disk fails git wherever it is read: a person must
      // act (not a server that is away, which the agent would report as unavailable and wait for).
      const gone = !isVerdictError(e, ...REFUSALS) && !existsSync(own.config_project);
      const refused = isVerdictError(e, ...REFUSALS)
        ? e
        : gone
          ? new VerdictError('VERDICT_NOT_FOUND', `GitOps: ${projectGone(own.config_project)}`, { cause: e })
          : new VerdictError('VERDICT_UNAVAILABLE', `GitOps: failed to get objects to synchronize: ${errText(e)}`, { cause: e });
      if (refused.grpcStatus === grpc.status.UNAVAILABLE) log.error({ error: refused.message }, 'GitOps: failed to get objects to synchronize');
      else log.warn({ error: refused.message }, 'GitOps: refused to send objects to synchronize');
      call.emit('error', { code: refused.grpcStatus, details: refused.message });
    } finally {
      closed?.();
      unfollow?.();
      if (abort.signal.reason === MOVED && !ended) call.end();
    }
  }

  return { definition: GitOpsService, implementation: { getObjectsToSynchronize: (call: Call) => void serve(call) } };
}
