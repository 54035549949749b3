// Queues: the listing with a filter, and a form to declare one.

import { enc, put } from '../api.js';
import { heading, listView, vhostNames } from '../page.js';
import { form, json, link, notify, num, parseObject, rate, section } from '../ui.js';

export function features(o) {
  const f = [];
  if (o.durable) f.push('durable');
  if (o.auto_delete) f.push('auto-delete');
  if (o.exclusive) f.push('exclusive');
  if (o.internal) f.push('internal');
  const args = json(o.arguments);
  if (args !== '–') f.push(`args ${args}`);
  if (o.policy) f.push(`policy ${o.policy}`);
  return f.join(', ') || '–';
}

const COLUMNS = [
  { label: 'Virtual host', cell: (q) => q.vhost },
  { label: 'Name', key: true, cell: (q) => link('queues', q.vhost, q.name) },
  { label: 'Type', cell: (q) => q.type || 'classic' },
  { label: 'Features', cell: features },
  { label: 'State', cell: (q) => q.state || '–' },
  { label: 'Ready', num: true, cell: (q) => num(q.messages_ready) },
  { label: 'Unacked', num: true, cell: (q) => num(q.messages_unacknowledged) },
  { label: 'Total', num: true, cell: (q) => num(q.messages) },
  { label: 'Consumers', num: true, cell: (q) => num(q.consumers) },
  { label: 'Incoming', num: true, cell: (q) => rate(q.message_stats, 'publish') },
  { label: 'Deliver / get', num: true, cell: (q) => rate(q.message_stats, 'deliver_get') },
  { label: 'Ack', num: true, cell: (q) => rate(q.message_stats, 'ack') },
];

export default {
  title: () => 'Queues',
  async render(main) {
    const listing = listView({ what: 'Queues', path: '/queues', columns: COLUMNS, empty: 'No queues.' });
    const vhosts = await vhostNames();
    const add = form('Add a queue', [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: vhosts.map((v) => [v, v]) },
      { name: 'name', label: 'Name', required: true },
      { name: 'type', label: 'Type', type: 'select', options: [['classic', 'Classic'], ['quorum', 'Quorum']] },
      { name: 'durable', label: 'Durable', type: 'checkbox', value: true },
      { name: 'auto_delete', label: 'Auto-delete', type: 'checkbox' },
      { name: 'arguments', label: 'Arguments (JSON object)', type: 'textarea', hint: 'For example {"x-max-length": 1000}' },
    ], 'Add queue', async (v, node) => {
      if (!v.name.trim()) throw new Error('A queue needs a name.');
      const args = parseObject(v.arguments, 'Arguments');
      if (v.type !== 'classic') args['x-queue-type'] = v.type;
      await put(`/queues/${enc(v.vhost)}/${enc(v.name)}`, { durable: v.durable, auto_delete: v.auto_delete, arguments: args });
      notify(`Queue ${v.name} declared.`);
      node.reset();
      await listing.refresh();
    });
    main.append(heading('Queues'), section('All queues', listing.node), section('Add a queue', add));
    await listing.refresh();
  },
};
