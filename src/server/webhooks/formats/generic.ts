import type { DeliveryItem, RenderContext } from './alert.js';

// Verdict's own payload, in the envelope Standard Webhooks recommends:
// {type, timestamp, data}. One delivery carries one kind of event; with a
// group_window it may carry several alerts, so `data.alerts` is always a list.
export function renderGeneric(items: readonly DeliveryItem[], ctx: RenderContext): string {
  return JSON.stringify({
    type: `alert.${items[0]!.event}`,
    timestamp: ctx.createdAt,
    data: { integration: ctx.integration, alerts: items.map((i) => i.alert) },
  });
}
