import type { ServerModule } from '../../server/module.js';
import type { FalcoDetails } from '../../shared/alert/payload.js';
import { falcoBlock, type FalcoConfig } from './config.js';

/** Server part of the Falco module: its events reach the server as alerts, so only its block is validated here. */
export const falcoServer: ServerModule<'falco', FalcoConfig> = {
  name: 'falco',
  config: falcoBlock,
  alertSource: {
    source: 'falco',
    fromAgent: true,
    monitoringTool: 'Verdict (Falco)',
    // A Falco alert is a rule's hit: one alertname per rule lets a receiver route each rule its own way.
    alertname: (a) => a.rule || 'FalcoEvent',
    hosts: (details) => {
      const host = (details.falco as Partial<FalcoDetails> | undefined)?.hostname;
      return host ? [host] : [];
    },
  },
};
