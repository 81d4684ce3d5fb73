//! TLS to an `https://` agent: ring as the crypto provider and the platform's trust roots, set
//! explicitly because the workspace builds reqwest without a default provider. Shared with the
//! agent's `--upstream-consul` mirror.

use std::sync::Arc;

/// Why a TLS configuration could not be built (no usable trust roots, or no protocol version
/// both rustls and ring support).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct TlsError(String);

/// A client configuration that verifies servers against the platform's roots.
pub fn platform_config() -> Result<rustls::ClientConfig, TlsError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth())
}
