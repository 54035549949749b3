"""The rabbitmqadmin scenarios, shared by v1 (Python) and v2 (Rust): each tool class supplies the
operations (one tool invocation each), this module the fixtures, the checks and the observations.

Fixtures are made and checked through AMQP (pika) and the management endpoints that are not the
one under test, so a scenario fails for the tool's request, not for its setup."""
import json, os, tempfile, time

from common import USER, Fail, Tool, amqp, amqp_exchange, amqp_queue, api, cleanup, fixture_queue, poll, q

SCENARIOS = ["list_queues", "list_exchanges", "list_bindings", "list_connections", "list_users",
             "list_vhosts", "list_permissions", "list_policies", "declare_queue", "declare_exchange",
             "declare_binding", "delete", "publish_get", "purge", "close_connection",
             "export_definitions", "import_definitions", "user", "vhost", "permissions", "policy"]


def find(rows, **kv):
    """The rows whose fields equal kv."""
    return [r for r in rows if all(r.get(k) == v for k, v in kv.items())]


def tags_of(v):
    """User tags as a sorted list: RabbitMQ 3.10 lists them as a JSON list, older versions and
    some outputs as a comma-separated string."""
    if isinstance(v, list):
        return sorted(v)
    return sorted(t for t in str(v or "").replace(" ", "").split(",") if t)


class Admin(Tool):
    """Scenario logic; subclasses implement the operations."""

    def setup(self):
        P = self.prefix
        cleanup(P)
        fixture_queue(f"{P}.fix", ["m1", "m2", "m3"], exchange=f"{P}.fix.x", key="k")
        fixture_queue(f"{P}.bind", exchange=f"{P}.fix.x", key="d")
        api("PUT", f"/users/{q(P + '.fixuser')}", {"password": "fix-secret", "tags": "monitoring"})
        api("PUT", f"/permissions/%2F/{q(P + '.fixuser')}", {"configure": f"^{P}", "write": ".*", "read": ""})
        api("PUT", f"/policies/%2F/{q(P + '.fixpol')}",
            {"pattern": f"^{P}\\.nothing$", "definition": {"max-length": 10}, "priority": 1, "apply-to": "queues"})

    def teardown(self):
        try:
            cleanup(self.prefix)
        except Exception:  # noqa: BLE001 - best effort; the next run cleans up first anyway
            pass

    def run_all(self, only=None):
        self.setup()
        try:
            for s in SCENARIOS:
                if only and s not in only:
                    continue
                self.check(s, getattr(self, "s_" + s))
        finally:
            self.teardown()

    # -- listings -------------------------------------------------------------------------------
    def s_list_queues(self):
        P = self.prefix
        rows = poll(lambda: self.list("queues", ["vhost", "name", "messages"]),
                    lambda rows: [r.get("messages") for r in find(rows, name=f"{P}.fix")] in ([3], ["3"]))
        mine = find(rows, name=f"{P}.fix")
        if len(mine) != 1 or str(mine[0].get("messages")) != "3":
            raise Fail(f"queue {P}.fix with 3 messages not listed: {mine or [r.get('name') for r in rows][:20]}")
        return {"row": {"vhost": mine[0].get("vhost"), "name": mine[0]["name"], "messages": 3}}

    def s_list_exchanges(self):
        P = self.prefix
        rows = self.list("exchanges", ["vhost", "name", "type"])
        mine = find(rows, name=f"{P}.fix.x")
        std = sorted((r.get("name"), r.get("type")) for r in rows
                     if r.get("vhost") == "/" and (r.get("name") or "").startswith("amq."))
        if len(mine) != 1 or mine[0].get("type") != "direct":
            raise Fail(f"exchange {P}.fix.x (direct) not listed: {mine}")
        if ("", "direct") not in [(r.get("name"), r.get("type")) for r in rows if r.get("vhost") == "/"]:
            raise Fail("the default exchange is not listed")
        return {"row": {k: mine[0].get(k) for k in ("vhost", "name", "type")}, "amq": std}

    def s_list_bindings(self):
        P = self.prefix
        rows = self.list("bindings", ["source", "destination", "destination_type", "routing_key"])
        mine = sorted((r.get("source"), r.get("destination_type"), r.get("routing_key"))
                      for r in rows if r.get("destination") == f"{P}.fix")
        want = [("", "queue", f"{P}.fix"), (f"{P}.fix.x", "queue", "k")]
        if mine != want:
            raise Fail(f"bindings of {P}.fix: {mine}, expected {want}")
        return {"bindings": mine}

    def s_list_connections(self):
        P = self.prefix
        c = amqp(name=f"{P}.conn")
        try:
            rows = poll(lambda: self.my_connections(c, f"{P}.conn"), lambda rows: len(rows) == 1)
            if len(rows) != 1:
                raise Fail(f"connection {P}.conn not listed (found {len(rows)})")
            r = rows[0]
            if r.get("user") != USER:
                raise Fail(f"connection row {r}")
            obs = {k: r[k] for k in ("user", "vhost") if k in r}
            obs["has_name"] = bool(r.get("name"))
            if "client_properties" in r:
                obs["product"] = r["client_properties"].get("product")
            return obs
        finally:
            c.close()

    def s_list_users(self):
        P = self.prefix
        rows = self.list("users", ["name", "tags"])
        out = {}
        for n in ("guest", f"{P}.fixuser"):
            m = find(rows, name=n)
            if len(m) != 1:
                raise Fail(f"user {n} not listed: {[r.get('name') for r in rows]}")
            out[n] = tags_of(m[0].get("tags"))
        if out != {"guest": ["administrator"], f"{P}.fixuser": ["monitoring"]}:
            raise Fail(f"tags: {out}")
        return out

    def s_list_vhosts(self):
        rows = self.list("vhosts", ["name"])
        if not find(rows, name="/"):
            raise Fail(f"vhost / not listed: {rows}")
        return {"has_default": True}

    def s_list_permissions(self):
        P = self.prefix
        rows = self.list("permissions", ["user", "vhost", "configure", "write", "read"])
        m = find(rows, user=f"{P}.fixuser")
        if len(m) != 1:
            raise Fail(f"permissions of {P}.fixuser: {m}")
        row = {k: m[0].get(k) for k in ("user", "vhost", "configure", "write", "read")}
        if row != {"user": f"{P}.fixuser", "vhost": "/", "configure": f"^{P}", "write": ".*", "read": ""}:
            raise Fail(f"permission row {row}")
        g = find(rows, user="guest", vhost="/")
        return {"row": row, "guest": [{k: x.get(k) for k in ("configure", "write", "read")} for x in g]}

    def s_list_policies(self):
        P = self.prefix
        rows = self.list("policies", ["vhost", "name", "pattern", "apply-to", "definition", "priority"])
        m = find(rows, name=f"{P}.fixpol")
        if len(m) != 1:
            raise Fail(f"policy {P}.fixpol not listed: {[r.get('name') for r in rows]}")
        row = {k: m[0].get(k) for k in ("vhost", "name", "pattern", "apply-to", "definition", "priority")}
        row["priority"] = int(row["priority"]) if row["priority"] is not None else None
        if isinstance(row["definition"], str):
            row["definition"] = json.loads(row["definition"])
        want = {"vhost": "/", "name": f"{P}.fixpol", "pattern": f"^{P}\\.nothing$", "apply-to": "queues",
                "definition": {"max-length": 10}, "priority": 1}
        if row != want:
            raise Fail(f"policy row {row}")
        return row

    # -- declare / delete -----------------------------------------------------------------------
    def s_declare_queue(self):
        import pika
        P = self.prefix
        self.declare_queue(f"{P}.q", {"x-message-ttl": 60000})
        exists, n = amqp_queue(f"{P}.q")
        if not exists:
            raise Fail(f"queue {P}.q not declared")
        # A redeclare with the same arguments passes only if the tool sent them.
        c = amqp()
        try:
            c.channel().queue_declare(f"{P}.q", durable=True, arguments={"x-message-ttl": 60000})
        except pika.exceptions.ChannelClosedByBroker as e:
            raise Fail(f"redeclare (durable, x-message-ttl 60000): {e.reply_code} {e.reply_text}")
        finally:
            if c.is_open:
                c.close()
        return {"exists": True, "messages": n, "durable_ttl_equivalent": True}

    def s_declare_exchange(self):
        import pika
        P = self.prefix
        self.declare_exchange(f"{P}.x", "topic")
        if not amqp_exchange(f"{P}.x"):
            raise Fail(f"exchange {P}.x not declared")
        c = amqp()
        try:
            c.channel().exchange_declare(f"{P}.x", "topic", durable=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            raise Fail(f"redeclare (topic, durable): {e.reply_code} {e.reply_text}")
        finally:
            if c.is_open:
                c.close()
        return {"exists": True, "topic_durable_equivalent": True}

    def s_declare_binding(self):
        P = self.prefix
        self.declare_binding(f"{P}.fix.x", f"{P}.bind", "b")
        if routed(f"{P}.fix.x", "b") is not True:
            raise Fail(f"a message to {P}.fix.x with key b is not routed")
        _, n = amqp_queue(f"{P}.bind")
        return {"routed": True, "messages": n}

    def s_delete(self):
        P = self.prefix
        fixture_queue(f"{P}.del", ["x"], exchange=f"{P}.del.x", key="d")
        self.delete_binding(f"{P}.fix.x", f"{P}.bind", "d")
        self.delete_queue(f"{P}.del")
        self.delete_exchange(f"{P}.del.x")
        out = {"binding_routes": routed(f"{P}.fix.x", "d"), "queue_exists": amqp_queue(f"{P}.del")[0],
               "exchange_exists": amqp_exchange(f"{P}.del.x")}
        if out != {"binding_routes": False, "queue_exists": False, "exchange_exists": False}:
            raise Fail(f"after the deletes: {out}")
        return out

    # -- messages -------------------------------------------------------------------------------
    def s_publish_get(self):
        P = self.prefix
        fixture_queue(f"{P}.get")
        payload = f"hello from {P} \u00e9"
        self.publish(f"{P}.get", payload, {"content_type": "text/plain", "headers": {"h": "v"}})
        m = self.get(f"{P}.get")
        if m.get("payload") != payload:
            raise Fail(f"payload {m.get('payload')!r}, expected {payload!r}")
        left = amqp_queue(f"{P}.get")[1]
        props = m.get("properties") or {}
        return {"payload": m.get("payload"), "exchange": m.get("exchange"), "routing_key": m.get("routing_key"),
                "message_count": m.get("message_count"), "redelivered": m.get("redelivered"),
                "content_type": props.get("content_type"), "headers": props.get("headers"), "left": left}

    def s_purge(self):
        P = self.prefix
        fixture_queue(f"{P}.purge", ["a", "b", "c"])
        self.purge(f"{P}.purge")
        n = amqp_queue(f"{P}.purge")[1]
        if n != 0:
            raise Fail(f"{n} messages left after the purge")
        return {"left": 0}

    def s_close_connection(self):
        import pika
        P = self.prefix
        c = amqp(name=f"{P}.close")
        try:
            names = poll(lambda: [r.get("name") for r in self.my_connections(c, f"{P}.close")],
                         lambda n: len(n) == 1)
            if len(names) != 1:
                raise Fail(f"connection {P}.close not listed")
            self.close_connection(names[0])
            end = time.time() + 10
            while time.time() < end:
                try:
                    c.process_data_events(0.5)
                except pika.exceptions.ConnectionClosedByBroker as e:
                    return {"reply_code": e.reply_code, "reply_text": e.reply_text}
            raise Fail("the AMQP connection is still open 10 s after the close")
        finally:
            if c.is_open:
                c.close()

    # -- definitions ----------------------------------------------------------------------------
    def s_export_definitions(self):
        P = self.prefix
        c = amqp()
        try:
            c.channel().queue_declare(f"{P}.q3", durable=True, arguments={"x-max-length": 7})
        finally:
            c.close()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "defs.json")
            self.export(path)
            with open(path) as f:
                defs = json.load(f)
        qs = [x for x in defs.get("queues", []) if x.get("name") == f"{P}.q3"]
        us = [x for x in defs.get("users", []) if x.get("name") == f"{P}.fixuser"]
        ps = [x for x in defs.get("policies", []) if x.get("name") == f"{P}.fixpol"]
        perms = [x for x in defs.get("permissions", []) if x.get("user") == f"{P}.fixuser"]
        bs = sorted((x.get("source"), x.get("destination"), x.get("routing_key"))
                    for x in defs.get("bindings", []) if x.get("destination") == f"{P}.fix")
        if len(qs) != 1 or len(us) != 1 or len(ps) != 1 or len(perms) != 1:
            raise Fail(f"export lacks the fixtures: queue {qs}, user {us}, policy {ps}, permissions {perms}")
        u = us[0]
        # RabbitMQ 4.x (which Warren follows) exports each queue's "type"; 3.10 does not.
        queue = {k: v for k, v in qs[0].items() if not (k == "type" and v == "classic")}
        return {"keys": sorted(defs), "queue": queue, "policy": ps[0], "permission": perms[0],
                "user": {"name": u.get("name"), "tags": tags_of(u.get("tags")),
                         "hash": bool(u.get("password_hash")), "algo": u.get("hashing_algorithm")},
                "vhost_default": any(v.get("name") == "/" for v in defs.get("vhosts", [])),
                "bindings_of_fix": bs}

    def s_import_definitions(self):
        P = self.prefix
        vh, user = f"{P}.imported", f"{P}.imported"
        defs = {
            "users": [{"name": user, "password": "imported-secret", "tags": "management"}],
            "vhosts": [{"name": vh}],
            "permissions": [{"user": user, "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"},
                            {"user": "guest", "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}],
            "policies": [{"vhost": vh, "name": "imp-pol", "pattern": "^imp", "apply-to": "queues",
                          "definition": {"max-length": 3}, "priority": 0}],
            "queues": [{"name": "imp.q", "vhost": vh, "durable": True, "auto_delete": False, "arguments": {}}],
            "exchanges": [{"name": "imp.x", "vhost": vh, "type": "fanout", "durable": True,
                           "auto_delete": False, "internal": False, "arguments": {}}],
            "bindings": [{"source": "imp.x", "vhost": vh, "destination": "imp.q", "destination_type": "queue",
                          "routing_key": "", "arguments": {}}],
        }
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "defs.json")
            with open(path, "w") as f:
                json.dump(defs, f)
            self.import_(path)
        # RabbitMQ imports asynchronously: wait for the last piece.
        poll(lambda: api("GET", f"/policies/{q(vh)}/imp-pol", ok=None)[0], lambda s: s == 200, 15)
        _, u = api("GET", f"/users/{q(user)}")
        _, perm = api("GET", f"/permissions/{q(vh)}/{q(user)}")
        _, pol = api("GET", f"/policies/{q(vh)}/imp-pol")
        exists, _ = amqp_queue("imp.q", vhost=vh)
        routes = routed("imp.x", "any", vhost=vh)
        return {"user_tags": tags_of(u.get("tags")),
                "permission": {k: perm.get(k) for k in ("configure", "write", "read")},
                "policy": {k: pol.get(k) for k in ("pattern", "apply-to", "definition", "priority")},
                "queue": exists, "binding_routes": routes}

    # -- users, vhosts, permissions, policies ---------------------------------------------------
    def s_user(self):
        P = self.prefix
        user = f"{P}.user"
        self.add_user(user, "user-secret", "monitoring")
        _, u = api("GET", f"/users/{q(user)}")
        _, who = api("GET", "/whoami", user=user, password="user-secret")
        self.delete_user(user)
        after = api("GET", f"/users/{q(user)}", ok=None)[0]
        if after != 404:
            raise Fail(f"GET /api/users/{user} after the delete: {after}")
        return {"tags": tags_of(u.get("tags")), "whoami": {"name": who.get("name"), "tags": tags_of(who.get("tags"))},
                "after_delete": after}

    def s_vhost(self):
        P = self.prefix
        vh = f"{P}.vhost"
        self.add_vhost(vh)
        st, v = api("GET", f"/vhosts/{q(vh)}")
        _, perms = api("GET", f"/vhosts/{q(vh)}/permissions")
        self.delete_vhost(vh)
        after = api("GET", f"/vhosts/{q(vh)}", ok=None)[0]
        if after != 404:
            raise Fail(f"GET /api/vhosts/{vh} after the delete: {after}")
        users = sorted(p.get("user") for p in perms)
        # RabbitMQ grants the user who creates a vhost through the API full permissions on it, so
        # a tool can declare into a vhost it just made.
        if users != [USER]:
            raise Fail(f"GET /api/vhosts/{vh}/permissions right after the PUT lists {users}, expected "
                       f"[{USER!r}] (the creating user gets .* .* .*)")
        return {"name": v.get("name"), "permissions": users, "after_delete": after}

    def s_permissions(self):
        P = self.prefix
        user = f"{P}.fixuser"
        self.set_permissions("/", user, f"^{P}\\.perm", ".*", "^amq\\.")
        _, perm = api("GET", f"/permissions/%2F/{q(user)}")
        row = {k: perm.get(k) for k in ("user", "vhost", "configure", "write", "read")}
        want = {"user": user, "vhost": "/", "configure": f"^{P}\\.perm", "write": ".*", "read": "^amq\\."}
        if row != want:
            raise Fail(f"permission {row}")
        self.clear_permissions("/", user)
        after = api("GET", f"/permissions/%2F/{q(user)}", ok=None)[0]
        if after != 404:
            raise Fail(f"GET /api/permissions/%2F/{user} after the delete: {after}")
        return {"set": row, "after_delete": after}

    def s_policy(self):
        P = self.prefix
        name = f"{P}.pol"
        self.declare_policy(name, f"^{P}\\.q$", {"max-length": 100}, 2, "queues")
        _, pol = api("GET", f"/policies/%2F/{q(name)}")
        row = {k: pol.get(k) for k in ("vhost", "name", "pattern", "apply-to", "definition", "priority")}
        want = {"vhost": "/", "name": name, "pattern": f"^{P}\\.q$", "apply-to": "queues",
                "definition": {"max-length": 100}, "priority": 2}
        if row != want:
            raise Fail(f"policy {row}")
        self.delete_policy(name)
        after = api("GET", f"/policies/%2F/{q(name)}", ok=None)[0]
        if after != 404:
            raise Fail(f"GET /api/policies/%2F/{name} after the delete: {after}")
        return {"set": row, "after_delete": after}


def routed(exchange, key, vhost="/"):
    """Whether a mandatory publish to exchange/key is routed (publisher confirms, basic.return)."""
    import pika
    c = amqp(vhost)
    try:
        ch = c.channel()
        ch.confirm_delivery()
        try:
            ch.basic_publish(exchange, key, b"probe", mandatory=True)
            return True
        except pika.exceptions.UnroutableError:
            return False
    finally:
        if c.is_open:
            c.close()
