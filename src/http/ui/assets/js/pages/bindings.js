// Bindings: the table (with unbind) and the add-binding form, for queue and exchange pages.

import { del, enc, post } from '../api.js';
import { actionButton, form, h, json, link, notify, parseObject, table } from '../ui.js';

function endpoint(vhost, name, type) {
  if (type === 'exchange' && name === '') return '(AMQP default)';
  return link(type === 'queue' ? 'queues' : 'exchanges', vhost, name === '' ? 'amq.default' : name, name || '(AMQP default)');
}

/** bindings: RabbitMQ's binding objects; changed() runs after an unbind. */
export function bindingsTable(caption, bindings, changed) {
  return table(caption, [
    { label: 'From', key: true, cell: (b) => endpoint(b.vhost, b.source, 'exchange') },
    { label: 'To', cell: (b) => [endpoint(b.vhost, b.destination, b.destination_type), ` (${b.destination_type})`] },
    { label: 'Routing key', cell: (b) => h('code', {}, b.routing_key) },
    { label: 'Arguments', cell: (b) => json(b.arguments) },
    { label: 'Action', cell: (b) => (b.source === '' ? '–' : actionButton('Unbind', `Remove the binding from ${b.source} to ${b.destination} with key "${b.routing_key}"?`, async () => {
      const kind = b.destination_type === 'queue' ? 'q' : 'e';
      const props = b.properties_key ?? (b.routing_key === '' ? '~' : b.routing_key);
      await del(`/bindings/${enc(b.vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(props)}`);
      notify(`Binding from ${b.source} to ${b.destination} removed.`);
      await changed();
    }, { 'aria-label': `Unbind ${b.source} from ${b.destination} with key ${b.routing_key}` })) },
  ], bindings, 'No bindings.');
}

/**
 * The add-binding form. For a queue: {vhost, queue}: asks for the source exchange. For an
 * exchange: {vhost, exchange}: asks for the destination and its type.
 */
export function bindForm({ vhost, queue, exchange }, changed) {
  const fields = queue !== undefined
    ? [{ name: 'source', label: 'From exchange', required: true }]
    : [
      { name: 'type', label: 'Destination type', type: 'select', options: [['q', 'Queue'], ['e', 'Exchange']] },
      { name: 'destination', label: 'To (queue or exchange name)', required: true },
    ];
  fields.push(
    { name: 'routing_key', label: 'Routing key' },
    { name: 'arguments', label: 'Arguments (JSON object)', type: 'textarea', rows: 2 },
  );
  return form(queue !== undefined ? 'Bind this queue to an exchange' : 'Add a binding from this exchange', fields, 'Bind', async (v, node) => {
    const source = queue !== undefined ? v.source : exchange;
    const kind = queue !== undefined ? 'q' : v.type;
    const dest = queue !== undefined ? queue : v.destination;
    if (!source || !dest) throw new Error('Both ends of the binding need a name.');
    await post(`/bindings/${enc(vhost)}/e/${enc(source)}/${kind}/${enc(dest)}`, {
      routing_key: v.routing_key, arguments: parseObject(v.arguments, 'Arguments'),
    });
    notify(`Bound ${dest} to ${source}.`);
    node.reset();
    await changed();
  });
}
