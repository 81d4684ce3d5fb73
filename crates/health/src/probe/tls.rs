//! TLS trust for HTTPS and gRPC checks, on rustls with the *ring* provider.
//!
//! The provider is passed explicitly everywhere instead of installed as the process default:
//! a library must not race other crates for the global, and depending on the global is what
//! made reqwest's `rustls-no-provider` panic at client build time.
//!
//! Verification uses the system roots plus the configured CA certificates. `TLSSkipVerify`
//! (Consul's, for self-signed health endpoints) skips the certificate chain and name checks but
//! still checks the handshake signatures, as Go's `InsecureSkipVerify` does.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, OnceLock};
use tracing::warn;

/// Our crypto provider: ring (aws-lc-rs is slow to build and not wanted in this workspace).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which certificates checks trust. The verifier is built on first use: loading the system's
/// roots reads files, and an agent without HTTPS checks need not pay for it.
#[derive(Debug)]
pub(crate) struct TlsTrust {
    ca_certificates: Vec<CertificateDer<'static>>,
    verifier: OnceLock<Arc<dyn ServerCertVerifier>>,
}

impl TlsTrust {
    pub(crate) fn new(ca_certificates: &[Vec<u8>]) -> Self {
        Self {
            ca_certificates: ca_certificates
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
            verifier: OnceLock::new(),
        }
    }

    /// The verifier for a check: the real one, or one that accepts any certificate.
    ///
    /// When the roots cannot be loaded (no system CA bundle, a malformed configured CA), the
    /// verifier refuses every certificate with that reason instead: HTTPS checks then fail
    /// saying why, while plain HTTP checks, which share the client, keep working.
    pub(crate) fn verifier(&self, skip_verify: bool) -> Arc<dyn ServerCertVerifier> {
        if skip_verify {
            return Arc::new(FixedVerdict::accept_any());
        }
        Arc::clone(self.verifier.get_or_init(|| {
            match rustls_platform_verifier::Verifier::new_with_extra_roots(
                self.ca_certificates.iter().cloned(),
                provider(),
            ) {
                Ok(verifier) => Arc::new(verifier),
                Err(error) => {
                    let reason = format!("cannot verify TLS certificates: {error}");
                    warn!("{reason}; HTTPS and gRPC TLS checks will fail");
                    Arc::new(FixedVerdict::refuse_all(reason))
                }
            }
        }))
    }

    /// A client configuration for HTTP/1.1 over TLS with the given verification.
    pub(crate) fn http_client_config(&self, skip_verify: bool) -> Result<ClientConfig, String> {
        let verifier = self.verifier(skip_verify);
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A verifier that does not look at the certificate chain or name: it accepts every
/// certificate (`TLSSkipVerify`), or refuses every one with a reason (the trusted roots could
/// not be loaded). Handshake signatures are verified either way.
#[derive(Debug)]
struct FixedVerdict {
    /// `None` accepts; `Some(reason)` refuses with it.
    refusal: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FixedVerdict {
    /// `TLSSkipVerify`: any certificate, any name.
    fn accept_any() -> Self {
        Self {
            refusal: None,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    /// Stands in for the real verifier when the trusted roots could not be loaded: every
    /// certificate is refused, with `reason`.
    fn refuse_all(reason: String) -> Self {
        Self {
            refusal: Some(reason),
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for FixedVerdict {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(reason) => Err(rustls::Error::General(reason.clone())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
