//! TLS for the agent's listeners — the HTTP API and the gateway — on rustls with the *ring*
//! provider (passed explicitly, never installed as the process default).
//!
//! Certificates and keys are PEM files, read once at start. With a client CA the API asks
//! every client for a certificate signed by it and refuses the handshake without one (mutual
//! TLS, Consul's `verify_incoming`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to finish the TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files one TLS listener is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates, PEM, that client certificates must chain to; `None` asks for none.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS listener could not be set up. The agent does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("TLS {what} {path}: {reason}")]
    File {
        /// Which file it is (certificate, key, client CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS setup refused: {0}; check that the key belongs to the certificate")]
    Config(String),
}

impl TlsFiles {
    /// The acceptor for these files, offering `alpn` (e.g. `h2`, `http/1.1`) in that order.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        let certs = certificates(&self.cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::File {
            what: "key",
            path: self.key.clone(),
            reason: format!("no private key read ({e}); give a PEM private key file"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(path, "client CA")? {
                    roots.add(cert).map_err(|e| TlsError::File {
                        what: "client CA",
                        path: path.clone(),
                        reason: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// How the gateway verifies instances on `proto=https` routes: the system's trust roots plus
/// the CA certificates in `extra_ca` (PEM). `None` when no root at all can
/// be loaded (no system bundle and no `extra_ca`): such routes are then refused, never sent in
/// plain text.
pub fn upstream_client_config(
    extra_ca: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let extra = match extra_ca {
        Some(path) => certificates(path, "upstream CA")?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.iter().cloned(),
            Arc::clone(&provider),
        ) {
            Ok(verifier) => Arc::new(verifier),
            Err(error) if !extra.is_empty() => {
                tracing::warn!(%error, "gateway: the system's trust roots cannot be loaded; trusting --gateway-upstream-ca only");
                let mut roots = rustls::RootCertStore::empty();
                for cert in extra {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?
            }
            Err(error) => {
                tracing::warn!(%error, "gateway: no trust roots for instances; proto=https routes will be refused (pass --gateway-upstream-ca)");
                return Ok(None);
            }
        };
    // No ALPN here: the gateway's HTTPS connector sets it (and refuses a preset one).
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read it ({e}); check the path")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no CERTIFICATE block; give a PEM certificate file".to_owned(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_say_which_file_and_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let files = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: empty.clone(),
            client_ca: None,
        };
        let Err(error) = files.acceptor(&[]) else {
            panic!("an absent certificate file was accepted");
        };
        let error = error.to_string();
        assert!(
            error.contains("certificate") && error.contains("absent.pem"),
            "{error}"
        );
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty,
            client_ca: None,
        };
        let Err(error) = files.acceptor(&[]) else {
            panic!("an empty certificate file was accepted");
        };
        let error = error.to_string();
        assert!(error.contains("no CERTIFICATE"), "{error}");
    }
}
