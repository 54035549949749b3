"""Celery Flower's broker tab: Flower asks the management API for the queues of its broker URL's
vhost (GET /api/queues/VHOST, through --broker_api) and shows each of the Celery app's queues
with its message counts, on the /broker page and in /api/queues/length.

Flower runs as `celery -A flowerapp flower` from interop/.venv, on a free loopback port, with the
app's queues named by INTEROP_FLOWER_QUEUES (flowerapp.py)."""
import html, json, os, re, socket, subprocess, sys, tempfile, time, urllib.request

from common import AMQP_PORT, API_PORT, HOST, PASS, USER, Fail, Tool, amqp, api, fixture_queue, poll, q

HERE = os.path.dirname(os.path.abspath(__file__))
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


def available():
    try:
        import flower  # noqa: F401
    except ImportError:
        return "flower missing in interop/.venv: run interop/setup"
    return None


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def fetch(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
        return r.status, r.read().decode()


class FlowerProc:
    """One Flower process for one broker URL and set of queues."""

    def __init__(self, vhost_in_url, queues):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flower-interop.")
        env = dict(os.environ, INTEROP_FLOWER_QUEUES=",".join(queues), FLOWER_UNAUTHENTICATED_API="true", PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        broker = f"amqp://{USER}:{PASS}@{HOST}:{AMQP_PORT}/{vhost_in_url}"
        self.log = open(os.path.join(self.dir, "flower.log"), "w")
        self.proc = subprocess.Popen(
            [CELERY, "-A", "flowerapp", "--broker", broker, "flower", f"--port={self.port}",
             "--address=127.0.0.1", f"--broker_api=http://{USER}:{PASS}@{HOST}:{API_PORT}/api/",
             f"--db={os.path.join(self.dir, 'flower.db')}", "--persistent=False", "--inspect_timeout=1000"],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.time() + 30
        while time.time() < end:
            if self.proc.poll() is not None:
                raise Fail(f"flower exited {self.proc.returncode}: {self.tail()}")
            try:
                fetch(self.port, "/healthcheck")
                return
            except OSError:
                time.sleep(0.3)
        raise Fail(f"flower did not answer on port {self.port} in 30 s: {self.tail()}")

    def tail(self):
        self.log.flush()
        with open(os.path.join(self.dir, "flower.log")) as f:
            return " | ".join(f.read().strip().splitlines()[-4:])[:600]

    def stop(self):
        # Flower stays in interop/run's process group for the tools (killed with it on a timeout).
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill(); self.proc.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir])

    def lengths(self):
        st, body = fetch(self.port, "/api/queues/length")
        return {x["name"]: x.get("messages") for x in json.loads(body).get("active_queues", [])}

    def broker_page(self):
        """The /broker page's queue rows: name -> [messages, unacked, ready, consumers]."""
        st, body = fetch(self.port, "/broker")
        rows = {}
        for tr in re.findall(r"<tr id=\"[^\"]*\">(.*?)</tr>", body, re.S):
            cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            if cells:
                rows[cells[0]] = cells[1:5]
        return rows


class Flower(Tool):
    name = "flower"

    def run_all(self, only=None):
        for s in ("broker_vhost", "broker_default_vhost"):
            if not only or s in only:
                self.check(s, getattr(self, "s_" + s))

    def queues_shown(self, vhost, vhost_in_url, counts):
        """Queues with `counts` messages in `vhost`, a Flower on them; returns what it shows."""
        P = self.prefix
        names = [f"{P}.{i}" for i in range(len(counts))]
        for n, c in zip(names, counts):
            try:
                fixture_queue(n, vhost=vhost)
                purge(n, vhost)  # a previous run's leftovers
                fixture_queue(n, [f"m{j}" for j in range(c)], vhost=vhost)
            except Exception as e:
                raise Fail(f"fixture queue {n} in {vhost}: {e}")
        fl = FlowerProc(vhost_in_url, names)
        try:
            want = dict(zip(names, counts))
            lengths = poll(fl.lengths, lambda got: got == want)
            page = fl.broker_page()
            if lengths != want:  # Flower logs the management API's answer
                self.log.append("flower log: " + fl.tail())
            return names, want, lengths, page
        finally:
            fl.stop()
            for n in names:
                delete_queue(n, vhost)

    def s_broker_vhost(self):
        """A vhost of our own: the queues and their counts as the management API has them."""
        vh = f"{self.prefix}.vhost"
        api("PUT", f"/vhosts/{q(vh)}", {})
        api("PUT", f"/permissions/{q(vh)}/{USER}", {"configure": ".*", "write": ".*", "read": ".*"})
        try:
            names, want, lengths, page = self.queues_shown(vh, q(vh), [3, 0])
        finally:
            api("DELETE", f"/vhosts/{q(vh)}", ok=None)
        if lengths != want:
            raise Fail(f"/api/queues/length shows {lengths}, expected {want}; Flower's request: "
                       + probe(f"/queues/{q(vh)}"))
        shown = {n: page.get(n) for n in names}
        if shown != {n: [str(c), "0", str(c), "0"] for n, c in want.items()}:
            raise Fail(f"/broker page rows (messages, unacked, ready, consumers): {shown}")
        return {"queues_length": lengths, "broker_page": shown}

    def s_broker_default_vhost(self):
        """vhost "/": Flower joins "queues/" and the vhost "/" of Celery's URL (`...//`) onto
        --broker_api, so it asks for /api/queues/ (all vhosts, trailing slash) and keeps the rows
        named like its queues."""
        names, want, lengths, page = self.queues_shown("/", "/", [2])
        shown = {n: page.get(n) for n in names}
        if lengths != want or shown != {n: [str(c), "0", str(c), "0"] for n, c in want.items()}:
            raise Fail(f"/api/queues/length shows {lengths}, /broker page {shown}, expected {want}; "
                       "Flower's request: " + probe("/queues/"))
        return {"queues_length": lengths, "broker_page": shown}


def probe(path):
    """The request Flower makes, made again here: its status and the start of its answer."""
    st, body = api("GET", path, ok=None)
    return f"GET /api{path} -> {st} {json.dumps(body)[:120]}"


def purge(name, vhost):
    c = amqp(vhost)
    try:
        c.channel().queue_purge(name)
    finally:
        c.close()


def delete_queue(name, vhost):
    try:
        c = amqp(vhost)
        try:
            c.channel().queue_delete(name)
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - best effort (the vhost may be gone already)
        pass
