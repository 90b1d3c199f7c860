// @ts-check
// Changing an alert's status: the detail's buttons and the a/r/i keys.
import { api, messageOf, statusOf } from './api.js';
import { refreshCountsSoon } from './counts.js';
import { loadDetail } from './detail.js';
import { el } from './dom.js';
import { renderList, resort } from './list.js';
import { STATUS_SETS, state } from './state.js';
/** @import { Alert, Status } from './api-types.js' */

/** @type {readonly { status: Status, label: string, key: string, done: string }[]} the buttons; done labels the current status */
export const ACTIONS = [
  { status: 'acknowledged', label: 'Acknowledge', key: 'a', done: 'Acknowledged' },
  { status: 'resolved', label: 'Resolve', key: 'r', done: 'Resolved' },
  { status: 'ignored', label: 'Ignore', key: 'i', done: 'Ignored' },
  { status: 'triggered', label: 'Reopen', key: '', done: 'Triggered' },
];

/** @param {Alert} a the buttons for this alert; its current status shows pressed */
export function actionButtons(a) {
  // Reopen only makes sense for an alert that is not triggered.
  return el(
    'div',
    { class: 'actions' },
    ACTIONS.filter(({ status }) => status !== 'triggered' || a.status !== 'triggered').map(({ status, label, key, done }) =>
      el(
        'button',
        {
          type: 'button',
          'data-action': status,
          class: a.status === status ? 'current' : '',
          disabled: a.status === status,
          'aria-pressed': a.status === status ? 'true' : 'false',
          title: key ? `${label} (${key})` : label,
          onclick: () => changeStatus(a.id, status),
        },
        a.status === status ? done : label,
      ),
    ),
  );
}

/**
 * @param {number} id
 * @param {Status} status
 */
export async function changeStatus(id, status) {
  try {
    /** @type {{ alert: Alert }} */
    const r = await api(`/api/v1/alerts/${Number(id)}`, { method: 'PATCH', body: JSON.stringify({ status }) });
    const box = document.getElementById('action-error');
    if (box) box.hidden = true;
    const a = r.alert;
    const shown = STATUS_SETS[state.status];
    if (!shown.length || shown.includes(a.status)) state.alerts.set(a.id, a);
    else state.alerts.delete(a.id);
    resort();
    renderList();
    loadDetail(id);
    refreshCountsSoon();
  } catch (e) {
    const box = document.getElementById('action-error');
    if (box) {
      box.hidden = false;
      box.textContent = statusOf(e) === 403 ? `This token cannot change status: ${messageOf(e)}` : `Could not change the status: ${messageOf(e)}`;
    }
  }
}
