import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../../shared/log/logger.js';
import { sleep } from '../../shared/retry/backoff.js';
import { SCENARIO_LENGTH, scenarioEvent, toFalcoJson } from './scenario.js';

// A built-in Falco for the demo: posts the scenario's events to a URL the way
// Falco's http_output does (one JSON event per POST, keep-alive), or like
// Falcosidekick with `uuid: true` (an id per event).

export interface FalcoPosterOptions {
  url: string;
  intervalMs: number;
  signal: AbortSignal;
  log: Logger;
  /** Cycle through the scenario until aborted (default) or post it once. */
  repeat?: boolean;
  /** Add a uuid to every event, as Falcosidekick does. */
  uuid?: boolean;
  /** Send gzip bodies with Content-Encoding: gzip (as a proxy may; Falco's compress_uploads only sends TE: gzip). */
  gzip?: boolean;
}

export interface PosterStats {
  sent: number;
  failed: number;
}

/** How long a refused connection before the first accepted event is expected (the agent starting). */
const STARTUP_GRACE_MS = 30_000;

/** Posts until aborted (or one pass without repeat); never rejects. */
export async function startFalcoPoster(opts: FalcoPosterOptions): Promise<PosterStats> {
  const url = new URL(opts.url);
  const https = url.protocol === 'https:';
  const agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  const stats: PosterStats = { sent: 0, failed: 0 };
  let lastError = '';
  const repeat = opts.repeat ?? true;
  // The agent opens its Falco input once its configuration arrives: until the
  // first event is taken, a refused connection is the normal start, not news.
  const startedAt = Date.now();
  let taken = false;
  try {
    for (let i = 0; !opts.signal.aborted && (repeat || i < SCENARIO_LENGTH); i++) {
      const body = toFalcoJson(scenarioEvent(i, new Date(), { uuid: opts.uuid ?? false }));
      try {
        const status = await post(url, https, agent, opts.gzip ? gzipSync(body) : Buffer.from(body), opts.gzip ?? false, opts.signal);
        if (status < 200 || status > 299) throw new Error(`HTTP ${status}`);
        stats.sent++;
        if (lastError && taken) opts.log.info({ url: opts.url }, 'Falco events are accepted again');
        lastError = '';
        taken = true;
      } catch (e) {
        if (opts.signal.aborted) break;
        stats.failed++;
        const msg = (e as Error).message;
        const starting = !taken && Date.now() - startedAt < STARTUP_GRACE_MS && /ECONNREFUSED/.test(msg);
        // One line per kind of failure, not one per event.
        if (starting) opts.log.debug({ url: opts.url, error: msg }, 'The agent does not take Falco events yet; the built-in Falco keeps trying');
        else if (msg !== lastError) opts.log.warn({ url: opts.url, error: msg }, 'Posting a Falco event failed; the built-in Falco keeps trying');
        lastError = msg;
      }
      if (!(await sleep(opts.intervalMs, opts.signal))) break;
    }
  } finally {
    agent.destroy();
  }
  return stats;
}

function post(url: URL, https: boolean, agent: HttpAgent, body: Buffer, gzip: boolean, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method: 'POST',
        agent,
        signal,
        timeout: 5_000,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          'user-agent': 'falcosecurity/falco (verdict demo)',
          ...(gzip ? { 'content-encoding': 'gzip' } : {}),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end(body);
  });
}
