import { describe, expect, it } from 'vitest';
import { tempDir, verdictRun } from '../../test/helpers/processes.js';

/** `verdict demo` in a new data directory on any free ports, with `flags` (later ones override these). */
const demo = (flags: string[], timeout: number) =>
  verdictRun(['demo', '--data-dir', tempDir(), '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', '--falco-addr', '127.0.0.1:0', ...flags], {
    timeout,
  });

// `verdict demo --kafka` with brokers it cannot reach: the advice names the flag the brokers came from, since the demo
// has no config file with a kafka.brokers to check.

describe('verdict demo --kafka', () => {
  it('names --kafka and its value when the brokers cannot be reached', () => {
    const r = demo(['--kafka', '127.0.0.1:1'], 60_000);
    expect(r.status).toBe(1);
    const failed = r.stdout
      .split('\n')
      .filter((l) => l.includes('"verdict demo failed"'))
      .map((l) => JSON.parse(l) as { error: string });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error).toMatch(/^cannot reach the Kafka brokers 127\.0\.0\.1:1: .*; check --kafka 127\.0\.0\.1:1 and that the brokers run/);
    expect(failed[0]!.error).not.toContain('kafka.brokers');
  }, 70_000);
});

// The demo writes falco.http.listen into its own config project from --falco-addr: an address it cannot listen on
// stops it at once, naming the flag (the agent's Falco module would retry without end, naming a key the user never set).
describe('verdict demo --falco-addr', () => {
  it('refuses an address of another machine, naming --falco-addr', () => {
    const r = demo(['--falco-addr', '192.0.2.1:2801'], 30_000);
    expect(r.stderr).toMatch(
      /^verdict demo: cannot listen for Falco events on 192\.0\.2\.1:2801: 192\.0\.2\.1 is not an address of this machine; set --falco-addr to an address of this machine, e\.g\. 0\.0\.0\.0:2801/,
    );
    expect(r.status).toBe(2);
  }, 40_000);
});
