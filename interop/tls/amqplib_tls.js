// amqplib over TLS: PLAIN login over amqps, then a client certificate with EXTERNAL.
// Reads TLS_HOST, TLS_PORT, TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_PREFIX (see run).
const fs = require('fs');
const path = require('path');
const amqp = require(path.join(__dirname, '../node/node_modules/amqplib'));
const E = process.env;

async function publishGet(url, options, name) {
  const conn = await amqp.connect(url, { servername: E.TLS_HOST, ...options });
  try {
    const ch = await conn.createChannel();
    const q = `${E.TLS_PREFIX}.amqplib.${name}`;
    await ch.assertQueue(q, { autoDelete: true });
    ch.sendToQueue(q, Buffer.from('over tls'));
    let msg = false;
    for (let i = 0; i < 50 && !msg; i++) {
      msg = await ch.get(q, { noAck: true });
      if (!msg) await new Promise((r) => setTimeout(r, 100));
    }
    await ch.deleteQueue(q);
    if (!msg || msg.content.toString() !== 'over tls') throw new Error(`got ${msg && msg.content}`);
  } finally {
    await conn.close();
  }
}

async function run(name, f) {
  try {
    await f();
    console.log(JSON.stringify({ scenario: name, ok: true }));
    return true;
  } catch (e) {
    console.log(JSON.stringify({ scenario: name, ok: false, err: String(e) }));
    return false;
  }
}

(async () => {
  const ca = [fs.readFileSync(E.TLS_CA)];
  const base = `amqps://${E.TLS_HOST}:${E.TLS_PORT}/%2f`;
  let ok = await run('amqps', () =>
    publishGet(`amqps://guest:guest@${E.TLS_HOST}:${E.TLS_PORT}/%2f`, { ca }, 'plain'));
  ok = (await run('external', () =>
    publishGet(base, {
      ca,
      cert: fs.readFileSync(E.TLS_CLIENT_CERT),
      key: fs.readFileSync(E.TLS_CLIENT_KEY),
      credentials: amqp.credentials.external(),
    }, 'external'))) && ok;
  process.exit(ok ? 0 : 1);
})();
