#!/usr/bin/env python3
"""interop/ui/test_ui.py — drive the management web UI in headless Chromium (selenium).

Environment (interop/run sets them):
  UI_URL          the management listener, e.g. http://127.0.0.1:15672/
  UI_AMQP_URL     the broker's AMQP URL (guest), to make objects with pika and check effects
  UI_SCREENSHOTS  directory for one PNG per check (default interop/ui/screenshots/)
  UI_USER, UI_PASS  an administrator (default guest / guest)

Every check is independent and named; the script prints one line per check and exits 1 if
any failed. Objects it makes are named ui-test-<pid>-...
"""
import base64, json, os, sys, tempfile, time, traceback, urllib.request

import pika
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
URL = os.environ.get("UI_URL", "http://127.0.0.1:15672/")
AMQP = os.environ.get("UI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
SHOTS = os.environ.get("UI_SCREENSHOTS", os.path.join(HERE, "screenshots"))
USER, PASS = os.environ.get("UI_USER", "guest"), os.environ.get("UI_PASS", "guest")
P = f"ui-test-{os.getpid()}"
QUEUE, EXCHANGE = f"{P}-q", f"{P}-x"
WAIT = float(os.environ.get("UI_WAIT", "15"))


def browser(downloads):
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("UI_CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--lang=en-US", "--no-first-run"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {"download.default_directory": downloads,
                                        "download.prompt_for_download": False})
    d = webdriver.Chrome(options=o, service=Service(os.environ.get("UI_CHROMEDRIVER", "/usr/bin/chromedriver")))
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return d


class UI:
    def __init__(self, d):
        self.d = d

    def wait(self, cond, what, timeout=WAIT):
        try:
            return WebDriverWait(self.d, timeout, ignored_exceptions=[StaleElementReferenceException]).until(cond)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}; page says: {self.problem()}") from None

    def problem(self):
        texts = []
        for e in self.d.find_elements(By.CSS_SELECTOR, ".unavailable, #alert"):
            if e.text.strip() and e.text not in texts:
                texts.append(e.text)
        return " | ".join(texts) or (self.d.find_element(By.TAG_NAME, "main").text[:300].replace("\n", " / "))

    def go(self, route, title):
        if self.d.current_url == URL + route:
            self.d.refresh()  # the same hash would not load the page again
        else:
            self.d.get(URL + route)
        self.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(title), f"heading {title!r}")

    def text_in(self, css, text, timeout=WAIT, refresh=None):
        """Waits until an element matching css contains text (clicking refresh meanwhile)."""
        end = time.time() + timeout
        while True:
            for e in self.d.find_elements(By.CSS_SELECTOR, css):
                try:
                    if text in e.text:
                        return e
                except StaleElementReferenceException:
                    pass  # replaced by a refresh: look again
            # A 404 for a listing or object is final: the broker lacks the endpoint (or object).
            missing = any("404" in e.text for e in self.d.find_elements(By.CSS_SELECTOR, ".unavailable"))
            if time.time() > end or (missing and not refresh):
                raise AssertionError(f"{text!r} not in {css}; page says: {self.problem()}")
            if refresh:
                refresh()
            time.sleep(0.3)

    def form(self, legend):
        return self.wait(lambda d: d.find_element(By.XPATH, f"//form[fieldset/legend[normalize-space()={json.dumps(legend)}]]"),
                         f"form {legend!r}")

    def fill(self, form, **values):
        for name, v in values.items():
            e = form.find_element(By.NAME, name)
            if e.tag_name == "select":
                Select(e).select_by_value(v)
            elif e.get_attribute("type") == "checkbox":
                if e.is_selected() != v:
                    e.click()
            elif e.get_attribute("type") == "file":
                e.send_keys(v)
            else:
                e.clear()
                e.send_keys(v)

    def filter(self, text):
        box = self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form.filter input[type=search]"), "the filter")
        box.clear()
        box.send_keys(text, Keys.ENTER)

    def submit(self, form):
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def notice(self, text):
        return self.text_in("#notice", text)

    def accept(self, answer=None):
        a = self.wait(EC.alert_is_present(), "a confirmation dialog", 5)
        if answer is not None:
            a.send_keys(answer)
        a.accept()

    def row(self, text, css="table", refresh=None):
        return self.text_in(f"{css} tbody tr", text, refresh=refresh)

    def in_row(self, text, act, refresh=None):
        """Finds the row containing text and runs act(row); a listing re-rendered in
        between (a filter or refresh landing) replaces the row: find it again."""
        end = time.time() + WAIT
        while True:
            try:
                return act(self.row(text, refresh=refresh))
            except StaleElementReferenceException:
                if time.time() > end:
                    raise
                time.sleep(0.1)

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        png = self.d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(os.path.join(SHOTS, f"{name}.png"), "wb") as f:
            f.write(base64.b64decode(png["data"]))


def delete_row(row, *expected, shot=None, ui=None):
    """Checks a row's text, then clicks its Delete button."""
    for text in expected:
        assert text in row.text, row.text
    if shot:
        ui.shot(shot)
    row.find_element(By.XPATH, ".//button[text()='Delete']").click()


def amqp():
    params = pika.URLParameters(AMQP)
    params.client_properties = {"connection_name": f"{P}-conn"}
    return pika.BlockingConnection(params)


def ready(queue):
    with amqp() as c:
        return c.channel().queue_declare(queue, passive=True).method.message_count


def queue_exists(queue):
    c = amqp()
    try:
        c.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if c.is_open:
            c.close()


# ---- the checks, in order; each gets the UI and may use what earlier ones made ----

def login_rejects_bad_password(ui):
    ui.d.get(URL)
    f = ui.form("Log in to the management interface")
    ui.fill(f, username=USER, password=PASS + "-wrong")
    ui.submit(f)
    ui.text_in("#alert", "Login failed")
    assert not ui.d.find_element(By.ID, "nav").is_displayed(), "navigation shown without login"


def login(ui):
    ui.d.get(URL)
    f = ui.form("Log in to the management interface")
    ui.fill(f, username=USER, password=PASS)
    ui.submit(f)
    ui.wait(lambda d: d.find_element(By.ID, "nav").is_displayed(), "the navigation")
    ui.text_in("#who", USER)
    assert ui.d.execute_script("return sessionStorage.length") > 0, "credentials not in sessionStorage"


def keyboard(ui):
    ui.go("#/", "Overview")
    ui.d.find_element(By.TAG_NAME, "body").click()
    ui.d.execute_script("document.activeElement.blur()")
    ui.d.switch_to.active_element.send_keys(Keys.TAB)
    skip = ui.d.switch_to.active_element
    assert skip.text == "Skip to content", f"first Tab reached {skip.text!r}"
    skip.send_keys(Keys.ENTER)
    assert ui.d.switch_to.active_element.get_attribute("id") == "main", "skip link did not focus main"
    # Tab through the navigation to Policies, open it with Enter: focus lands on its heading.
    ui.d.execute_script("document.activeElement.blur()")
    for _ in range(20):
        ui.d.switch_to.active_element.send_keys(Keys.TAB)
        if ui.d.switch_to.active_element.text == "Policies":
            break
    else:
        raise AssertionError("Tab never reached the Policies link")
    ui.d.switch_to.active_element.send_keys(Keys.ENTER)
    ui.wait(lambda d: d.switch_to.active_element.tag_name == "h1" and d.switch_to.active_element.text == "Policies",
            "focus on the Policies heading")
    # Every form control on the users page has a label.
    ui.go("#/users", "Users")
    ui.form("Add a user")
    unlabelled = ui.d.execute_script(
        "return [...document.querySelectorAll('main input, main select, main textarea')]"
        ".filter(e => !e.labels || !e.labels.length).map(e => e.name)")
    assert not unlabelled, f"inputs without a label: {unlabelled}"


def overview(ui):
    with amqp() as c:
        ch = c.channel()
        ch.queue_declare(QUEUE, durable=True)
        for i in range(3):
            ch.basic_publish("", QUEUE, f"message {i}".encode())
    ui.go("#/", "Overview")
    totals = ui.text_in(".totals", "Queues")
    assert "Connections" in totals.text and "Exchanges" in totals.text, totals.text
    ui.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart polyline"), "the charts")
    ui.text_in("table", "amqp")


def queues(ui):
    ui.go("#/queues", "Queues")
    ui.filter(P)
    cells = ui.in_row(QUEUE, lambda row: [c.text for c in row.find_elements(By.CSS_SELECTOR, "td, th")])
    assert "durable" in " ".join(cells), cells
    # Only the queues of one virtual host (GET /api/queues/<vhost>).
    vhost = Select(ui.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form.filter select[name=vhost]"), "vhost choice"))
    ui.wait(lambda d: len(vhost.options) > 1, "the virtual hosts")
    vhost.select_by_value("/")
    ui.wait(lambda d: d.execute_script("return performance.getEntriesByType('resource')"
                                       ".some(e => e.name.includes('/api/queues/%2F?'))"), "a listing of vhost /")
    ui.row(QUEUE)


def queue_detail(ui):
    ui.go("#/queues", "Queues")
    ui.filter(P)
    ui.in_row(QUEUE, lambda row: row.find_element(By.LINK_TEXT, QUEUE).click())
    ui.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == f"Queue {QUEUE}", "the queue page")
    refresh = lambda: ui.d.find_element(By.XPATH, "//button[text()='Refresh']").click()
    ui.text_in("dl.details", "Messages ready\n3", refresh=refresh)
    ui.row("(AMQP default)")


def queue_publish_and_get(ui):
    ui.go(f"#/queues/%2F/{QUEUE}", f"Queue {QUEUE}")
    f = ui.form("Publish a message")
    ui.fill(f, payload="hello from the browser")
    ui.submit(f)
    ui.notice("Message published.")
    g = ui.form("Get messages")
    ui.fill(g, count="10", ackmode="ack_requeue_true")
    ui.submit(g)
    ui.text_in("table", "hello from the browser")
    ui.text_in("table", "message 0")
    assert ready(QUEUE) == 4, "messages not requeued"


def queue_purge(ui):
    ui.go(f"#/queues/%2F/{QUEUE}", f"Queue {QUEUE}")
    ui.wait(lambda d: d.find_element(By.XPATH, "//button[text()='Purge messages']"), "purge button").click()
    ui.accept()
    ui.notice("purged")
    assert ready(QUEUE) == 0, "queue not empty after purge"


def exchanges(ui):
    with amqp() as c:
        ch = c.channel()
        ch.exchange_declare(EXCHANGE, "topic", durable=True)
        ch.queue_bind(QUEUE, EXCHANGE, "orders.#")
    ui.go("#/exchanges", "Exchanges")
    ui.filter(P)
    ui.in_row(EXCHANGE, lambda row: row.find_element(By.LINK_TEXT, EXCHANGE).click())
    ui.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == f"Exchange {EXCHANGE}", "the exchange page")
    ui.row("orders.#")
    f = ui.form("Publish a message")
    ui.fill(f, routing_key="orders.new", payload="routed by topic")
    ui.submit(f)
    ui.notice("Message published.")
    assert ready(QUEUE) == 1, "message not routed to the bound queue"


def connections(ui):
    c = amqp()
    try:
        ui.go("#/connections", "Connections")
        sock = getattr(getattr(c._impl, "_transport", None), "_sock", None)
        mark = f":{sock.getsockname()[1]} ->" if sock else f"{P}-conn"
        refresh = lambda: ui.d.find_element(By.XPATH, "//button[text()='Refresh']").click()
        ui.in_row(mark, lambda row: row.find_element(By.XPATH, ".//button[text()='Close']").click(), refresh=refresh)
        ui.accept("closed by the UI test")
        ui.notice("closed")
        end = time.time() + WAIT
        while c.is_open and time.time() < end:
            try:
                c.process_data_events(0.2)
            except pika.exceptions.AMQPConnectionError:
                break
        assert not c.is_open, "the connection is still open"
    finally:
        if c.is_open:
            c.close()


def channels(ui):
    with amqp() as c:
        c.channel()
        ui.go("#/channels", "Channels")
        ui.text_in("table", "(1)", refresh=lambda: ui.d.find_element(By.XPATH, "//button[text()='Refresh']").click())


def queue_delete(ui):
    ui.go(f"#/queues/%2F/{QUEUE}", f"Queue {QUEUE}")
    ui.submit(ui.form("Delete this queue"))
    ui.accept()
    ui.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Queues", "the queue list")
    assert not queue_exists(QUEUE), "queue still exists"


def users(ui):
    ui.go("#/users", "Users")
    ui.row(USER)
    f = ui.form("Add a user")
    ui.fill(f, name=f"{P}-user", password="secret", tags="monitoring")
    ui.submit(f)
    ui.in_row(f"{P}-user", lambda row: delete_row(row, "monitoring"))
    ui.accept()
    ui.notice("deleted")
    assert f"{P}-user" not in ui.d.find_element(By.TAG_NAME, "main").text


def vhosts(ui):
    ui.go("#/vhosts", "Virtual hosts")
    ui.row("/")
    f = ui.form("Add a virtual host")
    ui.fill(f, name=f"{P}-vhost", description="made in the browser")
    ui.submit(f)
    ui.in_row(f"{P}-vhost", lambda row: delete_row(row, "made in the browser"))
    ui.accept()
    ui.notice("deleted")


def permissions(ui):
    ui.go("#/permissions", "Permissions")
    row = ui.row(USER)
    assert ".*" in row.text, row.text
    ui.form("Set permissions")


def policies(ui):
    ui.go("#/policies", "Policies")
    f = ui.form("Add or update a policy")
    ui.fill(f, name=f"{P}-policy", pattern=f"^{P}", apply_to="queues", priority="3",
            definition='{"max-length": 10}')
    ui.submit(f)
    ui.in_row(f"{P}-policy", lambda row: delete_row(row, "max-length", "queues", shot="policies-added", ui=ui))
    ui.accept()
    ui.notice("deleted")


def definitions(ui, downloads):
    ui.go("#/definitions", "Definitions")
    ui.submit(ui.form("Export definitions"))
    ui.notice("downloaded")
    path = os.path.join(downloads, "warren-definitions.json")
    end = time.time() + WAIT
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.2)
    with open(path) as f:
        exported = json.load(f)
    assert any(u["name"] == USER for u in exported["users"]), "exported definitions lack the user"
    upload = os.path.join(downloads, "upload.json")
    with open(upload, "w") as f:
        json.dump({"vhosts": [{"name": f"{P}-imported"}]}, f)
    u = ui.form("Import definitions")
    ui.fill(u, file=upload)
    ui.submit(u)
    ui.notice("imported")
    assert http("GET", f"/vhosts/{P}-imported") == 200, "imported vhost missing"
    http("DELETE", f"/vhosts/{P}-imported")


def logout(ui):
    ui.go("#/", "Overview")
    ui.d.find_element(By.ID, "logout").click()
    ui.form("Log in to the management interface")
    assert ui.d.execute_script("return sessionStorage.length") == 0, "credentials kept after logout"


def http(method, path, body=None):
    """The management API directly (setup and cleanup), as the administrator."""
    req = urllib.request.Request(URL + "api" + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASS}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return r.status


def monitoring_user(ui):
    """A monitoring user logs in; the pages only administrators may use leave the navigation."""
    name = f"{P}-monitor"
    http("PUT", f"/users/{name}", {"password": "watch", "tags": "monitoring"})
    try:
        ui.d.get(URL)
        if ui.d.find_element(By.ID, "logout").is_displayed():
            ui.d.find_element(By.ID, "logout").click()
        f = ui.form("Log in to the management interface")
        ui.fill(f, username=name, password="watch")
        ui.submit(f)
        ui.text_in("#who", "monitoring")
        visible = [a.text for a in ui.d.find_elements(By.CSS_SELECTOR, "#nav a") if a.is_displayed()]
        assert "Overview" in visible and "Queues" in visible, visible
        assert "Users" not in visible and "Definitions" not in visible, visible
        ui.go("#/", "Overview")
        ui.text_in(".totals", "Queues")
        ui.d.find_element(By.ID, "logout").click()
        ui.form("Log in to the management interface")
    finally:
        http("DELETE", f"/users/{name}")


def cleanup():
    try:
        with amqp() as c:
            ch = c.channel()
            ch.queue_delete(QUEUE)
            ch.exchange_delete(EXCHANGE)
    except Exception:
        pass


def main():
    downloads = tempfile.mkdtemp(prefix="warren-ui-downloads.")
    d = browser(downloads)
    ui = UI(d)
    checks = [login_rejects_bad_password, login, keyboard, overview, queues, queue_detail,
              queue_publish_and_get, queue_purge, exchanges, connections, channels, queue_delete,
              users, vhosts, permissions, policies, lambda ui: definitions(ui, downloads), logout,
              monitoring_user]
    names = [c.__name__ if c.__name__ != "<lambda>" else "definitions" for c in checks]
    failed = []
    print(f"ui: {URL} screenshots in {SHOTS}", flush=True)
    try:
        for name, check in zip(names, checks):
            t0 = time.time()
            try:
                check(ui)
                status, note = "pass", ""
            except Exception as e:
                status, note = "FAIL", f"{type(e).__name__}: {e}".strip().splitlines()[0][:400]
                failed.append(name)
                if os.environ.get("UI_TRACE"):
                    traceback.print_exc()
                try:  # a dialog left open blocks the next check
                    d.switch_to.alert.dismiss()
                except Exception:
                    pass
            try:
                ui.shot(name)
            except Exception:
                pass
            print(f"ui  {name:26} {status:4} ({time.time() - t0:.1f}s) {note}", flush=True)
    finally:
        d.quit()
        cleanup()
    print(f"ui: {len(names) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
