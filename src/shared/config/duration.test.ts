import { describe, expect, it } from 'vitest';
import { parseYamlConfig, duration } from './schema.js';
import { durationMs, parseDuration } from './duration.js';

describe('durationMs', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    // Go's compound form, which the GitLab agent's flags and docs use.
    ['1h30m', 5_400_000],
    ['2m3.5s', 123_500],
    // protobuf JSON's google.protobuf.Duration, as real config.yaml files write reconcile_timeout.
    ['3600s', 3_600_000],
    ['0.5s', 500],
    ['1500us', 2],
    ['0', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(durationMs(text)).toBe(ms);
  });

  it.each(['', 'ten', '10', '1d', '-1s', '1h 30m', 's'])('%j is not a duration', (text) => {
    expect(durationMs(text)).toBeUndefined();
  });
});

describe('one parser for files and flags', () => {
  it('flags take the same forms as config files, and digits alone as milliseconds', () => {
    expect(parseDuration('1h30m', '--reconnect-max')).toBe(5_400_000);
    expect(parseDuration('250', '--reconnect-initial')).toBe(250);
    expect(() => parseDuration('soon', '--reconnect-max')).toThrow(/--reconnect-max: "soon" is not a duration/);
  });

  it('days and weeks are refused with the same span in hours', () => {
    const refused = (text: string) => {
      try {
        parseYamlConfig(`${text}\n`, 'f.yaml', duration());
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('parsed');
    };
    expect(refused('30d')).toBe('f.yaml:1: (document): must be a duration such as 500ms, 10s, 5m or 1h; days (d) are not a unit here: write 720h for 30d');
    expect(refused('2w')).toMatch(/weeks \(w\) are not a unit here: write 336h for 2w$/);
    expect(refused('1d12h30m')).toMatch(/days \(d\) are not a unit here: write 36h30m for 1d12h30m$/);
    expect(refused('1.5d')).toMatch(/write 36h for 1\.5d$/);
    expect(refused('1w1d')).toMatch(/weeks \(w\) and days \(d\) are not a unit here: write 192h for 1w1d$/);
    expect(refused('ten')).toBe('f.yaml:1: (document): must be a duration such as 500ms, 10s, 5m or 1h, got "ten"');
    expect(() => parseDuration('7d', '--max-age')).toThrow('--max-age: "7d" is not a duration; days (d) are not a unit here: write 168h for 7d');
  });

  it('config files take compound durations', () => {
    expect(parseYamlConfig('1h30m\n', 'f.yaml', duration()).value).toBe(5_400_000);
  });
});
