import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isVerdictError, VerdictError } from './errors.js';

describe('VerdictError', () => {
  it('takes its HTTP and gRPC status from the one code table', () => {
    const e = new VerdictError('VERDICT_CONFLICT', 'alert 3 is already open', { details: { open: 3 } });
    expect([e.httpStatus, e.grpcStatus, e.details]).toEqual([409, ERROR_CODES.VERDICT_CONFLICT.grpc, { open: 3 }]);
    expect(isVerdictError(e)).toBe(true);
    expect(isVerdictError(e, 'VERDICT_NOT_FOUND', 'VERDICT_CONFLICT')).toBe(true);
    expect(isVerdictError(e, 'VERDICT_NOT_FOUND')).toBe(false);
    expect(isVerdictError(new Error('x'))).toBe(false);
  });

  it('every code is documented in docs/errors.md with its status and name', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    for (const [code, c] of Object.entries(ERROR_CODES))
      expect(doc).toMatch(new RegExp(`\\|\\s*\`${code}\`\\s*\\|\\s*${c.http}\\s*\\|\\s*\`${c.api}\`\\s*\\|`));
  });
});
