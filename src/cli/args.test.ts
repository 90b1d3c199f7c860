import { describe, expect, it } from 'vitest';
import { run as agent } from './agent.js';
import { run as demo } from './demo.js';
import { run as server } from './server.js';

// Address flags are checked as server.yaml's addresses are: a usage error (exit 2) naming the flag, before anything starts.
describe('listen address flags', () => {
  const usage = (p: Promise<number>) =>
    p.then(
      () => expect.fail('accepted'),
      (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
    );

  it.each([
    [['--http-addr', '127.0.0.1:99999'], 'VERDICT_USAGE: verdict server: --http-addr: port 99999 is over 65535: host:port, e.g. 0.0.0.0:8080'],
    [['--grpc-addr', '8150'], 'VERDICT_USAGE: verdict server: --grpc-addr: "8150" is not host:port: host:port, e.g. 0.0.0.0:8150'],
    // An empty flag is refused, not taken for "not given".
    [['--http-addr', ''], expect.stringMatching(/^VERDICT_USAGE: verdict server: --http-addr: .*host:port, e\.g\. 0\.0\.0\.0:8080$/)],
  ])('verdict server %j', async (argv, message) => {
    expect(await usage(server([...argv, '--data-dir', '/nonexistent/verdict-args-test']))).toEqual(message);
  });

  it('verdict agent --observability-addr', async () => {
    expect(await usage(agent(['--kas-address', 'grpc://x:8150', '--token-file', '/nonexistent', '--observability-addr', 'localhost:70000']))).toBe(
      'VERDICT_USAGE: verdict agent: --observability-addr: port 70000 is over 65535: host:port, e.g. 127.0.0.1:8081, or "" to turn it off',
    );
  });

  it('verdict demo --falco-addr and an empty --grpc-addr', async () => {
    expect(await usage(demo(['--falco-addr', 'nonsense', '--data-dir', '/nonexistent/verdict-args-test']))).toBe(
      'VERDICT_USAGE: verdict demo: --falco-addr: "nonsense" is not host:port: host:port, e.g. 127.0.0.1:2801',
    );
    expect(await usage(demo(['--grpc-addr', '', '--data-dir', '/nonexistent/verdict-args-test']))).toMatch(/^VERDICT_USAGE: verdict demo: --grpc-addr: /);
  });

  it('verdict demo --http-addr', async () => {
    expect(await usage(demo(['--http-addr', '[relay]:8080', '--data-dir', '/nonexistent/verdict-args-test']))).toBe(
      'VERDICT_USAGE: verdict demo: --http-addr: "[relay]:8080" is not host:port: host:port, e.g. 0.0.0.0:8080',
    );
  });
});
