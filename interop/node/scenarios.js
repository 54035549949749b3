// amqplib scenarios; `node scenarios.js promise` uses require('amqplib') (promise API),
// `node scenarios.js cb` uses require('amqplib/callback_api'), adapted to promises here.
'use strict';
const crypto = require('crypto');
const MODE = process.argv[2] || 'promise';
const URL = process.env.INTEROP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
const BAD_URL = URL.replace('guest:guest@', 'guest:wrong@');
const P = process.env.INTEROP_PREFIX || 'it.node';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// callback API channel -> an object whose async methods return promises. Each method's
// optional arguments are filled with defaults so the callback lands in its documented slot.
const ARITY = { assertQueue: [undefined, {}], checkQueue: [undefined], deleteQueue: [undefined, {}],
  bindQueue: [undefined, undefined, undefined, {}], assertExchange: [undefined, undefined, {}], checkExchange: [undefined],
  deleteExchange: [undefined, {}], prefetch: [undefined, false], consume: [undefined, undefined, {}], get: [undefined, {}],
  cancel: [undefined], close: [], waitForConfirms: [] };
function wrapCb(ch) {
  const w = { raw: ch };
  for (const k of ['publish', 'sendToQueue', 'ack', 'nack', 'reject', 'on']) w[k] = ch[k].bind(ch);
  for (const [k, defs] of Object.entries(ARITY)) {
    w[k] = (...args) => new Promise((res, rej) => {
      const a = defs.map((d, i) => (args[i] === undefined ? d : args[i]));
      ch[k](...a, (err, ok) => (err ? rej(err) : res(ok)));
    });
  }
  return w;
}
let api;
async function connect(url = URL) {
  if (MODE === 'cb') {
    const cb = require('amqplib/callback_api');
    const c = await new Promise((res, rej) => cb.connect(url, (e, c) => (e ? rej(e) : res(c))));
    c.on('error', () => {});
    return {
      raw: c,
      channel: async () => { const ch = await new Promise((res, rej) => c.createChannel((e, ch) => (e ? rej(e) : res(ch)))); ch.on('error', () => {}); return wrapCb(ch); },
      confirmChannel: async () => { const ch = await new Promise((res, rej) => c.createConfirmChannel((e, ch) => (e ? rej(e) : res(ch)))); ch.on('error', () => {}); return wrapCb(ch); },
      close: () => new Promise((res) => c.close(() => res())),
    };
  }
  api = api || require('amqplib');
  const c = await api.connect(url);
  c.on('error', () => {});
  return {
    raw: c,
    channel: async () => { const ch = await c.createChannel(); ch.on('error', () => {}); return ch; },
    confirmChannel: async () => { const ch = await c.createConfirmChannel(); ch.on('error', () => {}); return ch; },
    close: () => c.close(),
  };
}

class Mismatch extends Error { constructor(m, obs) { super(m); this.obs = obs; } }
function expect(obs, want) {
  const bad = Object.keys(want).filter((k) => JSON.stringify(obs[k]) !== JSON.stringify(want[k]));
  if (bad.length) throw new Mismatch('unexpected ' + bad.map((k) => `${k}=${JSON.stringify(obs[k])} (want ${JSON.stringify(want[k])})`).join('; '), obs);
  return obs;
}
function emit(name, ok, obs, err) { process.stdout.write(JSON.stringify({ scenario: name, ok, obs: obs === undefined ? null : obs, err: err || '' }) + '\n'); }
async function waitFor(pred, ms = 5000) { const end = Date.now() + ms; while (!pred() && Date.now() < end) await sleep(10); }

const LARGE_LEN = 5 * 1024 * 1024 + 7;
function largeBody() {
  const unit = Buffer.alloc(251); for (let i = 0; i < 251; i++) unit[i] = (i * 7 + 3) % 251;
  const b = Buffer.alloc(LARGE_LEN); const n = Math.floor(LARGE_LEN / 251);
  for (let i = 0; i < n; i++) unit.copy(b, i * 251); return b;
}
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const HEADERS = { s: 'str', i: 42, b: true, n: { k: 'v' }, l: [1, 'two'] };
const PROPS = { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2, priority: 5, correlationId: 'corr-1',
  replyTo: 'rq', expiration: '60000', messageId: 'mid-1', timestamp: 1700000000, type: 't1', userId: 'guest', appId: 'interop' };
const ROUTING_Q1 = ['direct-a', 'fanout', 'topic-x.y', 'headers-ab'];
const ROUTING_Q2 = ['direct-b', 'fanout', 'topic-x.y', 'topic-x.y.z', 'topic-x', 'headers-a', 'headers-ab'];
const text404 = (q) => `NOT_FOUND - no queue '${q}' in vhost '/'`;
const text406 = (q) => `PRECONDITION_FAILED - inequivalent arg 'durable' for queue '${q}' in vhost '/': received 'true' but current is 'false'`;
function closeErr(e) { // amqplib: "Operation failed: ...; 404 (NOT-FOUND) with message "..."" and e.code
  const m = /with message "(.*)"\s*$/s.exec(e.message);
  return { code: e.code, text: m ? m[1] : e.message };
}
// vhost_user: the non-default user and vhost of interop/definitions.json.
const APP_USER = process.env.INTEROP_APP_USER || 'interop-app';
const APP_PASS = process.env.INTEROP_APP_PASS || 'interop-app-secret';
const APP_VHOST = process.env.INTEROP_APP_VHOST || 'interop-app';
const APP_URL = process.env.INTEROP_APP_URL || `amqp://${APP_USER}:${APP_PASS}@127.0.0.1:5672/${APP_VHOST}`;
const APP_ROOT_URL = APP_URL.replace(/\/[^/]*$/, '/%2f');   // the same user on vhost /
const APP_Q = `interop.app.${P}`; const DENIED_Q = `${P}.denied`; const APP_BODY = 'vhost-user';
// RabbitMQ 4.x (and Warren) name the permission; 3.10 does not. Either is accepted.
const texts403 = (q) => ['configure ', ''].map((w) => `ACCESS_REFUSED - ${w}access to queue '${q}' in vhost '${APP_VHOST}' refused for user '${APP_USER}'`);

const S = {};
S.connect = async () => {
  const c = await connect(); const ch = await c.channel();
  const props = c.raw.connection.serverProperties;
  const caps = props.capabilities || {};
  // amqplib's own serverProperties test asserts the product.
  const obs = { open: true, product: props.product, capabilities: Object.keys(caps).filter((k) => caps[k]).sort() };
  await c.close();
  if (obs.product !== 'RabbitMQ') throw new Mismatch('product is not RabbitMQ', obs);
  // amqplib's ipv6 test: the same broker on [::1] (INTEROP_URL6 is set where the broker listens there).
  if (process.env.INTEROP_URL6) {
    try { const c6 = await connect(process.env.INTEROP_URL6); await c6.close(); }
    catch (e) { throw new Mismatch(`no connection on ${process.env.INTEROP_URL6}: ${e.message}`, obs); }
  }
  return obs;
};
S.declare = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.declare`;
  const r = await ch.assertQueue(q, { durable: false });
  const types = ['direct', 'fanout', 'topic', 'headers'];
  for (const t of types) { await ch.assertExchange(`${P}.x.${t}`, t, { durable: false }); await ch.checkExchange(`${P}.x.${t}`); }
  ch.sendToQueue(q, Buffer.from('1')); ch.sendToQueue(q, Buffer.from('2')); await sleep(200);
  const r2 = await ch.checkQueue(q); const d = await ch.deleteQueue(q);
  for (const t of types) await ch.deleteExchange(`${P}.x.${t}`);
  await c.close();
  return expect({ declare_ok: [r.queue, r.messageCount, r.consumerCount], passive_count: r2.messageCount, delete_count: d.messageCount },
    { declare_ok: [q, 0, 0], passive_count: 2, delete_count: 2 });
};
async function drain(ch, q) { const out = []; for (;;) { const m = await ch.get(q, { noAck: true }); if (!m) return out; out.push(m.content.toString()); } }
S.routing = async () => {
  const c = await connect(); const ch = await c.channel(); const q1 = `${P}.r1`, q2 = `${P}.r2`; const X = (t) => `${P}.rx.${t}`;
  await ch.assertQueue(q1); await ch.assertQueue(q2);
  for (const t of ['direct', 'fanout', 'topic', 'headers']) await ch.assertExchange(X(t), t);
  await ch.bindQueue(q1, X('direct'), 'a'); await ch.bindQueue(q2, X('direct'), 'b');
  await ch.bindQueue(q1, X('fanout'), ''); await ch.bindQueue(q2, X('fanout'), '');
  await ch.bindQueue(q1, X('topic'), 'x.*'); await ch.bindQueue(q2, X('topic'), 'x.#');
  await ch.bindQueue(q1, X('headers'), '', { 'x-match': 'all', a: 1, b: 2 });
  await ch.bindQueue(q2, X('headers'), '', { 'x-match': 'any', a: 1, b: 2 });
  for (const k of 'abc') ch.publish(X('direct'), k, Buffer.from(`direct-${k}`));
  ch.publish(X('fanout'), 'zzz', Buffer.from('fanout'));
  for (const k of ['x.y', 'x.y.z', 'x']) ch.publish(X('topic'), k, Buffer.from(`topic-${k}`));
  ch.publish(X('headers'), '', Buffer.from('headers-a'), { headers: { a: 1 } });
  ch.publish(X('headers'), '', Buffer.from('headers-ab'), { headers: { a: 1, b: 2 } });
  await sleep(200);
  const obs = { q1: await drain(ch, q1), q2: await drain(ch, q2) }; await c.close();
  return expect(obs, { q1: ROUTING_Q1, q2: ROUTING_Q2 });
};
S.properties = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.props`;
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('props-body'), { ...PROPS, headers: HEADERS }); await sleep(100);
  const m = await ch.get(q, { noAck: true }); await c.close();
  const props = {}; for (const k of Object.keys(PROPS).concat(['headers'])) props[k] = m.properties[k];
  const obs = { body: m.content.toString(), exchange: m.fields.exchange, routing_key: m.fields.routingKey, redelivered: m.fields.redelivered,
    message_count: m.fields.messageCount, props };
  return expect(obs, { body: 'props-body', props: { ...PROPS, headers: HEADERS } });
};
S.consume_prefetch = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.prefetch`;
  await ch.assertQueue(q); await ch.prefetch(2);
  for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  const got = []; await ch.consume(q, (m) => got.push(m));
  await waitFor(() => got.length >= 2); await sleep(400); const before = got.length;
  let acked = 0; const end = Date.now() + 5000;
  while (acked < 5 && Date.now() < end) { while (acked < got.length) ch.ack(got[acked++]); await sleep(20); }
  await c.close();
  return expect({ before_ack: before, bodies: got.map((m) => m.content.toString()), redelivered: got.map((m) => m.fields.redelivered) },
    { before_ack: 2, bodies: ['m0', 'm1', 'm2', 'm3', 'm4'] });
};
S.get = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.get`;
  await ch.assertQueue(q); for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(`g${i}`)); await sleep(100);
  const seq = [];
  for (let i = 0; i < 3; i++) { const m = await ch.get(q); seq.push([m.content.toString(), m.fields.messageCount, m.fields.redelivered]); ch.ack(m); }
  const e = await ch.get(q); await c.close();
  return expect({ gets: seq, empty: e === false }, { gets: [['g0', 2, false], ['g1', 1, false], ['g2', 0, false]], empty: true });
};
S.nack_requeue = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.nack`;
  await ch.assertQueue(q); ch.sendToQueue(q, Buffer.from('n1')); ch.sendToQueue(q, Buffer.from('n2')); await sleep(100);
  const seq = []; let m;
  m = await ch.get(q); seq.push([m.content.toString(), m.fields.redelivered]); ch.nack(m, false, true);
  m = await ch.get(q); seq.push([m.content.toString(), m.fields.redelivered]); ch.reject(m, false);
  m = await ch.get(q); seq.push([m.content.toString(), m.fields.redelivered]); ch.nack(m, false, false);
  const e = await ch.get(q); await c.close();
  return expect({ seq, empty: e === false }, { seq: [['n1', false], ['n1', true], ['n2', false]], empty: true });
};
S.confirms = async () => {
  const c = await connect(); const ch = await c.confirmChannel(); const q = `${P}.confirms`;
  await ch.assertQueue(q);
  let acked = 0, nacked = 0; const ps = [];
  for (let i = 0; i < 10; i++) ps.push(new Promise((res) => ch.sendToQueue(q, Buffer.from(`c${i}`), {}, (err) => { err ? nacked++ : acked++; res(); })));
  await Promise.all(ps); await ch.waitForConfirms();
  const r = await ch.checkQueue(q); await c.close();
  return expect({ acked, nacked, count: r.messageCount }, { acked: 10, nacked: 0, count: 10 });
};
S.mandatory = async () => {
  const c = await connect(); const ch = await c.confirmChannel(); const rets = [];
  ch.on('return', (m) => rets.push({ reply_code: m.fields.replyCode, reply_text: m.fields.replyText, exchange: m.fields.exchange, routing_key: m.fields.routingKey, body: m.content.toString() }));
  let acked = false;
  await new Promise((res) => ch.publish('', `${P}.nowhere`, Buffer.from('ret'), { mandatory: true }, (err) => { acked = !err; res(); }));
  await waitFor(() => rets.length > 0, 3000); await c.close();
  return expect({ returns: rets, confirm_acked: acked },
    { returns: [{ reply_code: 312, reply_text: 'NO_ROUTE', exchange: '', routing_key: `${P}.nowhere`, body: 'ret' }], confirm_acked: true });
};
S.competing = async () => {
  const c = await connect(); const q = `${P}.work`; const chs = [await c.channel(), await c.channel()];
  await chs[0].assertQueue(q); const counts = [0, 0]; const seen = [];
  for (let i = 0; i < 2; i++) {
    await chs[i].prefetch(1);
    await chs[i].consume(q, (m) => { counts[i]++; seen.push(m.content.toString()); setTimeout(() => chs[i].ack(m), 5); });
  }
  const pub = await c.channel(); for (let i = 0; i < 20; i++) pub.sendToQueue(q, Buffer.from(`w${i}`));
  await waitFor(() => seen.length >= 20, 10000); await sleep(50); await c.close();
  return expect({ total: seen.length, distinct: new Set(seen).size, both_busy: Math.min(...counts) >= 5 }, { total: 20, distinct: 20, both_busy: true });
};
S.rpc = async () => {
  const c = await connect(); const srv = await c.channel(); const cli = await c.channel(); const q = `${P}.rpc`;
  await srv.assertQueue(q);
  await srv.consume(q, (m) => { srv.sendToQueue(m.properties.replyTo, Buffer.concat([Buffer.from('reply:'), m.content]), { correlationId: m.properties.correlationId }); srv.ack(m); });
  const r = await cli.assertQueue('', { exclusive: true }); const replies = [];
  await cli.consume(r.queue, (m) => replies.push([m.properties.correlationId, m.content.toString()]), { noAck: true });
  cli.sendToQueue(q, Buffer.from('ping'), { replyTo: r.queue, correlationId: 'c-1' });
  await waitFor(() => replies.length > 0); await c.close();
  return expect({ reply_queue: r.queue, replies }, { reply_queue: r.queue.startsWith('amq.gen-') ? r.queue : 'amq.gen-?', replies: [['c-1', 'reply:ping']] });
};
S.large = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.large`; const body = largeBody();
  await ch.assertQueue(q); ch.sendToQueue(q, body);
  let m = false; const end = Date.now() + 10000;
  while (!m && Date.now() < end) { m = await ch.get(q, { noAck: true }); if (!m) await sleep(50); }
  await c.close();
  return expect({ len: m ? m.content.length : -1, sha256_ok: m ? sha(m.content) === sha(body) : false }, { len: LARGE_LEN, sha256_ok: true });
};
S.err_404 = async () => {
  const c = await connect(); const ch = await c.channel(); let obs = { raised: false };
  try { await ch.checkQueue(`${P}.missing`); } catch (e) { obs = closeErr(e); }
  const ch2 = await c.channel(); await ch2.checkExchange('amq.direct'); obs.conn_open = true; await c.close();
  return expect(obs, { code: 404, text: text404(`${P}.missing`), conn_open: true });
};
S.err_406 = async () => {
  const c = await connect(); const ch = await c.channel(); const q = `${P}.q406`; let obs = { raised: false };
  await ch.assertQueue(q, { durable: false });
  try { await ch.assertQueue(q, { durable: true }); } catch (e) { obs = closeErr(e); }
  const ch2 = await c.channel(); await ch2.deleteQueue(q); await c.close();
  return expect(obs, { code: 406, text: text406(q) });
};
S.err_403 = async () => {
  let obs = { raised: false };
  try { const c = await connect(BAD_URL); await c.close(); } catch (e) { obs = { message: e.message.replace(/\s+/g, ' ').trim() }; }
  if (!/403|ACCESS.REFUSED/.test(obs.message || '')) throw new Mismatch('no 403', obs);
  return obs;
};
S.vhost_user = async () => {
  const c = await connect(APP_URL); const ch = await c.channel();
  const r = await ch.assertQueue(APP_Q);
  const obs = { declare_ok: [r.queue, r.messageCount, r.consumerCount] };
  ch.sendToQueue(APP_Q, Buffer.from(APP_BODY));
  let m = false; const end = Date.now() + 5000;
  while (!m && Date.now() < end) { m = await ch.get(APP_Q, { noAck: true }); if (!m) await sleep(50); }
  obs.got = m ? m.content.toString() : null;
  const ch2 = await c.channel();
  try { await ch2.assertQueue(DENIED_Q); obs.refused_code = null; } catch (e) { const x = closeErr(e); obs.refused_code = x.code; obs.refused_text = x.text; }
  const ch3 = await c.channel(); await ch3.deleteQueue(APP_Q); obs.conn_open = true; await c.close();
  try { const c2 = await connect(APP_ROOT_URL); await c2.close(); obs.root_error = null; } catch (e) {
    // amqplib does not expose the 530: "Expected ConnectionOpenOk; got <ConnectionClose channel:0>"
    obs.root_message = e.message.replace(/\s+/g, ' ').trim();
  }
  if (!texts403(DENIED_Q).includes(obs.refused_text)) throw new Mismatch(`refused_text ${obs.refused_text}`, obs);
  return expect(obs, { declare_ok: [APP_Q, 0, 0], got: APP_BODY, refused_code: 403, conn_open: true,
    root_message: 'Expected ConnectionOpenOk; got <ConnectionClose channel:0>' });
};

// stream: a stream queue read from "first", from offset 3 and from "next" (the default); then the
// refusals. RabbitMQ 3.10 and 4.x name the queue differently in the 406: the part before " for " is kept.
const STREAM_FIRST = [0, 1, 2, 3, 4].map((i) => [`s${i}`, i]);
async function streamConsume(c, s, offset, n, publish) {
  const ch = await c.channel(); await ch.prefetch(2); const got = [];
  await ch.consume(s, (m) => { got.push([m.content.toString(), (m.properties.headers || {})['x-stream-offset']]); ch.ack(m); },
    { arguments: offset === undefined ? {} : { 'x-stream-offset': offset } });
  if (publish) { const pub = await c.confirmChannel(); pub.sendToQueue(s, Buffer.from(publish)); await pub.waitForConfirms(); await pub.close(); }
  await waitFor(() => got.length >= n, 10000); await sleep(300);
  await ch.close();
  return got;
}
S.stream = async () => {
  const c = await connect(); const s = `${P}.stream`;
  const ch = await c.confirmChannel();
  await ch.deleteQueue(s);
  await ch.assertQueue(s, { durable: true, arguments: { 'x-queue-type': 'stream' } });
  for (let i = 0; i < 5; i++) ch.sendToQueue(s, Buffer.from(`s${i}`));
  await ch.waitForConfirms();
  const obs = { first: await streamConsume(c, s, 'first', 5), from3: await streamConsume(c, s, 3, 2),
    next: await streamConsume(c, s, undefined, 1, 's-after') };
  const ch2 = await c.channel();
  try { await ch2.consume(s, () => {}); obs.no_qos_code = null; } catch (e) {
    const x = closeErr(e); obs.no_qos_code = x.code; obs.no_qos_text = x.text.split(' for ')[0];
  }
  const ch3 = await c.channel(); await ch3.checkQueue(s); obs.conn_open_after_406 = true; await c.close();
  const c2 = await connect(); let closed = null;
  c2.raw.on('error', (e) => { closed = e; });
  const g = await c2.channel(); obs.get_code = null;
  try { await g.get(s); } catch (e) { /* the channel ends with the connection */ }
  await waitFor(() => closed !== null, 5000);
  if (closed) { const x = closeErr(closed); obs.get_code = x.code; obs.get_text = x.text; obs.conn_open_after_get = false; }
  else { obs.conn_open_after_get = true; await c2.close(); }
  const c3 = await connect(); const d = await c3.channel(); await d.deleteQueue(s); await c3.close();
  return expect(obs, { first: STREAM_FIRST, from3: STREAM_FIRST.slice(3), next: [['s-after', 5]], no_qos_code: 406,
    no_qos_text: 'PRECONDITION_FAILED - consumer prefetch count is not set', conn_open_after_406: true, get_code: 540,
    get_text: `NOT_IMPLEMENTED - basic.get not supported by stream queues queue '${s}' in vhost '/'`, conn_open_after_get: false });
};

(async () => {
  for (const name of Object.keys(S)) {
    try {
      const obs = await Promise.race([S[name](), sleep(20000).then(() => { throw new Error('timeout 20s'); })]);
      emit(name, true, obs);
    } catch (e) { emit(name, false, e.obs, `${e.name}: ${e.message}`); }
  }
  process.exit(0);
})();
