import type { Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import type { FalcoInput } from './events.js';
import type { FalcoEvent } from './parse.js';

export const ODD_FIELDS_MESSAGE =
  'Took a Falco event with fields of a type Falco never sends, read as `fields` says; fix the sender: Falco sends output, hostname and source as strings and tags as a list of strings';

/**
 * Warns about events whose fields had to be read leniently (parse.ts,
 * FalcoEvent.oddFields): at most once a minute per input, since a sender that
 * gets it wrong gets it wrong for every event.
 */
export class OddFieldsLog {
  private readonly throttle: LogThrottle;

  constructor(
    private readonly input: FalcoInput,
    private readonly log: Logger,
    now?: () => number,
  ) {
    this.throttle = new LogThrottle(60_000, now);
  }

  note(ev: FalcoEvent): void {
    if (!ev.oddFields) return;
    const suppressed = this.throttle.pass();
    if (suppressed === undefined) return;
    this.log.warn({ input: this.input, rule: ev.rule, fields: ev.oddFields, suppressed }, ODD_FIELDS_MESSAGE);
  }
}
