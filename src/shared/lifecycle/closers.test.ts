import { describe, expect, it } from 'vitest';
import { Closers } from './closers.js';

describe('Closers', () => {
  it('closes in reverse order, once, and goes on past a failing closer', async () => {
    const order: string[] = [];
    const c = new Closers();
    c.defer('a', () => order.push('a'));
    const v = c.add('b', { id: 'b' }, (x) => order.push(x.id));
    expect(v.id).toBe('b');
    c.defer('broken', () => {
      throw new Error('boom');
    });
    c.defer('d', async () => {
      order.push('d');
    });
    await expect(c.close()).rejects.toThrow('closing broken failed: boom');
    expect(order).toEqual(['d', 'b', 'a']);
    await c.close().catch(() => undefined);
    expect(order).toEqual(['d', 'b', 'a']);
  });

  it('a start step that fails closes what was opened before it', async () => {
    const closed: string[] = [];
    const c = new Closers();
    c.defer('db', () => closed.push('db'));
    await expect(c.start(() => Promise.reject(new Error('cannot listen')))).rejects.toThrow('cannot listen');
    expect(closed).toEqual(['db']);
  });
});
