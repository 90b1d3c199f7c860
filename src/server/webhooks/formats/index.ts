import type { IntegrationType } from '../../../shared/config/webhooks-config.js';
import type { DeliveryItem, RenderContext } from './alert.js';
import { renderAlertmanager } from './alertmanager.js';
import { renderGeneric } from './generic.js';
import { renderGitlab } from './gitlab.js';
import { renderSlack } from './slack.js';

export const RENDERERS: Record<IntegrationType, (items: readonly DeliveryItem[], ctx: RenderContext) => string> = {
  generic: renderGeneric,
  gitlab: renderGitlab,
  alertmanager: renderAlertmanager,
  slack: renderSlack,
};

/** Most alerts one delivery carries; a fuller group starts a new delivery. */
export const MAX_GROUP_SIZE = 100;
