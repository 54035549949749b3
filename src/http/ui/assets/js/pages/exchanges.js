// Exchanges: the listing with a filter, and a form to declare one.

import { enc, put } from '../api.js';
import { heading, listView, vhostNames } from '../page.js';
import { form, link, notify, parseObject, rate, section } from '../ui.js';
import { features } from './queues.js';

/** The default exchange is named "" and addressed as amq.default. */
export const exchangeName = (name) => name || '(AMQP default)';

const COLUMNS = [
  { label: 'Virtual host', cell: (x) => x.vhost },
  { label: 'Name', key: true, cell: (x) => link('exchanges', x.vhost, x.name || 'amq.default', exchangeName(x.name)) },
  { label: 'Type', cell: (x) => x.type },
  { label: 'Features', cell: features },
  { label: 'Message rate in', num: true, cell: (x) => rate(x.message_stats, 'publish_in') },
  { label: 'Message rate out', num: true, cell: (x) => rate(x.message_stats, 'publish_out') },
];

export default {
  title: () => 'Exchanges',
  async render(main) {
    const listing = listView({ what: 'Exchanges', path: '/exchanges', columns: COLUMNS, empty: 'No exchanges.' });
    const vhosts = await vhostNames();
    const add = form('Add an exchange', [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: vhosts.map((v) => [v, v]) },
      { name: 'name', label: 'Name', required: true },
      { name: 'type', label: 'Type', type: 'select', options: ['direct', 'fanout', 'headers', 'topic'].map((t) => [t, t]) },
      { name: 'durable', label: 'Durable', type: 'checkbox', value: true },
      { name: 'auto_delete', label: 'Auto-delete', type: 'checkbox' },
      { name: 'internal', label: 'Internal', type: 'checkbox' },
      { name: 'arguments', label: 'Arguments (JSON object)', type: 'textarea', rows: 2 },
    ], 'Add exchange', async (v, node) => {
      if (!v.name.trim()) throw new Error('An exchange needs a name.');
      await put(`/exchanges/${enc(v.vhost)}/${enc(v.name)}`, {
        type: v.type, durable: v.durable, auto_delete: v.auto_delete, internal: v.internal,
        arguments: parseObject(v.arguments, 'Arguments'),
      });
      notify(`Exchange ${v.name} declared.`);
      node.reset();
      await listing.refresh();
    });
    main.append(heading('Exchanges'), section('All exchanges', listing.node), section('Add an exchange', add));
    await listing.refresh();
  },
};
