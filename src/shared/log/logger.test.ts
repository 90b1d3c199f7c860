import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createRootLogger, moduleLogger } from './logger.js';

// JSON.parse keeps the last of two equal keys, so a duplicate only shows in the raw line.
function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, log: createRootLogger({ level: 'info', name: 'verdict-server', destination }) };
}

const count = (line: string | undefined, key: string) => String(line).split(`"${key}":`).length - 1;

describe('moduleLogger', () => {
  it('writes pino JSON lines with level, time, msg, error and one mod_name, beside the bindings of its parent', () => {
    const { lines, log } = capture();
    moduleLogger('falco', log.child({ component: 'agent' })).warn({ error: 'boom' }, 'x');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(String(lines[0]))).toEqual({
      level: 'warn',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      name: 'verdict-server',
      component: 'agent',
      mod_name: 'falco',
      error: 'boom',
      msg: 'x',
    });
    for (const key of ['level', 'time', 'name', 'mod_name', 'error', 'msg']) expect(count(lines[0], key)).toBe(1);
  });
});

describe('createRootLogger and grpc-js', () => {
  it("writes grpc-js's log lines as pino JSON with mod_name grpc, at their level", () => {
    const { lines } = capture();
    grpc.experimental.log(grpc.logVerbosity.ERROR, 'Failed to connect to proxy', 'x:1');
    grpc.experimental.log(grpc.logVerbosity.INFO, 'WARNING Only 1 addresses added out of total 2 resolved');
    grpc.experimental.log(grpc.logVerbosity.DEBUG, 'below the level');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      expect.objectContaining({ level: 'error', name: 'verdict-server', mod_name: 'grpc', msg: 'Failed to connect to proxy x:1' }),
      expect.objectContaining({ level: 'info', mod_name: 'grpc', msg: 'WARNING Only 1 addresses added out of total 2 resolved' }),
    ]);
  });
});
