import type { DeliveryItem, RenderContext, WebhookAlert } from './alert.js';

// A Slack incoming-webhook message: `text` is the notification and fallback,
// `blocks` the message people read. Slack allows 50 blocks.

const MAX_ALERT_BLOCKS = 20;
/** Slack refuses (400 invalid_blocks) a section or context text longer than this. */
const SLACK_TEXT_MAX = 3000;
const TITLE_MAX = 300;
const DESCRIPTION_MAX = 500;
const ICON: Record<string, string> = {
  critical: ':red_circle:',
  high: ':large_orange_circle:',
  medium: ':large_yellow_circle:',
  low: ':large_blue_circle:',
  info: ':white_circle:',
};

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };

/** Slack's mrkdwn treats &, < and > as control characters. */
export function slackEscape(s: string): string {
  return s.replace(/[&<>]/g, (c) => ENTITIES[c]!);
}

/**
 * Escapes `s` and cuts it to at most `max` characters of escaped text, never
 * inside an entity or a surrogate pair; a cut text ends in "…". Agents choose
 * titles, descriptions and names, so their length is not ours to trust.
 */
function slackClip(s: string, max: number): string {
  const whole = slackEscape(s);
  if (whole.length <= max) return whole;
  let out = '';
  for (const ch of s) {
    const piece = ENTITIES[ch] ?? ch;
    if (out.length + piece.length > max - 1) break;
    out += piece;
  }
  return `${out}…`;
}

function line(a: WebhookAlert, resolved: boolean): string {
  const title = slackClip(a.title, TITLE_MAX);
  const head = `${resolved ? ':white_check_mark: Resolved: ' : `${ICON[a.severity] ?? ''} `}*[${a.severity.toUpperCase()}]* ${a.url ? `<${a.url}|${title}>` : title}`;
  return `${head}\n${slackClip(a.description, Math.max(0, Math.min(DESCRIPTION_MAX, SLACK_TEXT_MAX - head.length - 1)))}`;
}

function context(a: WebhookAlert): string {
  const parts = [`cluster \`${a.cluster}\``];
  if (a.namespace) parts.push(`namespace \`${a.namespace}\``);
  parts.push(`agent \`${a.agent}\``, `${a.source}`, `seen ${a.count}×`);
  return slackClip(parts.join(' · '), SLACK_TEXT_MAX);
}

export function renderSlack(items: readonly DeliveryItem[], _ctx: RenderContext): string {
  const resolved = items[0]!.event === 'resolved';
  const first = items[0]!.alert;
  const text =
    items.length === 1
      ? `${resolved ? 'Resolved' : `[${first.severity.toUpperCase()}]`} ${first.title}`
      : `${items.length} ${resolved ? 'resolved' : items[0]!.event === 'repeated' ? 'repeating' : 'new'} Verdict alerts`;
  const blocks: unknown[] = [];
  for (const { alert } of items.slice(0, MAX_ALERT_BLOCKS)) {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: line(alert, resolved) } });
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: context(alert) }] });
  }
  if (items.length > MAX_ALERT_BLOCKS) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `and ${items.length - MAX_ALERT_BLOCKS} more` }] });
  return JSON.stringify({ text: slackClip(text, SLACK_TEXT_MAX), blocks });
}
