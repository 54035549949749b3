"""rabbitmqadmin v2: the Rust tool (crate `rabbitmqadmin`), installed by
`INTEROP_RABBITMQADMIN_V2=1 interop/setup` into interop/.tools/bin (or any binary named by
INTEROP_RABBITMQADMIN_V2_BIN); every operation is one run of
it, with -v so that a failure reports the HTTP requests it made (on stderr).

Its listings are tables only: they are read in the markdown style (`| a | b |`), where a cell
that spans several lines continues on rows whose anchor column is empty."""
import json, os, re, shlex

from admin import Admin
from common import API_PORT, HOST, PASS, USER, Fail, run_tool

BIN = os.environ.get("INTEROP_RABBITMQADMIN_V2_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".tools", "bin", "rabbitmqadmin")

# The column that is never empty on a listing's real rows.
ANCHOR = {"queues": "name", "exchanges": "vhost", "bindings": "vhost", "connections": "name", "users": "name",
          "vhosts": "name", "permissions": "user", "policies": "name", "messages": "redelivered"}
# v2's column names -> the API field names the shared scenarios use.
RENAME = {"queues": {"message_count": "messages"}, "exchanges": {"exchange_type": "type"},
          "connections": {"username": "user"}, "policies": {"apply_to": "apply-to"}}


def available():
    if os.access(BIN, os.X_OK):
        return None
    return f"{BIN} missing: INTEROP_RABBITMQADMIN_V2=1 interop/setup builds it (cargo install, ~16 min on 2 cores)"


def parse_markdown(out, anchor):
    rows, head = [], None
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if head is None:
            head = cells
            continue
        if all(re.fullmatch(r"-+", c) for c in cells):
            continue
        row = dict(zip(head, cells))
        if rows and not row.get(anchor):  # a multi-line cell's continuation
            for k, v in row.items():
                if v:
                    rows[-1][k] = (rows[-1][k] + "\n" + v) if rows[-1].get(k) else v
            continue
        rows.append(row)
    return rows


def requests_of(err):
    """From -v's stderr: ["METHOD URL BODY", ...] (the body compacted), and the other lines."""
    reqs, rest, body = [], [], None
    for line in err.splitlines():
        text = re.sub(r"^\[[\w:]+\] ", "", line)
        m = re.match(r"HTTP (\w+): (\S+)", text)
        if m:
            reqs.append(f"{m.group(1)} {m.group(2)}")
            body = None
        elif text.startswith("Request body:"):
            body = []
        elif body is not None and not line.startswith("["):
            body.append(text)
            try:
                reqs[-1] += " " + json.dumps(json.loads("\n".join(body)), separators=(",", ":"))
                body = None
            except ValueError:
                pass
        else:
            body = None
            if text.strip():
                rest.append(text.strip())
    return reqs, rest


def kv_lines(cell):
    """A table cell holding a map, one `key: JSON value` per line (policy definitions, message
    properties)."""
    out = {}
    for line in (cell or "").splitlines():
        k, _, v = line.partition(": ")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


class AdminV2(Admin):
    name = "rabbitmqadmin-v2"

    def run(self, *args, stdin=None):
        argv = [BIN, "-H", HOST, "-P", str(API_PORT), "-u", USER, "-p", PASS, "-v", "--table-style", "markdown",
                *args]
        rc, out, err = run_tool(argv, stdin=stdin)
        cmd = "rabbitmqadmin " + " ".join(shlex.quote(a) for a in args)
        reqs, rest = requests_of(err)
        self.log.append(f"$ {cmd} -> exit {rc}; " + "; ".join(reqs)[:400])
        if rc != 0:
            raise Fail(f"{cmd}: exit {rc}: " + "; ".join(reqs)[-700:] + " -> " + " / ".join(rest[-2:])[:300])
        return out

    def list(self, kind, cols):
        rows = parse_markdown(self.run("list", kind), ANCHOR[kind])
        ren = RENAME.get(kind, {})
        rows = [{ren.get(k, k): v for k, v in r.items()} for r in rows]
        for r in rows:
            for k in ("messages", "priority"):
                if k in r and re.fullmatch(r"\d+", r[k] or ""):
                    r[k] = int(r[k])
            if kind == "policies":
                r["definition"] = kv_lines(r.get("definition"))
        return rows

    def my_connections(self, conn, name):
        """v2 lists no client properties: the connection is the one from pika's local port."""
        port = str(conn._impl._transport._sock.getsockname()[1])  # pika has no public accessor
        return [r for r in self.list("connections", []) if r.get("client_port") == port]

    def declare_queue(self, name, args):
        self.run("declare", "queue", "--name", name, "--durable", "true", "--arguments", json.dumps(args))

    def declare_exchange(self, name, typ):
        self.run("declare", "exchange", "--name", name, "--type", typ, "--durable", "true")

    def declare_binding(self, src, dst, key):
        self.run("declare", "binding", "--source", src, "--destination-type", "queue", "--destination", dst,
                 "--routing-key", key)

    def delete_binding(self, src, dst, key):
        self.run("delete", "binding", "--source", src, "--destination-type", "queue", "--destination", dst,
                 "--routing-key", key)

    def delete_queue(self, name):
        self.run("delete", "queue", "--name", name)

    def delete_exchange(self, name):
        self.run("delete", "exchange", "--name", name)

    def publish(self, key, payload, props):
        self.run("publish", "message", "--routing-key", key, "--payload", payload, "--properties", json.dumps(props))

    def get(self, queue):
        rows = parse_markdown(self.run("get", "messages", "--queue", queue, "--count", "1",
                                       "--ack-mode", "ack_requeue_false"), ANCHOR["messages"])
        if len(rows) != 1:
            raise Fail(f"get returned {len(rows)} messages")
        m = rows[0]
        props = kv_lines(m.get("properties"))
        return {"payload": m.get("payload"), "exchange": m.get("exchange"), "routing_key": m.get("routing_key"),
                "message_count": int(m["message_count"]) if (m.get("message_count") or "").isdigit() else None,
                "redelivered": {"true": True, "false": False}.get(m.get("redelivered")), "properties": props}

    def purge(self, queue):
        self.run("purge", "queue", "--name", queue)

    def close_connection(self, name):
        self.run("close", "connection", "--name", name)

    def export(self, path):
        self.run("definitions", "export", "--file", path)

    def import_(self, path):
        self.run("definitions", "import", "--file", path)

    def add_user(self, name, password, tags):
        self.run("declare", "user", "--name", name, "--password", password, "--tags", tags)

    def delete_user(self, name):
        self.run("delete", "user", "--name", name)

    def add_vhost(self, name):
        self.run("declare", "vhost", "--name", name)

    def delete_vhost(self, name):
        self.run("delete", "vhost", "--name", name)

    def set_permissions(self, vhost, user, c, w, r):
        self.run("declare", "permissions", "--vhost", vhost, "--username", user, "--configure", c, "--write", w,
                 "--read", r)

    def clear_permissions(self, vhost, user):
        self.run("delete", "permissions", "--vhost", vhost, "--username", user)

    def declare_policy(self, name, pattern, definition, priority, apply_to):
        self.run("declare", "policy", "--name", name, "--pattern", pattern, "--definition", json.dumps(definition),
                 "--priority", str(priority), "--apply-to", apply_to)

    def delete_policy(self, name):
        self.run("delete", "policy", "--name", name)
