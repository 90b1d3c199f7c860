import { describe, expect, it } from 'vitest';
import { listenError } from './listen-error.js';

// The causes a test cannot bring about as root (EACCES) or that grpc-js only names in its message.
describe('listenError', () => {
  it('says a port below 1024 needs privileges', () => {
    const e = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:80'), { code: 'EACCES' });
    expect(listenError('for HTTP', '0.0.0.0:80', e, '--http-addr').message).toBe(
      'cannot listen for HTTP on 0.0.0.0:80: port 80 needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE); set --http-addr to a port of 1024 or above',
    );
  });

  it('does not blame privileges for a port of 1024 or above that a policy refuses', () => {
    const e = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:8150'), { code: 'EACCES' });
    const m = listenError('for agents', '0.0.0.0:8150', e, '--grpc-addr').message;
    expect(m).toContain('a security policy');
    expect(m).not.toContain('needs privileges');
  });

  it("reads the cause from grpc-js's message, which has no code", () => {
    const e = new Error('No address added out of total 1 resolved errors: [listen EACCES: permission denied 0.0.0.0:443]');
    expect(listenError('for agents', '0.0.0.0:443', e, '--grpc-addr').message).toContain('port 443 needs privileges');
  });

  it('keeps the message of a cause it has no words for', () => {
    expect(listenError('for HTTP', '127.0.0.1:1', new Error('boom'), '--http-addr').message).toBe(
      'cannot listen for HTTP on 127.0.0.1:1: boom; check --http-addr',
    );
  });
});
