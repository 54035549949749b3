//! TLS for the AMQP listeners (amqps) and the management API (https): rustls with the
//! ring provider, certificates and keys read from PEM files at boot, optional client
//! certificates verified against a CA file, and the EXTERNAL mechanism's user name
//! taken from a verified client certificate ([`dn`]).
//!
//! Every file problem (missing, not PEM, no certificate, no key, key not matching the
//! certificate) stops the boot with an error naming the configuration key and the
//! file.

pub mod dn;
pub mod listener;
pub mod stream;

use crate::broker::registry::TlsInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig, server::WebPkiClientVerifier};

pub use dn::CertLogin;
pub use tokio_rustls::TlsAcceptor;

/// One listener's TLS files and client-certificate policy, with the configuration
/// keys that named them (for error messages).
pub struct TlsFiles<'a> {
    pub cert: (&'a str, &'a Path),
    pub key: (&'a str, &'a Path),
    pub ca: (&'a str, Option<&'a Path>),
    /// Ask clients for a certificate and verify it against the CA file.
    pub verify_peer: bool,
    /// Refuse clients that present no certificate (needs `verify_peer`).
    pub fail_if_no_peer_cert: bool,
    /// ALPN protocols offered (the management API offers HTTP/1.1).
    pub alpn: &'a [&'a [u8]],
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{key}: {} is not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Builds the acceptor for one listener.
pub fn acceptor(files: &TlsFiles<'_>) -> Result<TlsAcceptor, String> {
    let certs = certificates(files.cert.0, files.cert.1)?;
    let (key_name, key_path) = files.key;
    let key_pem = read(key_name, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "{key_name}: {} holds no PEM private key: {e}",
            key_path.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier = if files.verify_peer {
        let (ca_name, ca_path) = match files.ca {
            (name, Some(path)) => (name, path),
            (name, None) => {
                return Err(format!(
                    "{name} is not set: verifying client certificates (verify_peer) needs a CA file"
                ));
            }
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca_name, ca_path)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "{ca_name}: {}: not a usable CA certificate: {e}",
                    ca_path.display()
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let verifier = if files.fail_if_no_peer_cert {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        verifier
            .build()
            .map_err(|e| format!("{ca_name}: {}: {e}", ca_path.display()))?
    } else if files.fail_if_no_peer_cert {
        return Err(
            "fail_if_no_peer_cert needs peer verification (verify_peer) to be on".to_string(),
        );
    } else {
        WebPkiClientVerifier::no_client_auth()
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{key_name}: {} does not go with the certificate in {} ({}): {e}",
                key_path.display(),
                files.cert.1.display(),
                files.cert.0
            )
        })?;
    config.alpn_protocols = files.alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a TLS client's certificate says about who it is (for EXTERNAL).
#[derive(Debug, Clone)]
pub enum PeerCert {
    /// The client presented no certificate.
    Missing,
    /// The name the (verified) certificate gives, under `ssl_cert_login_from`.
    Named(String),
    /// A certificate without the configured name in it.
    Unnamed,
}

impl PeerCert {
    /// Reads the client certificate of an accepted TLS stream.
    pub fn of(stream: &stream::TlsStream, from: CertLogin) -> PeerCert {
        let (_, session) = stream.get_ref();
        match session.peer_certificates().and_then(|c| c.first()) {
            None => PeerCert::Missing,
            Some(cert) => match dn::login_name(cert.as_ref(), from) {
                Some(name) => PeerCert::Named(name),
                None => PeerCert::Unnamed,
            },
        }
    }
}

/// What the management API shows of an accepted TLS stream.
pub fn describe(stream: &stream::TlsStream) -> TlsInfo {
    let (_, session) = stream.get_ref();
    let protocol = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "tlsv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "tlsv1.2".to_owned(),
        Some(other) => format!("{other:?}").to_lowercase(),
        None => String::new(),
    };
    let cipher = session
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    let peer_subject = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|cert| dn::login_name(cert.as_ref(), CertLogin::DistinguishedName));
    TlsInfo {
        protocol,
        cipher,
        peer_subject,
    }
}
