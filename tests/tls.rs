//! AMQP over TLS (amqps) and the management API over HTTPS, through lapin and a
//! rustls client, with certificates generated here (a CA, the server's, clients').

mod common;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use warren::{Config, Server};

/// A throw-away CA with the server's certificate, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Warren test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        let ca_pem = ca.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");
        let issuer = Issuer::new(params, key);
        let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = Pki::sign(&issuer, server);
        std::fs::write(dir.path().join("server.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("server.key"), key).expect("write key");
        Pki {
            dir,
            ca_pem,
            issuer,
        }
    }

    fn sign(issuer: &Issuer<'static, KeyPair>, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate with subject `O=Warren tests, CN=cn` (PEM cert, PEM key).
    fn client(&self, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        // Not rcgen's default subject: these two, in this order.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Warren tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Pki::sign(&self.issuer, params)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The broker's TLS settings: amqps and HTTPS on port 0 with these files.
    fn configure(&self, config: &mut Config) {
        config.tls.listen = vec!["127.0.0.1:0".parse().expect("address")];
        config.tls.management_listen = Some("127.0.0.1:0".parse().expect("address"));
        config.tls.cert_file = Some(self.path("server.pem"));
        config.tls.key_file = Some(self.path("server.key"));
        config.tls.ca_file = Some(self.path("ca.pem"));
    }
}

/// An in-process broker with TLS listeners; stops when dropped.
struct TlsBroker {
    amqps: SocketAddr,
    https: SocketAddr,
    plain: SocketAddr,
    ctx: Arc<warren::connection::ServerContext>,
    _stop: oneshot::Sender<()>,
}

async fn start(pki: &Pki, adjust: impl FnOnce(&mut Config)) -> TlsBroker {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("address")],
        management_listen: None,
        prometheus_listen: None,
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    pki.configure(&mut config);
    adjust(&mut config);
    let server = Server::bind(config).await.expect("broker binds");
    let amqps = server.tls_addrs()[0];
    let https = server.management_tls_addr().expect("an HTTPS listener");
    let plain = server.local_addr();
    let context = server.context();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = rx.await;
            })
            .await;
        drop(dir);
    });
    TlsBroker {
        amqps,
        https,
        plain,
        ctx: context,
        _stop: tx,
    }
}

/// Creates user `name` with every permission in `/`.
fn add_user(b: &TlsBroker, name: &str) {
    let user = warren::access::User {
        name: name.to_owned(),
        password_hash: String::new(),
        hashing_algorithm: String::new(),
        tags: Vec::new(),
        limits: Default::default(),
    };
    b.ctx
        .broker
        .put_user(user, Some("unused-password"))
        .expect("user created");
    b.ctx
        .broker
        .set_permissions(warren::access::Permission {
            user: name.to_owned(),
            vhost: "/".to_owned(),
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
        })
        .expect("permissions set");
}

fn tls_config(pki: &Pki, client: Option<(String, String)>) -> OwnedTLSConfig {
    OwnedTLSConfig {
        identity: client.map(|(cert, key)| OwnedIdentity::PKCS8 {
            pem: cert.into_bytes(),
            key: key.into_bytes(),
        }),
        cert_chain: Some(pki.ca_pem.clone()),
    }
}

async fn connect(uri: &str, tls: OwnedTLSConfig) -> Result<Connection, lapin::Error> {
    let runtime = lapin::runtime::default_runtime().expect("runtime");
    tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect_with_config(uri, ConnectionProperties::default(), tls, runtime),
    )
    .await
    .expect("the broker answers in time")
}

/// Publishes one message to a new queue and consumes it back.
async fn round_trip(conn: &Connection) {
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    ch.basic_publish(
        "".into(),
        q.name().as_str().into(),
        BasicPublishOptions::default(),
        b"over tls",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = ch
        .basic_consume(
            q.name().as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = consumer
        .next()
        .await
        .expect("a delivery")
        .expect("delivery ok");
    assert_eq!(delivery.data, b"over tls");
}

#[tokio::test]
async fn publish_and_consume_over_amqps() {
    let pki = Pki::new();
    let b = start(&pki, |_| {}).await;
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", b.amqps.port());
    let conn = connect(&uri, tls_config(&pki, None)).await.expect("amqps");
    round_trip(&conn).await;
    // The plain listener goes on beside it.
    let plain = Connection::connect(
        &format!("amqp://guest:guest@{}/%2f", b.plain),
        ConnectionProperties::default(),
    )
    .await
    .expect("plain amqp");
    round_trip(&plain).await;
    let listed = b.ctx.broker.connections().list();
    let encrypted = listed.iter().filter(|c| c.tls.is_some()).count();
    assert_eq!((listed.len(), encrypted), (2, 1), "one of the two is TLS");
}

#[tokio::test]
async fn external_login_with_a_client_certificate() {
    let pki = Pki::new();
    let b = start(&pki, |c| {
        c.tls.verify_peer = true;
        c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    })
    .await;
    // RabbitMQ's default names the user by the subject's distinguished name.
    let dn = "CN=app-one,O=Warren tests";
    add_user(&b, dn);
    let uri = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        b.amqps.port()
    );
    let conn = connect(&uri, tls_config(&pki, Some(pki.client("app-one"))))
        .await
        .expect("EXTERNAL login");
    round_trip(&conn).await;
    let listed = b
        .ctx
        .broker
        .connections()
        .list()
        .into_iter()
        .find(|c| c.user == dn && c.auth_mechanism == "EXTERNAL")
        .expect("the connection runs as the certificate's user");
    // What the management API shows as ssl, ssl_protocol and peer_cert_subject.
    let tls = listed.tls.expect("listed as a TLS connection");
    assert_eq!(tls.protocol, "tlsv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    assert_eq!(tls.peer_subject.as_deref(), Some(dn));

    // A certificate whose user does not exist is refused.
    let err = connect(&uri, tls_config(&pki, Some(pki.client("nobody"))))
        .await
        .expect_err("unknown user refused");
    let (code, text) = common::amqp_error(&err);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("EXTERNAL"), "{text}");

    // Without a certificate EXTERNAL has no one to log in as.
    let err = connect(&uri, tls_config(&pki, None))
        .await
        .expect_err("no certificate, no EXTERNAL login");
    assert_eq!(common::amqp_error(&err).0, 403);
    // PLAIN goes on working for clients without certificates.
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", b.amqps.port());
    connect(&uri, tls_config(&pki, None)).await.expect("PLAIN");
}

#[tokio::test]
async fn external_with_the_common_name() {
    let pki = Pki::new();
    let b = start(&pki, |c| {
        c.tls.verify_peer = true;
        c.tls.cert_login_from = warren::tls::CertLogin::CommonName;
        c.auth_mechanisms = vec!["EXTERNAL".into()];
    })
    .await;
    add_user(&b, "app-two");
    let uri = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        b.amqps.port()
    );
    let conn = connect(&uri, tls_config(&pki, Some(pki.client("app-two"))))
        .await
        .expect("EXTERNAL login as the CN");
    round_trip(&conn).await;
}

#[tokio::test]
async fn external_is_not_offered_unless_configured() {
    let pki = Pki::new();
    let b = start(&pki, |c| c.tls.verify_peer = true).await;
    add_user(&b, "CN=app-three,O=Warren tests");
    let uri = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        b.amqps.port()
    );
    assert!(
        connect(&uri, tls_config(&pki, Some(pki.client("app-three"))))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_clients_without_one() {
    let pki = Pki::new();
    let b = start(&pki, |c| {
        c.tls.verify_peer = true;
        c.tls.fail_if_no_peer_cert = true;
    })
    .await;
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", b.amqps.port());
    assert!(connect(&uri, tls_config(&pki, None)).await.is_err());
    // With a certificate (any user: PLAIN still names it) the client gets in.
    let conn = connect(&uri, tls_config(&pki, Some(pki.client("anyone"))))
        .await
        .expect("client with a certificate");
    round_trip(&conn).await;
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_is_dropped_alone() {
    let pki = Pki::new();
    let b = start(&pki, |_| {}).await;
    let wrong = tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect(
            &format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.amqps.port()),
            ConnectionProperties::default(),
        ),
    )
    .await
    .expect("the broker closes the socket in time");
    assert!(wrong.is_err());
    // Raw garbage too.
    let mut raw = tokio::net::TcpStream::connect(b.amqps).await.expect("tcp");
    raw.write_all(b"AMQP\x00\x00\x09\x01").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), raw.read_to_end(&mut buf))
        .await
        .expect("the broker closes the socket");
    // The broker goes on serving TLS clients.
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", b.amqps.port());
    let conn = connect(&uri, tls_config(&pki, None)).await.expect("amqps");
    round_trip(&conn).await;
}

#[tokio::test]
async fn management_api_over_https() {
    use tokio_rustls::rustls;
    let pki = Pki::new();
    let b = start(&pki, |_| {}).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types_certs(&pki.ca_pem) {
        roots.add(cert).expect("CA added");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(b.https).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(
        b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\n\
          Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("request");
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"rabbitmq_version\""), "{reply}");
}

fn rustls_pki_types_certs(
    pem: &str,
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM")
}

#[tokio::test]
async fn bad_tls_files_stop_the_boot() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let boot = |adjust: &dyn Fn(&mut Config)| {
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("address")],
            management_listen: None,
            prometheus_listen: None,
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        pki.configure(&mut config);
        adjust(&mut config);
        config
    };
    let error = |config: Config| async move {
        match Server::bind(config).await {
            Ok(_) => panic!("the broker started"),
            Err(e) => e.to_string(),
        }
    };
    let missing = error(boot(&|c| {
        c.tls.cert_file = Some("/nonexistent/cert.pem".into())
    }))
    .await;
    assert!(
        missing.contains("tls.cert_file") && missing.contains("/nonexistent/cert.pem"),
        "{missing}"
    );
    let not_pem = pki.path("garbage.pem");
    std::fs::write(&not_pem, "not a key").expect("write");
    let bad_key = error(boot(&|c| c.tls.key_file = Some(not_pem.clone()))).await;
    assert!(
        bad_key.contains("tls.key_file") && bad_key.contains("garbage.pem"),
        "{bad_key}"
    );
    // A key of another certificate.
    let (_, other_key) = pki.client("other");
    let other = pki.path("other.key");
    std::fs::write(&other, other_key).expect("write");
    let mismatch = error(boot(&|c| c.tls.key_file = Some(other.clone()))).await;
    assert!(
        mismatch.contains("other.key") && mismatch.contains("does not go with"),
        "{mismatch}"
    );
    let no_ca = error(boot(&|c| {
        c.tls.verify_peer = true;
        c.tls.ca_file = None;
    }))
    .await;
    assert!(no_ca.contains("tls.ca_file"), "{no_ca}");
}

#[test]
fn rabbitmq_conf_tls_keys() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rabbitmq-tls/rabbitmq.conf");
    let env = |name: &str| match name {
        "RABBITMQ_CONFIG_FILE" => Some(fixture.display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some("/nonexistent/conf.d/*.conf".to_string()),
        _ => None,
    };
    let (config, notices) = Config::load(None, env).expect("the fixture loads");
    let tls = &config.tls;
    let listen: Vec<String> = tls.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["[::]:5671", "0.0.0.0:5671"]);
    let dir = std::path::Path::new("/etc/rabbitmq/tls");
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(&*dir.join("ca_certificate.pem"))
    );
    assert_eq!(
        tls.cert_file.as_deref(),
        Some(&*dir.join("server_certificate.pem"))
    );
    assert_eq!(tls.key_file.as_deref(), Some(&*dir.join("server_key.pem")));
    assert!(tls.verify_peer && tls.fail_if_no_peer_cert);
    assert_eq!(tls.cert_login_from, warren::tls::CertLogin::CommonName);
    assert_eq!(config.auth_mechanisms, ["EXTERNAL", "PLAIN"]);
    assert_eq!(
        tls.management_listen,
        Some("127.0.0.1:15671".parse().expect("address"))
    );
    assert_eq!(
        tls.management_cert_file.as_deref(),
        Some(&*dir.join("mgmt_certificate.pem"))
    );
    assert_eq!(
        tls.management_key_file.as_deref(),
        Some(&*dir.join("mgmt_key.pem"))
    );
    assert_eq!(
        tls.management_ca_file.as_deref(),
        Some(&*dir.join("ca_certificate.pem"))
    );
    // As RabbitMQ: management configured for TLS only has no plain HTTP listener.
    assert_eq!(config.management_listen, None);
    // The plain AMQP listener stays.
    assert_eq!(config.listen.len(), 2);
    // Only the TLS version list is not Warren's to set.
    let ignored: Vec<&String> = notices
        .lines
        .iter()
        .filter(|(warn, _)| *warn)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(ignored[0].contains("ssl_options.versions.1"), "{ignored:?}");

    // A bad value names the file, the line and the key.
    let dir = tempfile::tempdir().expect("temporary directory");
    let bad = dir.path().join("rabbitmq.conf");
    std::fs::write(&bad, "ssl_options.verify = verify_maybe\n").expect("write");
    let env = |name: &str| match name {
        "RABBITMQ_CONFIG_FILE" => Some(bad.display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some("/nonexistent/conf.d/*.conf".to_string()),
        _ => None,
    };
    let error = Config::load(None, env).expect_err("refused").to_string();
    assert!(
        error.contains("rabbitmq.conf:1") && error.contains("ssl_options.verify"),
        "{error}"
    );
}

#[test]
fn warren_toml_tls_table_keeps_rabbitmq_conf_keys_it_leaves_out() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let conf = dir.path().join("rabbitmq.conf");
    std::fs::write(&conf, "ssl_options.certfile = /from/rabbitmq.pem\n").expect("write");
    let toml = dir.path().join("warren.toml");
    std::fs::write(&toml, "[tls]\nkey_file = \"/from/toml.key\"\n").expect("write");
    let env = |name: &str| match name {
        "RABBITMQ_CONFIG_FILE" => Some(conf.display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some("/nonexistent/conf.d/*.conf".to_string()),
        _ => None,
    };
    let (config, _) = Config::load(Some(&toml), env).expect("loads");
    assert_eq!(
        config.tls.cert_file.as_deref(),
        Some(std::path::Path::new("/from/rabbitmq.pem"))
    );
    assert_eq!(
        config.tls.key_file.as_deref(),
        Some(std::path::Path::new("/from/toml.key"))
    );
}

#[tokio::test]
async fn a_silent_peer_on_the_tls_port_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new();
    let b = start(&pki, |c| c.handshake_timeout_secs = 1).await;
    let mut silent = tokio::net::TcpStream::connect(b.amqps).await.expect("tcp");
    let mut buf = Vec::new();
    // The broker closes the socket (read_to_end returns); the bound is generous.
    let closed = tokio::time::timeout(Duration::from_secs(30), silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the silent peer's socket stays open");
    assert!(buf.is_empty());
}

#[test]
fn the_tls_example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tls.example.toml");
    let config = Config::from_file(&path).expect("config/tls.example.toml loads");
    assert_eq!(config.auth_mechanisms, ["PLAIN", "AMQPLAIN", "EXTERNAL"]);
    assert_eq!(config.tls.listen.len(), 2);
    assert!(config.tls.verify_peer && !config.tls.fail_if_no_peer_cert);
    assert_eq!(
        config.tls.cert_login_from,
        warren::tls::CertLogin::CommonName
    );
    assert!(config.tls.management_listen.is_some());
    // The rest keeps Warren's defaults.
    assert_eq!(config.listen, Config::default().listen);
}
