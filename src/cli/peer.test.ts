import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, freePort, killAll, spawnVerdict, verdictRun } from '../../test/helpers/processes.js';

// `verdict peer hubble-relay` with a wrong argument: refused with exit 2 before it listens, since once it has printed
// listening= it runs until stopped (a script waiting for that line would wait on a peer that serves nothing).

const peer = (...args: string[]) => verdictRun(['peer', 'hubble-relay', '--listen', '127.0.0.1:0', ...args]);

describe('verdict peer hubble-relay', () => {
  it('refuses an unknown --scenario with exit 2, without listening first', () => {
    expect(peer('--scenario', 'shop')).toEqual({
      status: 2,
      stdout: '',
      stderr: 'verdict peer hubble-relay: --scenario must be "demo" (the demo\'s shop traffic), not "shop"\n',
    });
    expect(peer('--scenario', 'demo', '--interval', 'soon')).toMatchObject({
      status: 2,
      stdout: '',
      stderr: expect.stringContaining('--interval must be a whole number of milliseconds'),
    });
  });

  it('says a --flows file does not exist, and what --flows takes', () => {
    expect(peer('--flows', '/nonexistent/capture.json')).toEqual({
      status: 2,
      stdout: '',
      stderr:
        'verdict peer hubble-relay: --flows /nonexistent/capture.json does not exist; give a file of `hubble observe -o json` output (one flow per line), or leave --flows out\n',
    });
    expect(peer('--flows', join(REPO, 'package.json'))).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/--flows .*package\.json: line 1: .*--flows takes `hubble observe -o json` output/),
    });
  });

  // grpc-js sets SO_REUSEPORT unless told not to: both peers said listening= on one port, and the kernel shared connections between them.
  it('refuses a port another peer listens on, saying the address is in use', async () => {
    const port = await freePort();
    const first = spawnVerdict(['peer', 'hubble-relay', '--listen', `127.0.0.1:${port}`], 'relay-1');
    try {
      await first.waitForStdout(/listening=/);
      const second = verdictRun(['peer', 'hubble-relay', '--listen', `127.0.0.1:${port}`]);
      expect(second.stdout).not.toContain('listening=');
      expect(second.status).toBe(1);
      expect(second.stdout + second.stderr).toContain(
        `cannot listen for agents on 127.0.0.1:${port}: the address is in use by another process; stop it, or set --listen to a free port`,
      );
    } finally {
      await first.kill();
    }
  }, 30_000);
});

afterAll(killAll);
