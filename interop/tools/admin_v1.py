"""rabbitmqadmin v1: the Python script RabbitMQ's management plugin serves and Debian's
rabbitmq-server installs as /usr/bin/rabbitmqadmin; every operation is one run of it."""
import json, os, shlex, sys

from admin import Admin
from common import API_PORT, HOST, PASS, USER, Fail, run_tool

SCRIPT = os.environ.get("INTEROP_RABBITMQADMIN_V1_BIN", "/usr/bin/rabbitmqadmin")


def available():
    return None if os.path.exists(SCRIPT) else f"{SCRIPT} missing (apt-get install rabbitmq-server)"


class AdminV1(Admin):
    name = "rabbitmqadmin-v1"

    def run(self, *args, fmt=None):
        argv = [sys.executable if SCRIPT.endswith(".py") else "python3", SCRIPT, "-H", HOST, "-P", str(API_PORT),
                "-u", USER, "-p", PASS]
        if fmt:
            argv += ["-f", fmt]
        argv += list(args)
        rc, out, err = run_tool(argv)
        cmd = "rabbitmqadmin " + " ".join(shlex.quote(a) for a in args)
        self.log.append(f"$ {cmd} -> exit {rc} {err.strip()[:300]}")
        if rc != 0:
            raise Fail(f"{cmd}: exit {rc}: {(err or out).strip()[:400]}")
        return out

    def list(self, kind, cols):
        out = self.run("list", kind, *cols, fmt="raw_json")
        try:
            return json.loads(out)
        except ValueError:
            raise Fail(f"list {kind}: not JSON: {out[:200]}")

    def my_connections(self, conn, name):
        rows = self.list("connections", ["name", "user", "vhost", "client_properties"])
        return [r for r in rows if (r.get("client_properties") or {}).get("connection_name") == name]

    def declare_queue(self, name, args):
        self.run("declare", "queue", f"name={name}", "durable=true", f"arguments={json.dumps(args)}")

    def declare_exchange(self, name, typ):
        self.run("declare", "exchange", f"name={name}", f"type={typ}", "durable=true")

    def declare_binding(self, src, dst, key):
        self.run("declare", "binding", f"source={src}", f"destination={dst}", "destination_type=queue",
                 f"routing_key={key}")

    def delete_binding(self, src, dst, key):
        # properties_key: the binding's id in the API, its routing key when it has no arguments.
        self.run("delete", "binding", f"source={src}", "destination_type=queue", f"destination={dst}",
                 f"properties_key={key}")

    def delete_queue(self, name):
        self.run("delete", "queue", f"name={name}")

    def delete_exchange(self, name):
        self.run("delete", "exchange", f"name={name}")

    def publish(self, key, payload, props):
        self.run("publish", "exchange=amq.default", f"routing_key={key}", f"payload={payload}",
                 f"properties={json.dumps(props)}")

    def get(self, queue):
        out = self.run("get", f"queue={queue}", "ackmode=ack_requeue_false", fmt="raw_json")
        try:
            msgs = json.loads(out)
        except ValueError:
            raise Fail(f"get: not JSON: {out[:200]}")
        if len(msgs) != 1:
            raise Fail(f"get returned {len(msgs)} messages")
        return msgs[0]

    def purge(self, queue):
        self.run("purge", "queue", f"name={queue}")

    def close_connection(self, name):
        self.run("close", "connection", f"name={name}")

    def export(self, path):
        self.run("export", path)

    def import_(self, path):
        self.run("import", path)

    def add_user(self, name, password, tags):
        self.run("declare", "user", f"name={name}", f"password={password}", f"tags={tags}")

    def delete_user(self, name):
        self.run("delete", "user", f"name={name}")

    def add_vhost(self, name):
        self.run("declare", "vhost", f"name={name}")

    def delete_vhost(self, name):
        self.run("delete", "vhost", f"name={name}")

    def set_permissions(self, vhost, user, c, w, r):
        self.run("declare", "permission", f"vhost={vhost}", f"user={user}", f"configure={c}", f"write={w}",
                 f"read={r}")

    def clear_permissions(self, vhost, user):
        self.run("delete", "permission", f"vhost={vhost}", f"user={user}")

    def declare_policy(self, name, pattern, definition, priority, apply_to):
        self.run("declare", "policy", f"name={name}", f"pattern={pattern}", f"definition={json.dumps(definition)}",
                 f"priority={priority}", f"apply-to={apply_to}")

    def delete_policy(self, name):
        self.run("delete", "policy", f"name={name}")
