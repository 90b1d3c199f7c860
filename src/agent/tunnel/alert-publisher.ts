import type * as grpc from '@grpc/grpc-js';
import { Counter } from 'prom-client';
import { AlertPublisherClient, type AlertAck, type AlertBatch } from '../../gen/verdict/agent.js';
import { MAX_MESSAGE_BYTES } from '../../shared/agent-api.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { Spool, OutboxRow } from '../spool/spool.js';
import { losesStored } from '../../shared/alert/fit.js';
import { fitPayload } from './alert-fit.js';
import { isVersionRefusal } from './config-client.js';
import type { Tunnel } from './connection.js';

const acked = new Counter({ name: 'verdict_agent_alerts_acknowledged_total', help: 'Alerts the server acknowledged as stored', registers: [registry] });
const tooLarge = new Counter({
  name: 'verdict_agent_alerts_too_large_total',
  help: 'Alerts dropped from the spool because they exceed the gRPC message size even cut as far as they go: fields as the server stores them, no samples, details cut',
  registers: [registry],
});

const sentCut = new Counter({
  name: 'verdict_agent_alerts_cut_total',
  help: 'Alerts sent cut to fit a gRPC message without their samples or with part of their details (each marked where it was), once per alert and agent process',
  registers: [registry],
});

// Upper bounds of what protobuf adds around an AlertBatch's alerts: the
// batch_id field (tag and a 64-bit varint), and per alert its field tag and
// length, and the tags and lengths of its id and payload.
const BATCH_FRAMING_BYTES = 11;
const ALERT_FRAMING_BYTES = 18;
/** The largest alert (id and payload) that fits a message on its own. */
const MAX_ALERT_BYTES = MAX_MESSAGE_BYTES - BATCH_FRAMING_BYTES - ALERT_FRAMING_BYTES;

/** How many cut detail values a warning names; the count says how many there were. */
const MAX_NAMED = 20;

/** What a cut alert lost, for its warning: its samples and the details named, or nothing the server stores. */
function lostParts(cut: readonly string[], details: readonly string[]): string {
  const lost: string[] = [];
  if (cut.includes('samples')) lost.push('its samples');
  if (details.length > 0) {
    const more = details.length > 3 ? ` and ${details.length - 3} more` : '';
    lost.push(`part of its details (${details.slice(0, 3).join(', ')}${more}; each marked where it was cut)`);
  }
  return lost.length > 0 ? lost.join(' and ') : 'nothing the server stores';
}

export interface PublisherOptions {
  batchSize: number;
  /**
   * A batch takes alerts up to about this many bytes (one alert bigger than
   * that goes alone); never more than a gRPC message holds (MAX_MESSAGE_BYTES).
   */
  batchBytes?: number;
  /** Batches sent but not yet acknowledged; pipelining hides the round trip. */
  maxInFlight: number;
  /**
   * How often the spool is looked at without being told: the publisher wakes
   * on its own process's adds, and this catches anything else that wrote to
   * the spool file (a tool, a test) or a wake-up that was missed.
   */
  pollMs?: number;
}

// 4 MiB batches, well below the 10 MiB message limit, keep what a stream holds
// in flight (maxInFlight batches, on both sides) bounded when alerts are big;
// 500 typical alerts take well under 1 MiB, so only big ones are cut by it.
export const DEFAULT_PUBLISHER: PublisherOptions = { batchSize: 500, batchBytes: 4 * 1024 * 1024, maxInFlight: 4, pollMs: 1000 };

/**
 * Sends the spool to the server in batches over one PublishAlerts stream and
 * deletes alerts only when their batch is acknowledged. After any failure the
 * stream is reopened with backoff and sending restarts from the oldest alert
 * still in the spool; the server de-duplicates by alert id.
 *
 * Every batch fits one gRPC message: batches are cut by bytes as well as by
 * count, and an alert too big for a message alone is sent cut as the server
 * would store it, then with its details cut, samples going before whole values (fitPayload);
 * only one whose other fields alone are too big is dropped, with an error and
 * a counter, so that it cannot hold up the alerts behind it.
 */
export async function runAlertPublisher(
  tunnel: Tunnel,
  outbox: Spool,
  backoffOpts: BackoffOptions,
  log: Logger,
  signal: AbortSignal,
  opts: PublisherOptions = DEFAULT_PUBLISHER,
): Promise<void> {
  const client = new AlertPublisherClient(tunnel.target, tunnel.credentials, tunnel.options);
  const batchBytes = Math.min(opts.batchBytes ?? MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES - BATCH_FRAMING_BYTES) - opts.batchSize * ALERT_FRAMING_BYTES;
  /** Alerts sent cut and warned about, until acknowledged: one warning per alert for the process. */
  const warned = new Set<string>();
  /** The payload to send for a row: its own, or cut (fitPayload) when it does not fit a message; undefined when nothing fits. */
  const sendable = (r: OutboxRow): Buffer | undefined => {
    const fitted = fitPayload(r.payload, MAX_ALERT_BYTES - r.id.length);
    if (!fitted.payload) {
      tooLarge.inc();
      log.error(
        { alert_id: r.id, bytes: r.payload.length, max_bytes: MAX_ALERT_BYTES, title: fitted.title },
        "Dropped an alert larger than a gRPC message to the server (10 MiB) even cut as far as it goes (fields as the server stores them, no samples, details cut); the alerts after it are sent as usual. What is too big is a field never cut (its rule, namespace, policies or labels' names): fix what makes such alerts at the source",
      );
      return undefined;
    }
    // Every stream sends the spool again from its oldest alert: an alert not yet
    // acknowledged would otherwise be warned about again on each reconnect.
    if (fitted.cut.length > 0 && !warned.has(r.id)) {
      warned.add(r.id);
      if (losesStored(fitted.cut, fitted.details)) sentCut.inc();
      const lost = lostParts(fitted.cut, fitted.details);
      log.warn(
        {
          alert_id: r.id,
          title: fitted.title,
          bytes: r.payload.length,
          sent_bytes: fitted.payload.length,
          max_bytes: MAX_ALERT_BYTES,
          cut: fitted.cut,
          ...(fitted.details.length > 0 && { cut_details: fitted.details.slice(0, MAX_NAMED), cut_details_count: fitted.details.length }),
        },
        `Sending an alert larger than a gRPC message to the server (10 MiB) cut to fit (${fitted.cut.join(', ')}), which loses ${lost}. To have it sent as it is, shorten its big field at the source, usually the Falco rule's output or one of its output fields (see Delivery guarantees in docs/tunnel.md)`,
      );
    }
    return fitted.payload;
  };
  let batchId = 0;
  const onBackoff = (delay: number, err: unknown) => {
    const e = err as grpc.ServiceError | undefined;
    const fields = { error: e ? tunnel.describe(e) : 'stream ended by the server', retry_in_ms: delay, spooled: outbox.size };
    if (tunnel.endedByShutdown(e))
      log.info(
        { reason: fields.error, retry_in_ms: delay, spooled: outbox.size },
        'The server ended the alert stream as it shut down; reconnecting, alerts stay in the spool',
      );
    else if (e && isVersionRefusal(e)) log.error(fields, 'Refused by the server: agent and server versions differ; alerts stay in the spool');
    else log.error(fields, 'Alert stream to the server failed; alerts stay in the spool and are sent after reconnecting');
  };
  try {
    // The server never ends this stream while all is well, so even a clean end backs off.
    await retryLoop({ backoff: backoffOpts, signal, onBackoff }, async (progress) => {
      const err = await new Promise<unknown>((resolve) => {
        const call = client.publishAlerts(tunnel.metadata());
        const inFlight = new Map<number, OutboxRow[]>();
        let cursor = 0;
        let finished = false;
        let scheduled = false;
        // Acknowledged rows are deleted after the next batches are written, in
        // one transaction: deleting is the agent's costliest step, and doing it
        // first would leave the server idle meanwhile. A crash before the
        // delete only means a re-send, which the server de-duplicates.
        let acknowledged: OutboxRow[] = [];
        let removalScheduled = false;
        const removeAcknowledged = () => {
          removalScheduled = false;
          if (acknowledged.length === 0) return;
          const rows = acknowledged;
          acknowledged = [];
          outbox.remove(rows);
          acked.inc(rows.length);
        };

        const pump = () => {
          scheduled = false;
          if (finished) return;
          while (inFlight.size < opts.maxInFlight) {
            const rows = outbox.read(cursor, opts.batchSize, batchBytes);
            if (rows.length === 0) return;
            cursor = rows[rows.length - 1]!.seq;
            const sent: OutboxRow[] = [];
            const alerts: AlertBatch['alerts'] = [];
            const dropped: OutboxRow[] = [];
            for (const r of rows) {
              const payload = sendable(r);
              if (payload) {
                sent.push(r);
                alerts.push({ id: r.id, payload });
              } else dropped.push(r);
            }
            // Kept, it would be read and dropped again after every reconnect.
            outbox.remove(dropped);
            if (sent.length === 0) continue;
            const id = ++batchId;
            inFlight.set(id, sent);
            call.write({ batch_id: id, alerts } satisfies AlertBatch);
          }
        };
        // Reading or deleting spooled alerts runs outside any caller: when the spool
        // fails (disk full, database locked), this stream ends with that error and the
        // loop logs it and retries after a backoff, instead of it escaping the process.
        const guarded = (fn: () => void) => () => {
          try {
            fn();
          } catch (e) {
            finish(e);
            call.cancel();
          }
        };
        const schedule = () => {
          if (!scheduled) {
            scheduled = true;
            setImmediate(guarded(pump));
          }
        };
        const unsubscribe = outbox.onAdded(schedule);
        const poll = setInterval(schedule, opts.pollMs ?? 1000);
        const onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
        const finish = (e?: unknown) => {
          if (finished) return;
          finished = true;
          try {
            removeAcknowledged();
          } catch (removing) {
            // Not removed, still spooled: sent again on the next stream, and de-duplicated by the server.
            e ??= removing;
          }
          unsubscribe();
          clearInterval(poll);
          signal.removeEventListener('abort', onAbort);
          resolve(e);
        };
        call.on('metadata', (md: grpc.Metadata) => tunnel.checkServerVersion(md, log));
        call.on('data', (ack: AlertAck) => {
          const rows = inFlight.get(ack.batch_id);
          if (!rows) return;
          inFlight.delete(ack.batch_id);
          for (const r of rows) acknowledged.push(r);
          if (warned.size > 0) for (const r of rows) warned.delete(r.id);
          progress();
          schedule();
          if (!removalScheduled) {
            removalScheduled = true;
            setImmediate(guarded(removeAcknowledged));
          }
        });
        call.on('error', (e) => finish(e));
        call.on('end', () => finish());
        schedule();
      });
      if (err !== undefined) throw err;
      return 'backoff';
    });
  } finally {
    client.close();
  }
}
