import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, verdictRun } from '../../test/helpers/processes.js';

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
});
