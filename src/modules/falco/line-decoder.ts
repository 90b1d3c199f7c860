import type { Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import { falcoEvents, type FalcoInput } from './events.js';
import { OddFieldsLog } from './odd-fields.js';
import { parseFalcoJson } from './parse.js';
import type { SinkItem } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';
import { isVerdictError } from '../../shared/errors.js';

/**
 * Turns JSON lines (file_output, program_output) into sink items, counting and
 * reporting the lines that are not Falco events. Reports at most one line per
 * minute so a misconfigured Falco cannot flood the log.
 */
export class LineDecoder {
  private readonly throttle = new LogThrottle();
  private readonly odd: OddFieldsLog;

  constructor(
    private readonly input: FalcoInput,
    private readonly builder: FalcoAlertBuilder,
    private readonly log: Logger,
  ) {
    this.odd = new OddFieldsLog(input, log);
  }

  /**
   * The lines' events, to be stored. Lines that are skipped are counted and
   * logged at once, or, with `later`, by the functions it is given: for an
   * input that reads the lines again if storing the events fails, and must not
   * count them twice.
   */
  decode(lines: readonly string[], later?: (() => void)[]): SinkItem[] {
    const items: SinkItem[] = [];
    const report = (f: () => void) => (later ? later.push(f) : f());
    for (const line of lines) {
      if (line.trim() === '') continue;
      let ev;
      try {
        ev = parseFalcoJson(line);
      } catch (e) {
        report(() => {
          falcoEvents.inc({ input: this.input, outcome: 'invalid' });
          const suppressed = this.throttle.pass();
          if (suppressed !== undefined) {
            this.log.warn(
              { input: this.input, reason: isVerdictError(e, 'VERDICT_FALCO_EVENT_INVALID') ? e.message : String(e), line: line.slice(0, 200), suppressed },
              'Skipped a line that is not a Falco JSON event; check json_output: true in falco.yaml',
            );
          }
        });
        continue;
      }
      if (ev.oddFields) {
        const e1 = ev;
        report(() => this.odd.note(e1));
      }
      const r = this.builder.build(ev);
      if (r.skipped) {
        const outcome = r.skipped;
        report(() => falcoEvents.inc({ input: this.input, outcome }));
        continue;
      }
      items.push({ alert: r.alert, uuid: ev.uuid });
    }
    return items;
  }
}
