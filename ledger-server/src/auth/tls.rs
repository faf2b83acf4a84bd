//! TLS for the gRPC listener: `serve --tls-cert PEM --tls-key PEM [--tls-client-ca PEM]`.
//!
//! rustls with the **aws-lc-rs** crypto provider: the one the KurrentDB client
//! (`kurrentdb` 1.2) already builds tonic with, so the binary carries one TLS stack.
//! Option not taken: `ring`, which would add a second provider to every build for
//! nothing.
//!
//! The server accepts TLS itself (`crate::accept`), with a deadline on the handshake,
//! instead of handing the configuration to tonic (`Server::tls_config`): tonic runs
//! each handshake without a timeout, so a client that sent part of a ClientHello and
//! stalled held its socket and a task for good (security probe, sixteenth session).
//! The configuration below is the one tonic built (same verifier, same ALPN), so
//! clients see no difference.
//!
//! With a client CA, a client certificate is verified against it but is **optional**:
//! a client that presents one is authenticated by its name (`certificate_name` in the
//! access file), a client that presents none can still send a bearer key. A presented
//! certificate that does not verify fails the handshake. Option not taken: requiring
//! certificates, which would lock out every key-holding partner on a TLS listener; to
//! require them, give callers only `certificate_name`s.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;

/// The ALPN protocol a gRPC server offers: HTTP/2 (what tonic offered).
const ALPN_H2: &[u8] = b"h2";

/// The PEM files of a TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificate(s) that client certificates are verified against (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no PEM block (`-----BEGIN …`); convert it to PEM (e.g. `openssl x509 -inform der -in FILE -out FILE.pem`)")]
    NotPem { what: &'static str, path: PathBuf },
    #[error("{what} does not parse: {reason}; it must hold PEM blocks (`-----BEGIN CERTIFICATE-----` for certificates, `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` for the key)")]
    Parse { what: &'static str, reason: String },
    #[error("{what} holds no {expected}")]
    Empty {
        what: &'static str,
        expected: &'static str,
    },
    #[error("the TLS certificate and key cannot serve: {0}; check that --tls-key is the private key of the first certificate in --tls-cert")]
    Identity(String),
    #[error("the client CA (--tls-client-ca) cannot verify client certificates: {0}; it must hold the CA certificate(s) that issued the clients' certificates")]
    ClientCa(String),
}

/// What a TLS listener serves with: the server's certificate and key, and the client
/// CA if any, checked and ready to accept connections (`crate::accept`).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the key.
        f.debug_struct("ServerTls")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM bytes: `cert_chain` (leaf first), its private `key`, and the CA
    /// certificate(s) that client certificates are verified against, if any.
    pub fn from_pem(
        cert_chain: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<Self, TlsError> {
        let certs = certificates("the TLS certificate (--tls-cert)", cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Parse {
            what: "the TLS private key (--tls-key)",
            reason: e.to_string(),
        })?;
        // This provider, not the process default: rustls is built with two here (the
        // KurrentDB client's HTTP stack enables `ring`), and with two and none
        // installed, rustls cannot pick one by itself.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports rustls's default protocol versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        config.alpn_protocols.push(ALPN_H2.to_vec());
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The acceptor for one connection's handshake.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// Every certificate in `pem`; at least one.
fn certificates(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            expected: "certificate (`-----BEGIN CERTIFICATE-----`)",
        });
    }
    Ok(certs)
}

/// Verifies client certificates against `ca` when presented; a client without one may
/// still send a bearer key (module docs).
fn client_verifier(
    ca: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    // Like tonic's configuration (`add_parsable_certificates`): a bundle with one
    // certificate rustls cannot use as a trust anchor still serves with the others,
    // said at start-up; a bundle with none refuses to start.
    let mut roots = RootCertStore::empty();
    let certs = certificates("the client CA (--tls-client-ca)", ca)?;
    let given = certs.len();
    let (added, skipped) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::ClientCa(format!(
            "none of its {given} certificates can be a trust anchor"
        )));
    }
    if skipped > 0 {
        tracing::warn!(
            added,
            skipped,
            "the client CA (--tls-client-ca) holds certificates that cannot be trust anchors; they are left out"
        );
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Read and check the files: a certificate that does not parse, a key that is not
    /// the certificate's, or a client CA that is no certificate is refused here, at
    /// start-up, naming the flag.
    pub fn load(&self) -> Result<ServerTls, TlsError> {
        let cert = read_pem("the TLS certificate (--tls-cert)", &self.cert)?;
        let key = read_pem("the TLS private key (--tls-key)", &self.key)?;
        let ca = match &self.client_ca {
            Some(path) => Some(read_pem("the client CA (--tls-client-ca)", path)?),
            None => None,
        };
        ServerTls::from_pem(&cert, &key, ca.as_deref())
    }
}

/// Make aws-lc-rs the process's rustls provider. The server's own TLS names its
/// provider ([`ServerTls::from_pem`]); this is for TLS clients in the same process
/// (tonic's client config takes the process default, and rustls is built here with
/// both providers, the KurrentDB client's HTTP stack enabling `ring` too, so it cannot
/// pick one by itself and would panic). A provider installed earlier (by an embedder)
/// is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, in PEM.
    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_with_its_key_serves_with_or_without_a_client_ca() {
        let (cert, key) = self_signed();
        let (ca, _) = self_signed();
        for client_ca in [None, Some(ca.as_bytes())] {
            let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), client_ca).unwrap();
            assert_eq!(tls.config.alpn_protocols, vec![b"h2".to_vec()]);
        }
    }

    #[test]
    fn files_that_cannot_serve_are_refused_at_start_up_naming_the_flag() {
        let (cert, key) = self_signed();
        let (other_cert, other_key) = self_signed();
        let refused = |cert: &str, key: &str, ca: Option<&str>| {
            ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), ca.map(str::as_bytes))
                .expect_err("refused")
                .to_string()
        };
        // The key of another certificate.
        let e = refused(&cert, &other_key, None);
        assert!(e.contains("--tls-key is the private key"), "{e}");
        // A key where the certificate should be.
        let e = refused(&key, &key, None);
        assert!(
            e.contains("--tls-cert") && e.contains("no certificate"),
            "{e}"
        );
        // A certificate where the key should be.
        let e = refused(&cert, &other_cert, None);
        assert!(e.contains("--tls-key"), "{e}");
        // A client CA that holds no certificate, or one that does not parse.
        let e = refused(&cert, &key, Some(&key));
        assert!(e.contains("--tls-client-ca"), "{e}");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = refused(&cert, &key, Some(garbage));
        assert!(e.contains("--tls-client-ca"), "{e}");
    }
}
