import { Counter } from 'prom-client';
import { registry } from '../../shared/metrics/registry.js';

// What every Falco input reports about the events it received.

export type FalcoInput = 'http' | 'file' | 'stdin' | 'grpc';
export type Outcome = 'accepted' | 'duplicate';

export const falcoEvents = new Counter({
  name: 'verdict_agent_falco_events_total',
  help: 'Falco events received, by input and outcome (accepted, duplicate, ignored, below_minimum_priority, invalid, failed, unwritable)',
  labelNames: ['input', 'outcome'],
  registers: [registry],
});

const LINES = ['accepted', 'duplicate', 'ignored', 'below_minimum_priority', 'invalid'] as const;

/** The outcomes each input counts (docs/falco.md, Metrics). */
export const INPUT_OUTCOMES: Record<FalcoInput, readonly string[]> = {
  http: [...LINES, 'failed', 'unwritable'],
  file: LINES,
  stdin: LINES,
  // Falco's gRPC events carry no Falcosidekick uuid: never a duplicate.
  grpc: ['accepted', 'ignored', 'below_minimum_priority', 'invalid', 'failed'],
};

/**
 * Shows an input's outcomes at 0 from its start: a series that appears only
 * with its first event cannot be alerted on (rate() and increase() need two
 * samples, and absent() cannot tell "no failure yet" from "no such input").
 */
export function zeroOutcomes(input: FalcoInput): void {
  for (const outcome of INPUT_OUTCOMES[input]) falcoEvents.inc({ input, outcome }, 0);
}

export function countOutcomes(input: FalcoInput, outcomes: readonly Outcome[]): void {
  let accepted = 0;
  let dup = 0;
  for (const o of outcomes) o === 'accepted' ? accepted++ : dup++;
  if (accepted) falcoEvents.inc({ input, outcome: 'accepted' }, accepted);
  if (dup) falcoEvents.inc({ input, outcome: 'duplicate' }, dup);
}

export const STORE_FAILED = "Failed to store Falco events; senders get 503 until it works again: check free space and permissions of the agent's --data-dir";

/** The agent cannot take more events right now; the sender should retry shortly (HTTP 503). */
