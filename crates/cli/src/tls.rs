//! `herald serve` over TLS: which certificate source the settings choose (files or ACME),
//! checked before the hub listens, each error naming its flag.

use herald_hub::ConfigError;
use herald_hub::tls::{CertificateFiles, Tls};

use crate::settings::Settings;

/// Where the hub's certificate comes from, as the settings say.
#[derive(Debug)]
pub(crate) enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files(CertificateFiles),
}

impl Settings {
    /// The TLS settings, checked together; `None` for plain HTTP.
    pub(crate) fn tls_source(&self) -> Result<Option<TlsSource>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsSource::Files(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            }))),
            (Some(_), None) => Err(ConfigError::new(
                "tls-key",
                "--tls-cert is set but not --tls-key",
                "give the certificate's private key with --tls-key FILE",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "tls-cert",
                "--tls-key is set but not --tls-cert",
                "give the certificate chain with --tls-cert FILE",
            )),
        }
    }
}

impl TlsSource {
    /// Loads the certificate (or prepares ACME) and starts catching SIGHUP. Inside the runtime.
    pub(crate) fn start(self) -> Result<Tls, ConfigError> {
        match self {
            TlsSource::Files(files) => Tls::from_files(files).map_err(|e| e.into_config_error()),
        }
    }
}
