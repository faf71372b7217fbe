//! TLS on the hub's own listener: certificates from PEM files reloaded without a restart, or
//! from ACME (`acme.rs`), and HTTP/2 negotiated by ALPN.
//!
//! How it fits: [`crate::serve_tls`] runs the same accept loop as [`crate::serve`]; each
//! accepted connection does its TLS handshake first, inside the header timeout that bounds a
//! plain connection's first bytes (a client that opens TCP and sends nothing, or half a
//! ClientHello, is closed when it runs out), then goes where its ALPN protocol says: `h2` to
//! hyper's HTTP/2 server, `http/1.1` (or nothing) to the HTTP/1 path, whose subscriptions keep
//! their fast path (`subscription_conn.rs` is generic over the stream), and `acme-tls/1` (a
//! TLS-ALPN-01 validation, answered by the handshake itself) closed at once.
//!
//! rustls on the `ring` provider (aws-lc-rs takes minutes to build). The certificate is picked
//! per handshake by [`CurrentCertificate`], a resolver holding an `Arc` behind a `RwLock`
//! (read once per handshake, written only by a reload): replacing it affects the next
//! handshakes, never an established connection.
//!
//! Reload: [`Tls::from_files`] watches both files (modification time, length and inode,
//! polled every [`RELOAD_POLL`], which also catches a rename over the file as certbot and
//! Kubernetes secrets do) and reloads on SIGHUP. A new pair that does not load (unreadable,
//! not PEM, key not matching the certificate, or caught half written) is logged and the
//! previous certificate kept; the next change tries again.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, crypto::CryptoProvider};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ConfigError;

/// How often the certificate files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The ALPN protocol of HTTP/2 over TLS.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub(crate) const ALPN_ACME: &[u8] = b"acme-tls/1";

/// The crypto provider of every TLS configuration of the hub.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, unless one is set already. The hub names
/// its provider everywhere; this is for the rest of the process: a reqwest built with rustls
/// but no provider (the workspace's, since the CLI speaks HTTPS on ring) needs a process
/// default for every client it builds without a TLS configuration of its own.
pub fn install_default_provider() {
    // An error means a provider is installed already: the application's choice stands.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
}

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not one rustls can sign with, or does not match the certificate.
    #[error("the key in {} cannot serve the certificate in {}: {problem}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        problem: String,
    },
}

impl TlsError {
    /// The setting at fault, as its flag without dashes.
    pub fn setting(&self) -> &'static str {
        match self {
            TlsError::Read { setting, .. } => setting,
            TlsError::NoCertificate { .. } => "tls-cert",
            TlsError::NoKey { .. } | TlsError::Mismatch { .. } => "tls-key",
        }
    }

    /// The error as a bad setting, with the fix.
    pub fn into_config_error(self) -> ConfigError {
        let fix = match &self {
            TlsError::Read { .. } => "check the path and that herald may read it",
            TlsError::NoCertificate { .. } => {
                "give the PEM certificate chain, server certificate first"
            }
            TlsError::NoKey { .. } => "give the PEM private key of the certificate",
            TlsError::Mismatch { .. } => "give the private key that belongs to --tls-cert",
        };
        ConfigError::new(self.setting(), self.to_string(), fix)
    }
}

impl CertificateFiles {
    /// Reads and checks both files.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let read = |setting, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                setting,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read("tls-cert", &self.cert)?;
        let key_pem = read("tls-key", &self.key)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
            path: self.key.clone(),
        })?;
        let certified =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                problem: e.to_string(),
            })?;
        Ok(Arc::new(certified))
    }

    /// What identifies the files' current contents without reading them.
    fn stamp(&self) -> Option<[FileStamp; 2]> {
        Some([FileStamp::of(&self.cert)?, FileStamp::of(&self.key)?])
    }
}

/// A file's modification time, length and inode: a change in any is a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            modified: meta.modified().ok()?,
            len: meta.len(),
            inode,
        })
    }
}

/// The certificate every handshake is served with, replaced whole by a reload or a renewal.
/// `None` until ACME has obtained the first one (handshakes fail until then).
pub(crate) struct CurrentCertificate(RwLock<Option<Arc<CertifiedKey>>>);

impl CurrentCertificate {
    pub(crate) fn new(certified: Option<Arc<CertifiedKey>>) -> Arc<CurrentCertificate> {
        Arc::new(CurrentCertificate(RwLock::new(certified)))
    }

    /// Serves `certified` from the next handshake on. The value is replaced whole, so a
    /// poisoned lock holds a valid one: used as is.
    pub(crate) fn replace(&self, certified: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(certified);
    }

    pub(crate) fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCertificate").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

/// A background job that keeps the certificate current (file watching, ACME renewal).
pub(crate) type Maintenance = Pin<Box<dyn Future<Output = ()> + Send>>;

/// TLS for [`crate::serve_tls`]: what each handshake is served with, and the job that keeps the
/// certificate current (run by the server while it serves).
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) maintenance: Option<Maintenance>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the certificate and key of `files`, checked now (an error names the setting
    /// at fault), and reloaded when the files change or on SIGHUP.
    ///
    /// Must be called inside a tokio runtime: SIGHUP is caught from this call on (its default
    /// action would end the process).
    pub fn from_files(files: CertificateFiles) -> Result<Tls, TlsError> {
        let current = CurrentCertificate::new(Some(files.load()?));
        let acceptor = TlsAcceptor::new(Arc::clone(&current), None);
        let reload = reload_on_change(files, current);
        Ok(Tls {
            acceptor,
            maintenance: Some(Box::pin(reload)),
        })
    }
}

/// The server's TLS configuration and, with ACME, the one that answers TLS-ALPN-01 challenges.
pub(crate) struct TlsAcceptor {
    config: Arc<ServerConfig>,
    challenge: Option<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    pub(crate) fn new(
        certificate: Arc<CurrentCertificate>,
        challenge: Option<Arc<ServerConfig>>,
    ) -> TlsAcceptor {
        let mut config = server_config(certificate);
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        TlsAcceptor {
            config: Arc::new(config),
            challenge,
        }
    }

    /// The TLS handshake on an accepted connection. The caller bounds how long it may take.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let config = match &self.challenge {
            Some(challenge)
                if start
                    .client_hello()
                    .alpn()
                    .is_some_and(|mut protocols| protocols.any(|p| p == ALPN_ACME)) =>
            {
                Arc::clone(challenge)
            }
            _ => Arc::clone(&self.config),
        };
        start.into_stream(config).await
    }
}

/// A server configuration on the hub's provider, with the safe default protocol versions (TLS
/// 1.2 and 1.3), no client certificates, and `resolver` choosing the certificate.
pub(crate) fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver)
}

/// Reloads `files` into `current` whenever they change, and on SIGHUP; keeps the certificate
/// in place when the new one does not load.
fn reload_on_change(
    files: CertificateFiles,
    current: Arc<CurrentCertificate>,
) -> impl Future<Output = ()> + Send {
    let mut hangups = hangup_signal();
    let mut seen = files.stamp();
    async move {
        let mut poll = tokio::time::interval(RELOAD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = poll.tick() => false,
                () = next_hangup(&mut hangups) => true,
            };
            let stamp = files.stamp();
            if !forced && stamp == seen {
                continue;
            }
            seen = stamp;
            let cause = if forced { "SIGHUP" } else { "files changed" };
            match files.load() {
                Ok(certified) => {
                    current.replace(certified);
                    tracing::info!(
                        cert = %files.cert.display(),
                        "TLS certificate reloaded ({cause})"
                    );
                }
                Err(e) => tracing::warn!(
                    "TLS certificate not reloaded ({cause}): {e}; still serving the previous one"
                ),
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// Catches SIGHUP from now on (`None` if it cannot be: reloads then come from file changes).
fn hangup_signal() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("cannot catch SIGHUP ({e}): certificates reload on change only");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {}
}

async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups
        && signal.recv().await.is_some()
    {
        tracing::info!("received SIGHUP");
        return;
    }
    #[cfg(not(unix))]
    let _ = hangups;
    std::future::pending().await
}
