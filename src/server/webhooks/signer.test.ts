import { describe, expect, it } from 'vitest';
import { newSecret, sign, signatureHeader, verify } from './signer.js';
import { whsecProblem } from '../../shared/config/webhooks-config.js';

describe('Standard Webhooks signer', () => {
  it('reproduces the published test vector', () => {
    expect(sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')).toBe(
      'g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });

  it('signs with every active secret so rotation does not break receivers', () => {
    const [a, b] = [newSecret(), newSecret()];
    const h = signatureHeader([a, b], 'msg_1', 1700000000, '{}');
    expect(h.split(' ')).toHaveLength(2);
    for (const s of [a, b]) expect(verify(s, { id: 'msg_1', timestamp: '1700000000', signature: h }, '{}', { nowS: 1700000010 })).toBe(true);
    expect(verify(newSecret(), { id: 'msg_1', timestamp: '1700000000', signature: h }, '{}', { nowS: 1700000010 })).toBe(false);
    // Stale timestamps are refused: a captured request cannot be replayed later.
    expect(verify(a, { id: 'msg_1', timestamp: '1700000000', signature: h }, '{}', { nowS: 1700001000 })).toBe(false);
  });

  it('makes secrets the config accepts', () => {
    expect(whsecProblem(newSecret())).toBeUndefined();
  });
});
