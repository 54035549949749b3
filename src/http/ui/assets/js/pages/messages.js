// Publishing and getting messages: the forms the queue and exchange pages share.

import { enc, post } from '../api.js';
import { form, h, notify, num, parseObject, table } from '../ui.js';

/** Publishes through `exchange` ('' is the default exchange); routingKey fixed when given. */
export function publishForm(vhost, exchange, routingKey) {
  const fields = [];
  if (routingKey === undefined) fields.push({ name: 'routing_key', label: 'Routing key' });
  fields.push(
    { name: 'delivery_mode', label: 'Delivery mode', type: 'select', options: [['1', '1 – non-persistent'], ['2', '2 – persistent']] },
    { name: 'headers', label: 'Headers (JSON object)', type: 'textarea', rows: 2 },
    { name: 'properties', label: 'Other properties (JSON object)', type: 'textarea', rows: 2, hint: 'For example {"content_type": "text/plain", "correlation_id": "7"}' },
    { name: 'payload', label: 'Payload', type: 'textarea', rows: 4 },
    { name: 'encoding', label: 'Payload encoding', type: 'select', options: [['string', 'String'], ['base64', 'Base64']] },
  );
  return form('Publish a message', fields, 'Publish message', async (v) => {
    const properties = parseObject(v.properties, 'Properties');
    properties.delivery_mode = Number(v.delivery_mode);
    const headers = parseObject(v.headers, 'Headers');
    if (Object.keys(headers).length) properties.headers = headers;
    const key = routingKey ?? v.routing_key;
    const reply = await post(`/exchanges/${enc(vhost)}/${enc(exchange || 'amq.default')}/publish`, {
      properties, routing_key: key, payload: v.payload, payload_encoding: v.encoding,
    });
    notify(reply && reply.routed ? 'Message published.' : 'Message published, but it was not routed to any queue.');
  });
}

/** Gets messages from a queue and shows them below the form. */
export function getForm(vhost, queue, afterwards) {
  const out = h('div', { class: 'messages' });
  const node = form('Get messages', [
    { name: 'ackmode', label: 'Ack mode', type: 'select', options: [
      ['ack_requeue_true', 'Nack, requeue'], ['ack_requeue_false', 'Ack, remove from queue'],
      ['reject_requeue_true', 'Reject, requeue'], ['reject_requeue_false', 'Reject, do not requeue']] },
    { name: 'encoding', label: 'Encoding', type: 'select', options: [['auto', 'Automatic string/base64'], ['base64', 'Base64']] },
    { name: 'count', label: 'Messages', type: 'number', value: '1', min: '1', required: true },
  ], 'Get messages', async (v) => {
    const count = Number(v.count) || 1;
    const messages = await post(`/queues/${enc(vhost)}/${enc(queue)}/get`, {
      count, ackmode: v.ackmode, encoding: v.encoding, truncate: 50000,
    });
    out.replaceChildren(showMessages(messages));
    notify(messages.length ? `${messages.length} message${messages.length === 1 ? '' : 's'} received.` : 'The queue is empty.');
    if (afterwards) await afterwards();
  });
  return h('div', {}, node, out);
}

function showMessages(messages) {
  if (!messages.length) return h('p', { class: 'empty' }, 'Queue is empty.');
  return table('Messages received', [
    { label: '#', key: true, num: true, cell: (m) => String(messages.indexOf(m) + 1) },
    { label: 'Exchange', cell: (m) => m.exchange || '(AMQP default)' },
    { label: 'Routing key', cell: (m) => m.routing_key },
    { label: 'Redelivered', cell: (m) => (m.redelivered ? 'yes' : 'no') },
    { label: 'Properties', cell: (m) => h('code', {}, JSON.stringify(m.properties || {})) },
    { label: 'Bytes', num: true, cell: (m) => num(m.payload_bytes) },
    { label: 'Payload', cell: (m) => h('pre', { class: 'payload' }, m.payload, m.payload_encoding === 'base64' ? h('span', { class: 'hint' }, ' (base64)') : null) },
    { label: 'Left in queue', num: true, cell: (m) => num(m.message_count) },
  ], messages);
}
