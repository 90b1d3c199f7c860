import * as grpc from '@grpc/grpc-js';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AlertPublisherClient, type AlertAck, type AlertBatch } from '../../gen/verdict/agent.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { splitHostPort } from '../../shared/config/host-port.js';
import { VERSION } from '../../shared/version.js';

// For the Kafka tests and benchmark: a real broker from scripts/kafka.sh that
// can also be restarted in place (same data, same port), and a minimal agent
// that publishes alerts over the real gRPC API.

const SCRIPT = fileURLToPath(new URL('../../../scripts/kafka.sh', import.meta.url));

export interface Broker {
  bootstrap: string;
  stateDir: string;
  /** True when this process started the broker (and so stops it). */
  owned: boolean;
}

function scriptEnv(stateDir: string): NodeJS.ProcessEnv {
  // The broker stops by itself if this process dies before stopping it.
  return { ...process.env, VERDICT_KAFKA_STATE: stateDir, VERDICT_KAFKA_OWNER_PID: String(process.pid) };
}

/** Starts a private broker in `stateDir`, or uses VERDICT_KAFKA_BOOTSTRAP when set. */
export function startBroker(stateDir: string): Broker {
  const given = process.env.VERDICT_KAFKA_BOOTSTRAP?.trim();
  if (given) return { bootstrap: given, stateDir, owned: false };
  const out = execFileSync(SCRIPT, ['start'], { env: scriptEnv(stateDir), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 });
  const m = /^bootstrap=(\S+)$/m.exec(out);
  if (!m) throw new Error(`scripts/kafka.sh start printed no bootstrap line: ${JSON.stringify(out)}`);
  return { bootstrap: m[1]!, stateDir, owned: true };
}

export function stopBroker(b: Broker): void {
  if (!b.owned) return;
  execFileSync(SCRIPT, ['stop'], { env: scriptEnv(b.stateDir), stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portOpen(hostPort: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(splitHostPort(hostPort));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Stops the broker with SIGTERM (a clean shutdown, as in a rolling restart)
 * and starts the same JVM command again on the same data and port. kafka.sh
 * stop would delete the data; this keeps it, like restarting a real broker.
 * Returns once the port accepts connections again; `downMs` is how long it
 * stays down at least.
 */
export async function restartBroker(b: Broker, downMs = 0): Promise<void> {
  if (!b.owned) throw new Error('restartBroker needs a broker this process started (unset VERDICT_KAFKA_BOOTSTRAP)');
  const pidFile = join(b.stateDir, 'pid');
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  process.kill(pid, 'SIGTERM');
  const t0 = Date.now();
  while (alive(pid)) {
    if (Date.now() - t0 > 30_000) process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
  if (downMs) await new Promise((r) => setTimeout(r, downMs));
  // Through sh, so the JVM is not our child: a test blocked in execFileSync
  // (kafka.sh stop) could not reap it, and the zombie would look alive.
  const logFile = join(b.stateDir, 'server.log');
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const out = execFileSync('sh', ['-c', `setsid ${quoted} </dev/null >>'${logFile}' 2>&1 & echo $!`], { encoding: 'utf8' });
  const child = { pid: Number(out.trim()) };
  writeFileSync(pidFile, `${child.pid}\n`);
  // The old watchdog followed the old JVM; this one stops the new one with us.
  const wd = spawn(SCRIPT, ['_watch', String(process.pid), String(child.pid)], { env: scriptEnv(b.stateDir), detached: true, stdio: 'ignore' });
  wd.unref();
  if (existsSync(join(b.stateDir, 'watchdog.pid'))) writeFileSync(join(b.stateDir, 'watchdog.pid'), `${wd.pid}\n`);
  const addr = b.bootstrap.split(',')[0]!;
  const t1 = Date.now();
  while (!(await portOpen(addr))) {
    if (!alive(child.pid)) throw new Error(`the restarted broker exited; see ${join(b.stateDir, 'server.log')}`);
    if (Date.now() - t1 > 60_000) throw new Error(`the restarted broker does not listen on ${addr} after 60 s; see ${join(b.stateDir, 'server.log')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A minimal agent: one PublishAlerts stream, batches acknowledged in order. */
export class TestPublisher {
  private readonly client: AlertPublisherClient;
  private call: grpc.ClientDuplexStream<AlertBatch, AlertAck> | undefined;
  private waiting = new Map<number, { resolve: (a: AlertAck) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(
    target: string,
    private readonly token: string,
  ) {
    this.client = new AlertPublisherClient(target, grpc.credentials.createInsecure());
  }

  private open() {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.token}`);
    md.set('verdict-version', VERSION);
    const call = this.client.publishAlerts(md);
    call.on('data', (ack: AlertAck) => {
      const w = this.waiting.get(ack.batch_id);
      this.waiting.delete(ack.batch_id);
      w?.resolve(ack);
    });
    const fail = (e: Error) => {
      if (this.call === call) this.call = undefined;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    call.on('error', fail);
    call.on('end', () => fail(new Error('stream ended by the server')));
    this.call = call;
    return call;
  }

  /** Sends one batch and resolves with the server's acknowledgement. */
  send(events: { id: string; payload: AlertPayload }[], timeoutMs = 30_000): Promise<AlertAck> {
    const call = this.call ?? this.open();
    const batch_id = ++this.nextId;
    return new Promise<AlertAck>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(batch_id);
        reject(new Error(`no acknowledgement for batch ${batch_id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(batch_id, {
        resolve: (a) => {
          clearTimeout(t);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      call.write({ batch_id, alerts: events.map((e) => ({ id: e.id, payload: Buffer.from(JSON.stringify(e.payload)) })) });
    });
  }

  close(): void {
    this.call?.end();
    this.client.close();
  }
}
