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

  it('config files take compound durations', () => {
    expect(parseYamlConfig('1h30m\n', 'f.yaml', duration()).value).toBe(5_400_000);
  });
});
