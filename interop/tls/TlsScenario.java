// RabbitMQ's Java client over TLS: PLAIN login over amqps, then a client certificate
// (PKCS#12) with EXTERNAL. Reads TLS_HOST, TLS_PORT, TLS_CA, TLS_CLIENT_P12,
// TLS_CLIENT_P12_PASS, TLS_PREFIX (see run).
import com.rabbitmq.client.*;
import java.io.FileInputStream;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import javax.net.ssl.*;

public class TlsScenario {
    static String env(String k) { return System.getenv(k); }

    static SSLContext context(boolean clientCert) throws Exception {
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (FileInputStream in = new FileInputStream(env("TLS_CA"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyManager[] keys = null;
        if (clientCert) {
            char[] pass = env("TLS_CLIENT_P12_PASS").toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (FileInputStream in = new FileInputStream(env("TLS_CLIENT_P12"))) { ks.load(in, pass); }
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pass);
            keys = kmf.getKeyManagers();
        }
        SSLContext ctx = SSLContext.getInstance("TLSv1.2");
        ctx.init(keys, tmf.getTrustManagers(), null);
        return ctx;
    }

    static void publishGet(boolean external, String name) throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(env("TLS_HOST"));
        f.setPort(Integer.parseInt(env("TLS_PORT")));
        f.useSslProtocol(context(external));
        if (external) {
            f.setSaslConfig(DefaultSaslConfig.EXTERNAL);
        } else {
            f.setUsername("guest");
            f.setPassword("guest");
        }
        try (Connection c = f.newConnection()) {
            Channel ch = c.createChannel();
            String q = env("TLS_PREFIX") + ".java." + name;
            ch.queueDeclare(q, false, false, true, null);
            ch.basicPublish("", q, null, "over tls".getBytes("UTF-8"));
            GetResponse r = null;
            for (int i = 0; i < 50 && r == null; i++) {
                r = ch.basicGet(q, true);
                if (r == null) Thread.sleep(100);
            }
            ch.queueDelete(q);
            if (r == null || !new String(r.getBody(), "UTF-8").equals("over tls")) {
                throw new Exception("message not read back");
            }
        }
    }

    static boolean run(String name, boolean external) {
        try {
            publishGet(external, name);
            System.out.println("{\"scenario\": \"" + name + "\", \"ok\": true}");
            return true;
        } catch (Exception e) {
            String err = (e.getClass().getSimpleName() + ": " + e.getMessage()).replace("\\", "\\\\").replace("\"", "'");
            System.out.println("{\"scenario\": \"" + name + "\", \"ok\": false, \"err\": \"" + err + "\"}");
            return false;
        }
    }

    public static void main(String[] args) {
        boolean ok = run("amqps", false);
        ok = run("external", true) && ok;
        System.exit(ok ? 0 : 1);
    }
}
