import { describe, expect, it } from 'vitest';
import { verifyStandardWebhook } from './standard-webhooks.js';

// The independent verifier the delivery tests trust is itself checked against
// the Standard Webhooks specification's published test vector, so a mistake
// shared by it and the signer (e.g. the signed content's layout) cannot pass.

const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  headers: {
    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  },
  body: '{"test": 2432232314}',
};

describe('independent Standard Webhooks verifier', () => {
  it('accepts the published test vector, also as one of several signatures', async () => {
    await verifyStandardWebhook(VECTOR.secret, VECTOR.headers, VECTOR.body, { nowS: 1614265330 });
    await verifyStandardWebhook(VECTOR.secret, { ...VECTOR.headers, 'webhook-signature': `v1,AAAA ${VECTOR.headers['webhook-signature']}` }, VECTOR.body, {
      nowS: 1614265330,
    });
  });

  it('refuses a changed body, id or timestamp, another secret, another version, and a stale timestamp', async () => {
    const now = { nowS: 1614265330 };
    await expect(verifyStandardWebhook(VECTOR.secret, VECTOR.headers, '{"test": 2432232315}', now)).rejects.toThrow(/no matching signature/);
    await expect(verifyStandardWebhook(VECTOR.secret, { ...VECTOR.headers, 'webhook-id': 'msg_other' }, VECTOR.body, now)).rejects.toThrow(
      /no matching signature/,
    );
    await expect(verifyStandardWebhook(VECTOR.secret, { ...VECTOR.headers, 'webhook-timestamp': '1614265331' }, VECTOR.body, now)).rejects.toThrow(
      /no matching signature/,
    );
    await expect(verifyStandardWebhook(`whsec_${Buffer.alloc(24, 3).toString('base64')}`, VECTOR.headers, VECTOR.body, now)).rejects.toThrow(
      /no matching signature/,
    );
    await expect(
      verifyStandardWebhook(
        VECTOR.secret,
        { ...VECTOR.headers, 'webhook-signature': VECTOR.headers['webhook-signature'].replace('v1,', 'v2,') },
        VECTOR.body,
        now,
      ),
    ).rejects.toThrow(/no matching signature/);
    await expect(verifyStandardWebhook(VECTOR.secret, VECTOR.headers, VECTOR.body, { nowS: 1614265330 + 301 })).rejects.toThrow(/tolerance/);
  });
});
