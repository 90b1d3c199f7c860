import * as grpc from '@grpc/grpc-js';
import type { Tunnel } from '../../agent/tunnel/connection.js';
import { GitOpsClient, type ObjectsToSynchronizeRequest, type ObjectsToSynchronizeResponse } from '../../gen/verdict/gitops.js';
import type { Logger } from '../../shared/log/logger.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { ManifestFile } from './decode.js';

// The agent's end of GetObjectsToSynchronize: one stream per project, opened
// with the last commit received, so the server sends only what is new. A
// batch (header, objects, trailer) is reassembled into whole files and handed
// on; the stream is reopened at once after a batch, with backoff after an
// error. The agent keeps what it last applied while the server is away.

const REFUSALS = new Set<number>([grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION, grpc.status.INVALID_ARGUMENT]);

export interface ObjectsBatch {
  commit: string;
  projectId: string;
  files: ManifestFile[];
}

export interface ProjectRequest {
  projectId: string;
  ref: ObjectsToSynchronizeRequest['ref'];
  globs: string[];
}

export async function receiveObjects(
  tunnel: Tunnel,
  req: ProjectRequest,
  o: {
    backoff: BackoffOptions;
    log: Logger;
    signal: AbortSignal;
    onBatch: (b: ObjectsBatch) => void;
    /** The server refused the request (a project or ref it cannot find, files over its limits): a person must act. */
    onRefused?: (message: string) => void;
  },
): Promise<void> {
  const client = new GitOpsClient(tunnel.target, tunnel.credentials, tunnel.options);
  let commit = '';
  try {
    await retryLoop(
      {
        backoff: o.backoff,
        signal: o.signal,
        onBackoff: (delay, e) => {
          const text = tunnel.describe(e);
          o.log.error({ error: text, retry_in_ms: delay }, 'GitOps: failed to get objects to synchronize');
          // Not a server that is away or restarting: that passes by itself.
          if (REFUSALS.has((e as Partial<grpc.ServiceError> | undefined)?.code ?? -1)) o.onRefused?.(text);
        },
      },
      async (progress) => {
        const batch = await new Promise<ObjectsBatch | undefined>((resolve, reject) => {
          const call = client.getObjectsToSynchronize(
            { project_id: req.projectId, commit_id: commit, paths: req.globs.map((g) => ({ path: { $case: 'glob', value: g } })), ref: req.ref },
            tunnel.metadata(),
          );
          const onAbort = () => call.cancel();
          o.signal.addEventListener('abort', onAbort, { once: true });
          let header: { commit_id: string; project_id: string } | undefined;
          const parts = new Map<string, Buffer[]>();
          let complete = false;
          call.on('data', (m: ObjectsToSynchronizeResponse) => {
            const msg = m.message;
            if (msg?.$case === 'header') header = msg.value;
            else if (msg?.$case === 'object') {
              const list = parts.get(msg.value.source) ?? [];
              list.push(msg.value.data);
              parts.set(msg.value.source, list);
            } else if (msg?.$case === 'trailer') complete = true;
          });
          const done = (err?: grpc.ServiceError) => {
            o.signal.removeEventListener('abort', onAbort);
            if (o.signal.aborted) return resolve(undefined);
            if (err) return reject(err);
            // A stream that ends without its trailer was cut: what arrived is not the whole commit.
            if (!header || !complete) return resolve(undefined);
            resolve({
              commit: header.commit_id,
              projectId: header.project_id,
              files: [...parts].map(([source, data]) => ({ source, data: Buffer.concat(data) })),
            });
          };
          call.on('error', done);
          call.on('end', () => done());
        });
        if (batch) {
          progress();
          commit = batch.commit;
          o.onBatch(batch);
        }
        return 'now';
      },
    );
  } finally {
    client.close();
  }
}
