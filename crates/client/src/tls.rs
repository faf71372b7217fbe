//! HTTPS for the client (the `rustls` feature): rustls on the `ring` provider, trusting the
//! system's certificate store (through `rustls-platform-verifier`) and any private CA the
//! application adds, such as `herald publish --cacert`.
//!
//! Every HTTP client this crate builds goes through [`client_builder`], so that it carries its
//! own TLS configuration: reqwest is built without a crypto provider of its own (the default
//! one is aws-lc-rs, slow to build), and a client built without a configuration would need a
//! process-wide default provider.

use std::sync::Arc;

use reqwest::ClientBuilder;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra CA holds no PEM certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the CA file")]
    NoCertificate,
    /// The system's trust store, or a CA certificate, could not be used.
    #[error("cannot set up certificate verification: {0}")]
    Verifier(#[from] rustls::Error),
}

/// A reqwest client builder whose HTTPS connections trust the system's store and the
/// certificates in `extra_ca_pem` (PEM, one or more), offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn client_builder(extra_ca_pem: Option<&[u8]>) -> Result<ClientBuilder, TlsError> {
    let extra: Vec<CertificateDer<'static>> = match extra_ca_pem {
        Some(pem) => {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(TlsError::NoCertificate);
            }
            certs
        }
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// A builder whose HTTPS connections trust no certificate: what is left when the system's
/// store cannot be read (every HTTPS request then fails, saying the issuer is unknown).
pub(crate) fn untrusting_builder() -> ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config)
}
