import type { DeliveryItem, RenderContext, WebhookAlert } from './alert.js';

// A Slack incoming-webhook message: `text` is the notification and fallback,
// `blocks` the message people read. Slack allows 50 blocks.

const MAX_ALERT_BLOCKS = 20;
const ICON: Record<string, string> = { critical: ':red_circle:', high: ':large_orange_circle:', medium: ':large_yellow_circle:', low: ':large_blue_circle:', info: ':white_circle:' };

/** Slack's mrkdwn treats &, < and > as control characters. */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function line(a: WebhookAlert, resolved: boolean): string {
  const title = slackEscape(a.title);
  const head = `${resolved ? ':white_check_mark: Resolved: ' : `${ICON[a.severity] ?? ''} `}*[${a.severity.toUpperCase()}]* ${a.url ? `<${a.url}|${title}>` : title}`;
  return `${head}\n${slackEscape(a.description.slice(0, 500))}`;
}

function context(a: WebhookAlert): string {
  const parts = [`cluster \`${a.cluster}\``];
  if (a.namespace) parts.push(`namespace \`${a.namespace}\``);
  parts.push(`agent \`${a.agent}\``, `${a.source}`, `seen ${a.count}×`);
  return slackEscape(parts.join(' · '));
}

export function renderSlack(items: readonly DeliveryItem[], _ctx: RenderContext): string {
  const resolved = items[0]!.event === 'resolved';
  const first = items[0]!.alert;
  const text = items.length === 1
    ? `${resolved ? 'Resolved' : `[${first.severity.toUpperCase()}]`} ${first.title}`
    : `${items.length} ${resolved ? 'resolved' : items[0]!.event === 'repeated' ? 'repeating' : 'new'} Verdict alerts`;
  const blocks: unknown[] = [];
  for (const { alert } of items.slice(0, MAX_ALERT_BLOCKS)) {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: line(alert, resolved) } });
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: context(alert) }] });
  }
  if (items.length > MAX_ALERT_BLOCKS) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `and ${items.length - MAX_ALERT_BLOCKS} more` }] });
  return JSON.stringify({ text: slackEscape(text), blocks });
}
