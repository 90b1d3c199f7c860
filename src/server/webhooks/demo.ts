import { ConfigError } from '../../shared/config/schema.js';
import { VerdictError } from '../../shared/errors.js';
import { parseWebhooksJson, type WebhooksConfig } from '../../shared/config/webhooks-config.js';
import { newSecret } from './signer.js';

// `verdict demo --webhook <url> [--webhook-secret <whsec_...>]`: one signed
// generic webhook, so delivery can be seen working with one command. Only the
// CLI uses this, hence a usage error (VERDICT_USAGE) for a bad flag.

export const DEMO_INTEGRATION = 'demo-webhook';

export function demoWebhooks(url: string, secret?: string): { config: WebhooksConfig; secret: string } {
  const s = secret ?? newSecret();
  let host = '';
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    // The validator below says what is wrong with the URL.
  }
  try {
    const config = parseWebhooksJson(
      {
        // Naming the endpoint on the command line is the operator's consent,
        // even when it is on this machine or the local network.
        allow_private_addresses: host ? [host] : [],
        integrations: [{ name: DEMO_INTEGRATION, type: 'generic', url, secrets: [s], retry_schedule: ['1s', '5s', '30s', '2m', '5m'] }],
      },
      'verdict demo',
    );
    return { config, secret: s };
  } catch (e) {
    if (e instanceof ConfigError) {
      const i = e.issues[0]!;
      const flag = i.path.includes('secrets') ? '--webhook-secret' : '--webhook';
      throw new VerdictError('VERDICT_USAGE', `verdict demo: ${flag}: ${i.message}`);
    }
    throw e;
  }
}
