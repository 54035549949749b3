import com.rabbitmq.client.*;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.*;
import java.util.concurrent.*;

/** RabbitMQ Java client scenarios for Warren's interop suite; prints one JSON line per scenario. */
public class Scenarios {
    static String URL = env("INTEROP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    static String P = env("INTEROP_PREFIX", "it.java");
    static String env(String k, String d) { String v = System.getenv(k); return v == null ? d : v; }
    static final int LARGE_LEN = 5 * 1024 * 1024 + 7;

    static class Mismatch extends Exception { Object obs; Mismatch(String m, Object o) { super(m); obs = o; } }
    interface Body { Map<String, Object> run() throws Exception; }

    static Connection conn(String url) throws Exception {
        ConnectionFactory f = new ConnectionFactory(); f.setUri(url); f.setAutomaticRecoveryEnabled(false);
        return f.newConnection();
    }
    static Connection conn() throws Exception { return conn(URL); }
    // vhost_user: the non-default user and vhost of interop/definitions.json.
    static String APP_USER = env("INTEROP_APP_USER", "interop-app"), APP_VHOST = env("INTEROP_APP_VHOST", "interop-app");
    static String APP_URL = env("INTEROP_APP_URL", "amqp://interop-app:interop-app-secret@127.0.0.1:5672/interop-app");
    static String APP_ROOT_URL = APP_URL.replaceAll("/[^/]*$", "/%2f");   // the same user on vhost /
    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }
    static String s(byte[] b) { return new String(b, StandardCharsets.UTF_8); }
    static Map<String, Object> m(Object... kv) { Map<String, Object> r = new LinkedHashMap<>(); for (int i = 0; i < kv.length; i += 2) r.put((String) kv[i], kv[i + 1]); return r; }
    static void sleep(long ms) { try { Thread.sleep(ms); } catch (InterruptedException e) { } }

    static Map<String, Object> expect(Map<String, Object> obs, Object... kv) throws Mismatch {
        StringBuilder bad = new StringBuilder();
        for (int i = 0; i < kv.length; i += 2) {
            Object got = obs.get(kv[i]);
            if (!json(got).equals(json(kv[i + 1]))) bad.append(kv[i]).append("=").append(json(got)).append(" (want ").append(json(kv[i + 1])).append("); ");
        }
        if (bad.length() > 0) throw new Mismatch("unexpected " + bad, obs);
        return obs;
    }
    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof String || o instanceof LongString) {
            String x = o.toString(); StringBuilder sb = new StringBuilder("\"");
            for (char c : x.toCharArray()) { if (c == '"' || c == '\\') sb.append('\\').append(c); else if (c < 32) sb.append(String.format("\\u%04x", (int) c)); else sb.append(c); }
            return sb.append('"').toString();
        }
        if (o instanceof Boolean || o instanceof Integer || o instanceof Long || o instanceof Short || o instanceof Byte) return o.toString();
        if (o instanceof Date) return Long.toString(((Date) o).getTime() / 1000);
        if (o instanceof Map) {
            StringBuilder sb = new StringBuilder("{"); boolean first = true;
            for (Map.Entry<?, ?> e : new TreeMap<String, Object>(((Map<String, Object>) o)).entrySet()) { if (!first) sb.append(','); first = false; sb.append(json(e.getKey().toString())).append(':').append(json(e.getValue())); }
            return sb.append('}').toString();
        }
        if (o instanceof List) { StringBuilder sb = new StringBuilder("["); boolean first = true; for (Object x : (List<?>) o) { if (!first) sb.append(','); first = false; sb.append(json(x)); } return sb.append(']').toString(); }
        return json(o.toString());
    }
    // Scenarios run on daemon threads so that one the broker never answers fails after 20 s.
    static final ExecutorService POOL = Executors.newCachedThreadPool(r -> { Thread t = new Thread(r); t.setDaemon(true); return t; });
    static void run(String name, Body body) {
        String out;
        try {
            Map<String, Object> obs;
            try { obs = POOL.submit(body::run).get(20, TimeUnit.SECONDS); }
            catch (ExecutionException e) { throw e.getCause(); }
            catch (TimeoutException e) { throw new Mismatch("timeout 20s", null); }
            out = "{\"scenario\":" + json(name) + ",\"ok\":true,\"obs\":" + json(obs) + ",\"err\":\"\"}";
        } catch (Mismatch e) {
            out = "{\"scenario\":" + json(name) + ",\"ok\":false,\"obs\":" + json(e.obs) + ",\"err\":" + json(e.getMessage()) + "}";
        } catch (Throwable e) {
            out = "{\"scenario\":" + json(name) + ",\"ok\":false,\"obs\":null,\"err\":" + json(e.toString()) + "}";
        }
        System.out.println(out); System.out.flush();
    }
    static ShutdownSignalException sse(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) if (t instanceof ShutdownSignalException) return (ShutdownSignalException) t;
        return null;
    }
    static Map<String, Object> closeObs(Throwable e) {
        ShutdownSignalException s = sse(e);
        if (s == null) return m("error", e.toString());
        Object r = s.getReason();
        if (r instanceof AMQP.Channel.Close) return m("code", ((AMQP.Channel.Close) r).getReplyCode(), "text", ((AMQP.Channel.Close) r).getReplyText());
        if (r instanceof AMQP.Connection.Close) return m("code", ((AMQP.Connection.Close) r).getReplyCode(), "text", ((AMQP.Connection.Close) r).getReplyText(), "connection", true);
        return m("error", s.toString());
    }
    static List<String> drain(Channel ch, String q) throws Exception {
        List<String> out = new ArrayList<>();
        for (GetResponse r; (r = ch.basicGet(q, true)) != null; ) out.add(s(r.getBody()));
        return out;
    }
    static String sha(byte[] d) throws Exception { return Base64.getEncoder().encodeToString(MessageDigest.getInstance("SHA-256").digest(d)); }
    static void waitFor(java.util.function.BooleanSupplier p, long ms) { long end = System.currentTimeMillis() + ms; while (!p.getAsBoolean() && System.currentTimeMillis() < end) sleep(10); }

    /** stream: a consumer (prefetch 2, acking each) from offset (null: the default, "next"); publish goes
     *  out once it is subscribed. Returns [body, x-stream-offset] of what arrives (n, then 0.3 s for extras). */
    static List<Object> streamConsume(Connection c, String s, Object offset, int n, String publish) throws Exception {
        Channel ch = c.createChannel(); ch.basicQos(2);
        List<Object> got = Collections.synchronizedList(new ArrayList<>());
        Map<String, Object> args = new HashMap<>(); if (offset != null) args.put("x-stream-offset", offset);
        ch.basicConsume(s, false, args, new DefaultConsumer(ch) {
            @Override public void handleDelivery(String tag, Envelope env, AMQP.BasicProperties p, byte[] body) throws java.io.IOException {
                Map<String, Object> h = p.getHeaders();
                got.add(Arrays.asList(s(body), h == null ? null : h.get("x-stream-offset"))); getChannel().basicAck(env.getDeliveryTag(), false);
            }
        });
        if (publish != null) { Channel pub = c.createChannel(); pub.confirmSelect(); pub.basicPublish("", s, null, b(publish)); pub.waitForConfirmsOrDie(5000); pub.close(); }
        waitFor(() -> got.size() >= n, 10000); sleep(300);
        ch.close();
        return new ArrayList<>(got);
    }
    public static void main(String[] a) throws Exception {
        run("connect", () -> {
            Connection c = conn(); Channel ch = c.createChannel();
            Map<String, Object> caps = (Map<String, Object>) c.getServerProperties().get("capabilities");
            List<String> on = new ArrayList<>(); for (Map.Entry<String, Object> e : caps.entrySet()) if (Boolean.TRUE.equals(e.getValue())) on.add(e.getKey());
            Collections.sort(on); Map<String, Object> obs = m("open", ch.isOpen(), "capabilities", on); c.close(); return obs;
        });
        run("declare", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".declare";
            AMQP.Queue.DeclareOk ok = ch.queueDeclare(q, false, false, false, null);
            for (String t : new String[]{"direct", "fanout", "topic", "headers"}) { ch.exchangeDeclare(P + ".x." + t, t); ch.exchangeDeclarePassive(P + ".x." + t); }
            ch.basicPublish("", q, null, b("1")); ch.basicPublish("", q, null, b("2")); sleep(200);
            int passive = ch.queueDeclarePassive(q).getMessageCount(); int del = ch.queueDelete(q).getMessageCount();
            for (String t : new String[]{"direct", "fanout", "topic", "headers"}) ch.exchangeDelete(P + ".x." + t);
            c.close();
            return expect(m("declare_ok", Arrays.asList(ok.getQueue(), ok.getMessageCount(), ok.getConsumerCount()), "passive_count", passive, "delete_count", del),
                    "declare_ok", Arrays.asList(q, 0, 0), "passive_count", 2, "delete_count", 2);
        });
        run("routing", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q1 = P + ".r1", q2 = P + ".r2";
            ch.queueDeclare(q1, false, false, false, null); ch.queueDeclare(q2, false, false, false, null);
            for (String t : new String[]{"direct", "fanout", "topic", "headers"}) ch.exchangeDeclare(P + ".rx." + t, t);
            String X = P + ".rx.";
            ch.queueBind(q1, X + "direct", "a"); ch.queueBind(q2, X + "direct", "b");
            ch.queueBind(q1, X + "fanout", ""); ch.queueBind(q2, X + "fanout", "");
            ch.queueBind(q1, X + "topic", "x.*"); ch.queueBind(q2, X + "topic", "x.#");
            ch.queueBind(q1, X + "headers", "", m("x-match", "all", "a", 1, "b", 2));
            ch.queueBind(q2, X + "headers", "", m("x-match", "any", "a", 1, "b", 2));
            for (String k : new String[]{"a", "b", "c"}) ch.basicPublish(X + "direct", k, null, b("direct-" + k));
            ch.basicPublish(X + "fanout", "zzz", null, b("fanout"));
            for (String k : new String[]{"x.y", "x.y.z", "x"}) ch.basicPublish(X + "topic", k, null, b("topic-" + k));
            ch.basicPublish(X + "headers", "", new AMQP.BasicProperties.Builder().headers(m("a", 1)).build(), b("headers-a"));
            ch.basicPublish(X + "headers", "", new AMQP.BasicProperties.Builder().headers(m("a", 1, "b", 2)).build(), b("headers-ab"));
            sleep(200);
            Map<String, Object> obs = m("q1", drain(ch, q1), "q2", drain(ch, q2)); c.close();
            return expect(obs, "q1", Arrays.asList("direct-a", "fanout", "topic-x.y", "headers-ab"),
                    "q2", Arrays.asList("direct-b", "fanout", "topic-x.y", "topic-x.y.z", "topic-x", "headers-a", "headers-ab"));
        });
        run("properties", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".props";
            ch.queueDeclare(q, false, false, false, null);
            Map<String, Object> headers = m("s", "str", "i", 42, "b", true, "n", m("k", "v"), "l", Arrays.asList(1, "two"));
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().contentType("application/json").contentEncoding("utf-8")
                    .headers(headers).deliveryMode(2).priority(5).correlationId("corr-1").replyTo("rq").expiration("60000")
                    .messageId("mid-1").timestamp(new Date(1700000000000L)).type("t1").userId("guest").appId("interop").build();
            ch.basicPublish("", q, props, b("props-body")); sleep(100);
            GetResponse r = ch.basicGet(q, true); AMQP.BasicProperties p = r.getProps(); c.close();
            Map<String, Object> pr = m("content_type", p.getContentType(), "content_encoding", p.getContentEncoding(), "delivery_mode", p.getDeliveryMode(),
                    "priority", p.getPriority(), "correlation_id", p.getCorrelationId(), "reply_to", p.getReplyTo(), "expiration", p.getExpiration(),
                    "message_id", p.getMessageId(), "timestamp", p.getTimestamp(), "type", p.getType(), "user_id", p.getUserId(), "app_id", p.getAppId(),
                    "headers", p.getHeaders());
            Map<String, Object> obs = m("body", s(r.getBody()), "exchange", r.getEnvelope().getExchange(), "routing_key", r.getEnvelope().getRoutingKey(),
                    "redelivered", r.getEnvelope().isRedeliver(), "message_count", r.getMessageCount(), "props", pr);
            return expect(obs, "body", "props-body", "props", m("content_type", "application/json", "content_encoding", "utf-8", "delivery_mode", 2,
                    "priority", 5, "correlation_id", "corr-1", "reply_to", "rq", "expiration", "60000", "message_id", "mid-1", "timestamp", 1700000000,
                    "type", "t1", "user_id", "guest", "app_id", "interop", "headers", headers));
        });
        run("consume_prefetch", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".prefetch";
            ch.queueDeclare(q, false, false, false, null); ch.basicQos(2);
            for (int i = 0; i < 5; i++) ch.basicPublish("", q, null, b("m" + i));
            List<Delivery> got = Collections.synchronizedList(new ArrayList<>());
            ch.basicConsume(q, false, (tag, d) -> got.add(d), tag -> { });
            waitFor(() -> got.size() >= 2, 5000); sleep(400); int before = got.size();
            int acked = 0; long end = System.currentTimeMillis() + 5000;
            while (acked < 5 && System.currentTimeMillis() < end) { while (acked < got.size()) ch.basicAck(got.get(acked++).getEnvelope().getDeliveryTag(), false); sleep(20); }
            List<String> bodies = new ArrayList<>(); List<Boolean> redel = new ArrayList<>();
            for (Delivery d : got) { bodies.add(s(d.getBody())); redel.add(d.getEnvelope().isRedeliver()); }
            c.close();
            return expect(m("before_ack", before, "bodies", bodies, "redelivered", redel), "before_ack", 2, "bodies", Arrays.asList("m0", "m1", "m2", "m3", "m4"));
        });
        run("get", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".get";
            ch.queueDeclare(q, false, false, false, null);
            for (int i = 0; i < 3; i++) ch.basicPublish("", q, null, b("g" + i)); sleep(100);
            List<Object> seq = new ArrayList<>();
            for (int i = 0; i < 3; i++) { GetResponse r = ch.basicGet(q, false); seq.add(Arrays.asList(s(r.getBody()), r.getMessageCount(), r.getEnvelope().isRedeliver())); ch.basicAck(r.getEnvelope().getDeliveryTag(), false); }
            boolean empty = ch.basicGet(q, false) == null; c.close();
            return expect(m("gets", seq, "empty", empty), "gets", Arrays.asList(Arrays.asList("g0", 2, false), Arrays.asList("g1", 1, false), Arrays.asList("g2", 0, false)), "empty", true);
        });
        run("nack_requeue", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".nack";
            ch.queueDeclare(q, false, false, false, null);
            ch.basicPublish("", q, null, b("n1")); ch.basicPublish("", q, null, b("n2")); sleep(100);
            List<Object> seq = new ArrayList<>(); GetResponse r;
            r = ch.basicGet(q, false); seq.add(Arrays.asList(s(r.getBody()), r.getEnvelope().isRedeliver())); ch.basicNack(r.getEnvelope().getDeliveryTag(), false, true);
            r = ch.basicGet(q, false); seq.add(Arrays.asList(s(r.getBody()), r.getEnvelope().isRedeliver())); ch.basicReject(r.getEnvelope().getDeliveryTag(), false);
            r = ch.basicGet(q, false); seq.add(Arrays.asList(s(r.getBody()), r.getEnvelope().isRedeliver())); ch.basicNack(r.getEnvelope().getDeliveryTag(), false, false);
            boolean empty = ch.basicGet(q, false) == null; c.close();
            return expect(m("seq", seq, "empty", empty), "seq", Arrays.asList(Arrays.asList("n1", false), Arrays.asList("n1", true), Arrays.asList("n2", false)), "empty", true);
        });
        run("confirms", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".confirms";
            ch.queueDeclare(q, false, false, false, null); ch.confirmSelect();
            Set<Long> acks = ConcurrentHashMap.newKeySet(); int[] nacks = {0};
            ch.addConfirmListener((tag, multiple) -> { if (multiple) for (long t = 1; t <= tag; t++) acks.add(t); else acks.add(tag); }, (tag, multiple) -> nacks[0]++);
            for (int i = 0; i < 10; i++) ch.basicPublish("", q, null, b("c" + i));
            boolean all = ch.waitForConfirms(10000);
            waitFor(() -> acks.size() >= 10, 2000);
            int count = ch.queueDeclarePassive(q).getMessageCount(); c.close();
            return expect(m("acked", acks.size(), "nacked", nacks[0], "all_confirmed", all, "count", count), "acked", 10, "nacked", 0, "all_confirmed", true, "count", 10);
        });
        run("mandatory", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); ch.confirmSelect();
            List<Object> rets = Collections.synchronizedList(new ArrayList<>());
            ch.addReturnListener(r -> rets.add(m("reply_code", r.getReplyCode(), "reply_text", r.getReplyText(), "exchange", r.getExchange(), "routing_key", r.getRoutingKey(), "body", s(r.getBody()))));
            ch.basicPublish("", P + ".nowhere", true, null, b("ret"));
            boolean acked = ch.waitForConfirms(5000);
            waitFor(() -> !rets.isEmpty(), 3000); c.close();
            return expect(m("returns", rets, "confirm_acked", acked), "returns", Arrays.asList(m("reply_code", 312, "reply_text", "NO_ROUTE", "exchange", "", "routing_key", P + ".nowhere", "body", "ret")), "confirm_acked", true);
        });
        run("competing", () -> {
            Connection c = conn(); String q = P + ".work"; Channel[] chs = {c.createChannel(), c.createChannel()};
            chs[0].queueDeclare(q, false, false, false, null);
            int[] counts = {0, 0}; List<String> seen = Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < 2; i++) {
                final int k = i; Channel ch = chs[i]; ch.basicQos(1);
                ch.basicConsume(q, false, (tag, d) -> { synchronized (counts) { counts[k]++; } seen.add(s(d.getBody())); sleep(5); ch.basicAck(d.getEnvelope().getDeliveryTag(), false); }, tag -> { });
            }
            Channel pub = c.createChannel(); for (int i = 0; i < 20; i++) pub.basicPublish("", q, null, b("w" + i));
            waitFor(() -> seen.size() >= 20, 10000); sleep(50); c.close();
            return expect(m("total", seen.size(), "distinct", new HashSet<>(seen).size(), "both_busy", Math.min(counts[0], counts[1]) >= 5), "total", 20, "distinct", 20, "both_busy", true);
        });
        run("rpc", () -> {
            Connection c = conn(); Channel srv = c.createChannel(), cli = c.createChannel(); String q = P + ".rpc";
            srv.queueDeclare(q, false, false, false, null);
            srv.basicConsume(q, false, (tag, d) -> {
                byte[] rep = ("reply:" + s(d.getBody())).getBytes(StandardCharsets.UTF_8);
                srv.basicPublish("", d.getProperties().getReplyTo(), new AMQP.BasicProperties.Builder().correlationId(d.getProperties().getCorrelationId()).build(), rep);
                srv.basicAck(d.getEnvelope().getDeliveryTag(), false);
            }, tag -> { });
            String rq = cli.queueDeclare().getQueue(); List<Object> replies = Collections.synchronizedList(new ArrayList<>());
            cli.basicConsume(rq, true, (tag, d) -> replies.add(Arrays.asList(d.getProperties().getCorrelationId(), s(d.getBody()))), tag -> { });
            cli.basicPublish("", q, new AMQP.BasicProperties.Builder().replyTo(rq).correlationId("c-1").build(), b("ping"));
            waitFor(() -> !replies.isEmpty(), 5000); c.close();
            return expect(m("reply_queue", rq, "replies", replies), "reply_queue", rq.startsWith("amq.gen-") ? rq : "amq.gen-?", "replies", Arrays.asList(Arrays.asList("c-1", "reply:ping")));
        });
        run("large", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".large";
            ch.queueDeclare(q, false, false, false, null);
            byte[] body = new byte[LARGE_LEN]; for (int i = 0; i < LARGE_LEN - LARGE_LEN % 251; i++) body[i] = (byte) (((i % 251) * 7 + 3) % 251);
            ch.basicPublish("", q, null, body);
            GetResponse r = null; long end = System.currentTimeMillis() + 10000;
            while (r == null && System.currentTimeMillis() < end) { r = ch.basicGet(q, true); if (r == null) sleep(50); }
            c.close();
            return expect(m("len", r == null ? -1 : r.getBody().length, "sha256_ok", r != null && sha(r.getBody()).equals(sha(body))), "len", LARGE_LEN, "sha256_ok", true);
        });
        run("err_404", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); Map<String, Object> obs = m("raised", false);
            try { ch.queueDeclarePassive(P + ".missing"); } catch (Exception e) { obs = closeObs(e); }
            obs.put("conn_open", c.isOpen()); c.close();
            return expect(obs, "code", 404, "text", "NOT_FOUND - no queue '" + P + ".missing' in vhost '/'", "conn_open", true);
        });
        run("err_406", () -> {
            Connection c = conn(); Channel ch = c.createChannel(); String q = P + ".q406"; Map<String, Object> obs = m("raised", false);
            ch.queueDeclare(q, false, false, false, null);
            try { ch.queueDeclare(q, true, false, false, null); } catch (Exception e) { obs = closeObs(e); }
            c.createChannel().queueDelete(q); c.close();
            return expect(obs, "code", 406, "text", "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '" + q + "' in vhost '/': received 'true' but current is 'false'");
        });
        run("err_403", () -> {
            Map<String, Object> obs = m("raised", false);
            try { conn(URL.replace("guest:guest@", "guest:wrong@")).close(); } catch (Exception e) { obs = m("error", e.getClass().getSimpleName(), "message", String.valueOf(e.getMessage())); }
            return expect(obs, "error", "AuthenticationFailureException");
        });
        run("vhost_user", () -> {
            String q = "interop.app." + P, denied = P + ".denied";
            Connection c = conn(APP_URL); Channel ch = c.createChannel();
            AMQP.Queue.DeclareOk d = ch.queueDeclare(q, false, false, false, null);
            Map<String, Object> obs = m("declare_ok", Arrays.asList(d.getQueue(), d.getMessageCount(), d.getConsumerCount()));
            ch.basicPublish("", q, null, b("vhost-user"));
            GetResponse r = null; long end = System.currentTimeMillis() + 5000;
            while (r == null && System.currentTimeMillis() < end) { r = ch.basicGet(q, true); if (r == null) sleep(50); }
            obs.put("got", r == null ? null : s(r.getBody()));
            Channel ch2 = c.createChannel();
            try { ch2.queueDeclare(denied, false, false, false, null); obs.put("refused_code", null); }
            catch (Exception e) { Map<String, Object> x = closeObs(e); obs.put("refused_code", x.get("code")); obs.put("refused_text", x.get("text")); }
            obs.put("conn_open", c.isOpen());
            c.createChannel().queueDelete(q); c.close();
            try { conn(APP_ROOT_URL).close(); obs.put("root_error", null); }
            catch (Exception e) {
                Map<String, Object> x = closeObs(e);
                obs.put("root_error", e.getClass().getSimpleName()); obs.put("root_code", x.get("code")); obs.put("root_text", x.get("text"));
            }
            String t = String.valueOf(obs.get("refused_text")), tail = "access to queue '" + denied + "' in vhost '" + APP_VHOST + "' refused for user '" + APP_USER + "'";
            if (!t.equals("ACCESS_REFUSED - " + tail) && !t.equals("ACCESS_REFUSED - configure " + tail)) throw new Mismatch("refused_text " + t, obs);
            return expect(obs, "declare_ok", Arrays.asList(q, 0, 0), "got", "vhost-user", "refused_code", 403, "conn_open", true,
                          "root_code", 530, "root_text", "NOT_ALLOWED - access to vhost '/' refused for user '" + APP_USER + "'");
        });
        run("stream", () -> {
            String q = P + ".stream"; Connection c = conn(); Channel ch = c.createChannel();
            ch.queueDelete(q);
            ch.queueDeclare(q, true, false, false, Collections.singletonMap("x-queue-type", (Object) "stream"));
            ch.confirmSelect();
            for (int i = 0; i < 5; i++) ch.basicPublish("", q, null, b("s" + i));
            ch.waitForConfirmsOrDie(5000);
            Map<String, Object> obs = m("first", streamConsume(c, q, "first", 5, null), "from3", streamConsume(c, q, 3, 2, null),
                                        "next", streamConsume(c, q, null, 1, "s-after"));
            try { c.createChannel().basicConsume(q, false, new DefaultConsumer(ch)); obs.put("no_qos_code", null); }
            catch (Exception e) { Map<String, Object> x = closeObs(e); obs.put("no_qos_code", x.get("code")); obs.put("no_qos_text", String.valueOf(x.get("text")).split(" for ")[0]); }
            obs.put("conn_open_after_406", c.isOpen()); c.close();
            Connection c2 = conn();
            try { c2.createChannel().basicGet(q, false); obs.put("get_code", null); }
            catch (Exception e) { Map<String, Object> x = closeObs(e); obs.put("get_code", x.get("code")); obs.put("get_text", x.get("text")); }
            obs.put("conn_open_after_get", c2.isOpen()); if (c2.isOpen()) c2.close();
            Connection c3 = conn(); c3.createChannel().queueDelete(q); c3.close();
            List<Object> first = new ArrayList<>(); for (int i = 0; i < 5; i++) first.add(Arrays.asList("s" + i, i));
            return expect(obs, "first", first, "from3", first.subList(3, 5), "next", Arrays.asList(Arrays.asList("s-after", 5)),
                          "no_qos_code", 406, "no_qos_text", "PRECONDITION_FAILED - consumer prefetch count is not set", "conn_open_after_406", true,
                          "get_code", 540, "get_text", "NOT_IMPLEMENTED - basic.get not supported by stream queues queue '" + q + "' in vhost '/'",
                          "conn_open_after_get", false);
        });
        System.exit(0);
    }
}
