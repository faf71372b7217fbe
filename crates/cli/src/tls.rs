//! `herald serve` over TLS: which certificate source the settings choose (files or ACME),
//! checked before the hub listens, each error naming its flag.

use herald_hub::ConfigError;
use herald_hub::acme::{AcmeSettings, LETS_ENCRYPT};
use herald_hub::tls::{CertificateFiles, Tls};

use crate::settings::Settings;

/// Where the hub's certificate comes from, as the settings say.
#[derive(Debug)]
pub(crate) enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files(CertificateFiles),
    /// `--acme-domain` and the other `--acme-*` settings.
    Acme(AcmeSettings),
}

impl Settings {
    /// The TLS settings, checked together; `None` for plain HTTP.
    pub(crate) fn tls_source(&self) -> Result<Option<TlsSource>, ConfigError> {
        let acme = !self.acme_domains.is_empty();
        let acme_only = [
            ("acme-contact", !self.acme_contacts.is_empty()),
            ("acme-cache", self.acme_cache.is_some()),
            ("acme-directory", self.acme_directory.is_some()),
            ("acme-directory-ca", self.acme_directory_ca.is_some()),
        ];
        if let Some((setting, _)) = acme_only.iter().find(|(_, set)| *set && !acme) {
            return Err(ConfigError::new(
                setting,
                format!("--{setting} is set but no --acme-domain"),
                "give --acme-domain NAME for the certificate, or drop the --acme-* settings",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), _) | (_, Some(_)) if acme => Err(ConfigError::new(
                "acme-domain",
                "--acme-domain and --tls-cert/--tls-key both choose the certificate",
                "keep one: ACME obtains the certificate, or the files provide it",
            )),
            (None, None) if acme => {
                let cache = self.acme_cache.clone().ok_or_else(|| {
                    ConfigError::new(
                        "acme-cache",
                        "--acme-domain needs a cache directory",
                        "give --acme-cache DIR, kept across restarts (CAs rate-limit new \
                         accounts and certificates)",
                    )
                })?;
                Ok(Some(TlsSource::Acme(AcmeSettings {
                    domains: self.acme_domains.clone(),
                    contacts: self.acme_contacts.clone(),
                    cache,
                    directory: self
                        .acme_directory
                        .clone()
                        .unwrap_or_else(|| LETS_ENCRYPT.to_owned()),
                    directory_ca: self.acme_directory_ca.clone(),
                })))
            }
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
            TlsSource::Acme(settings) => Tls::acme(settings),
        }
    }
}
