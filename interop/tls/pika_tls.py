"""pika over TLS: PLAIN login over amqps, then a client certificate with EXTERNAL.
Reads TLS_HOST, TLS_PORT, TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_PREFIX (see run)."""
import json, os, ssl, sys
import pika

E = os.environ


def context(client_cert):
    ctx = ssl.create_default_context(cafile=E["TLS_CA"])
    if client_cert:
        ctx.load_cert_chain(E["TLS_CLIENT_CERT"], E["TLS_CLIENT_KEY"])
    return ctx


def publish_get(credentials, client_cert, name):
    params = pika.ConnectionParameters(
        host=E["TLS_HOST"], port=int(E["TLS_PORT"]), credentials=credentials,
        ssl_options=pika.SSLOptions(context(client_cert), E["TLS_HOST"]))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    q = f"{E['TLS_PREFIX']}.pika.{name}"
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"over tls")
    for _ in range(50):
        method, _, body = ch.basic_get(q, auto_ack=True)
        if method:
            break
        conn.sleep(0.1)
    ch.queue_delete(q)
    conn.close()
    assert body == b"over tls", body


def run(name, f):
    try:
        f()
        print(json.dumps({"scenario": name, "ok": True}))
        return True
    except Exception as e:  # every failure is reported, not raised
        print(json.dumps({"scenario": name, "ok": False, "err": f"{type(e).__name__}: {e}"}))
        return False


ok = run("amqps", lambda: publish_get(pika.PlainCredentials("guest", "guest"), False, "plain"))
ok = run("external", lambda: publish_get(pika.credentials.ExternalCredentials(), True, "external")) and ok
sys.exit(0 if ok else 1)
