//! TLS for the gRPC listener: `serve --tls-cert PEM --tls-key PEM [--tls-client-ca PEM]`.
//!
//! tonic's rustls TLS with the **aws-lc-rs** crypto provider (tonic feature
//! `tls-aws-lc`): the one the KurrentDB client (`kurrentdb` 1.2) already builds tonic
//! with, so the binary carries one TLS stack. Option not taken: `tls-ring`, which would
//! add a second provider to every build for nothing.
//!
//! With a client CA, a client certificate is verified against it but is **optional**:
//! a client that presents one is authenticated by its name (`certificate_name` in the
//! access file), a client that presents none can still send a bearer key. A presented
//! certificate that does not verify fails the handshake. Option not taken: requiring
//! certificates, which would lock out every key-holding partner on a TLS listener; to
//! require them, give callers only `certificate_name`s.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

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
    /// Read the files into tonic's server TLS configuration. Whether the certificate
    /// and key match is checked when the server starts (`ServeError::Tls`).
    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        let cert = read_pem("the TLS certificate (--tls-cert)", &self.cert)?;
        let key = read_pem("the TLS private key (--tls-key)", &self.key)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read_pem("the client CA (--tls-client-ca)", ca)?;
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        Ok(config)
    }
}

/// Make aws-lc-rs the process's rustls provider. Needed because rustls here is built
/// with both providers (the KurrentDB client's HTTP stack enables `ring` too), and
/// tonic's server then cannot pick one by itself (it would panic). A provider
/// installed earlier (by an embedder) is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
