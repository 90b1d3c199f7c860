import { Writable } from 'node:stream';
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
  it('writes one mod_name, the innermost, when made from another module logger', () => {
    const { lines, log } = capture();
    moduleLogger('gitops', moduleLogger('tunnel', log)).info('served');
    expect(lines).toHaveLength(1);
    expect(count(lines[0], 'mod_name')).toBe(1);
    expect(count(lines[0], 'name')).toBe(1);
    expect(JSON.parse(String(lines[0]))).toMatchObject({ name: 'verdict-server', mod_name: 'gitops', msg: 'served' });
  });

  it('keeps the bindings of a child of a module logger, and writes each key once', () => {
    const { lines, log } = capture();
    const tunnel = moduleLogger('tunnel', log).child({ agent_name: 'prod', labels: { a: 1 } });
    moduleLogger('ci_access', tunnel).info('request');
    tunnel.info('tunnel line');
    expect(lines).toHaveLength(2);
    for (const key of ['mod_name', 'agent_name', 'labels', 'name']) expect(count(lines[0], key)).toBe(1);
    expect(JSON.parse(String(lines[0]))).toMatchObject({ mod_name: 'ci_access', agent_name: 'prod', labels: { a: 1 } });
    expect(JSON.parse(String(lines[1]))).toMatchObject({ mod_name: 'tunnel', agent_name: 'prod' });
  });

  it('binds mod_name on a logger without one', () => {
    const { lines, log } = capture();
    moduleLogger('falco', log.child({ component: 'agent' })).info('x');
    expect(JSON.parse(String(lines[0]))).toMatchObject({ component: 'agent', mod_name: 'falco' });
    expect(count(lines[0], 'mod_name')).toBe(1);
  });
});
