//! Certificates from an ACME certificate authority (Let's Encrypt, or any RFC 8555 server),
//! obtained and renewed while the hub serves, validated by TLS-ALPN-01 on the hub's own port.
//!
//! How it fits: [`Tls::acme`] builds the same [`TlsAcceptor`] as certificate files do, with a
//! second server configuration for validation handshakes: a ClientHello offering ALPN
//! `acme-tls/1` is answered with the challenge certificate of its server name (RFC 8737), and
//! every other handshake with the current certificate (none before the first order completes:
//! those handshakes fail until then). The hub must therefore be reachable on port 443 of every
//! `--acme-domain` (the CA connects there), directly or through a TCP (not TLS-terminating)
//! forwarder.
//!
//! The upkeep job ([`Tls`]'s maintenance, run by the server) loads the cached certificate when
//! there is one, and orders a new one when there is none, when it is for other domains, or once
//! two thirds of its lifetime have passed; a failed order is retried with backoff (from 10 s to
//! an hour), while the current certificate keeps serving. The cache directory keeps the account
//! (so that restarts do not create accounts, which CAs rate-limit) and the certificate with its
//! key, per ACME directory. The ACME client is instant-acme on ring; the CSR's key and the
//! challenge certificates come from rcgen (ECDSA P-256).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::ConfigError;
use crate::tls::{ALPN_ACME, CurrentCertificate, Tls, TlsAcceptor, provider, server_config};

/// Let's Encrypt's production directory, the default of `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What `--acme-*` configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate covers (`--acme-domain`, repeatable).
    pub domains: Vec<String>,
    /// Contact URLs for the account (`--acme-contact mailto:...`).
    pub contacts: Vec<String>,
    /// Where the account and certificates are kept (`--acme-cache`).
    pub cache: PathBuf,
    /// The ACME directory URL (`--acme-directory`).
    pub directory: String,
    /// A CA certificate (PEM) to trust for the directory's own HTTPS, for test CAs such as
    /// pebble (`--acme-directory-ca`); the system's store otherwise.
    pub directory_ca: Option<PathBuf>,
}

impl AcmeSettings {
    /// Checks the settings and prepares the cache directory; errors name the flag.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(ConfigError::new(
                "acme-domain",
                "no domain to ask a certificate for",
                "give --acme-domain NAME (repeatable) for each name the hub serves",
            ));
        }
        if let Some(bad) = self
            .domains
            .iter()
            .find(|d| d.is_empty() || d.contains(['/', ':', ' ', '*']))
        {
            return Err(ConfigError::new(
                "acme-domain",
                format!("{bad:?} is not a domain name"),
                "give a bare DNS name such as hub.example.com (no scheme, port or wildcard)",
            ));
        }
        if let Some(bad) = self.contacts.iter().find(|c| !c.starts_with("mailto:")) {
            return Err(ConfigError::new(
                "acme-contact",
                format!("{bad:?} is not a mailto: URL"),
                "write it as mailto:you@example.com",
            ));
        }
        if !self.directory.starts_with("https://") {
            return Err(ConfigError::new(
                "acme-directory",
                format!("{:?} is not an https:// URL", self.directory),
                format!("give the CA's directory URL, such as {LETS_ENCRYPT}"),
            ));
        }
        if let Some(ca) = &self.directory_ca {
            let pem = std::fs::read(ca).map_err(|e| {
                ConfigError::new(
                    "acme-directory-ca",
                    format!("cannot read {}: {e}", ca.display()),
                    "check the path and that herald may read it",
                )
            })?;
            if CertificateDer::from_pem_slice(&pem).is_err() {
                return Err(ConfigError::new(
                    "acme-directory-ca",
                    format!("{} holds no PEM certificate", ca.display()),
                    "give the CA certificate that signed the directory's HTTPS certificate",
                ));
            }
        }
        std::fs::create_dir_all(self.store_dir()).map_err(|e| {
            ConfigError::new(
                "acme-cache",
                format!("cannot create {}: {e}", self.cache.display()),
                "give a directory herald may write to, kept across restarts",
            )
        })
    }

    /// The cache's directory for this ACME directory: accounts and certificates of different
    /// CAs (staging, production, a test CA) never mix.
    fn store_dir(&self) -> PathBuf {
        let name: String = self
            .directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.cache.join(name)
    }

    fn account_file(&self) -> PathBuf {
        self.store_dir().join("account.json")
    }

    /// The certificate and key files of this set of domains.
    fn certificate_files(&self) -> (PathBuf, PathBuf) {
        let mut domains = self.domains.clone();
        domains.sort();
        domains.dedup();
        let stem = domains.join(",");
        let dir = self.store_dir();
        (
            dir.join(format!("{stem}.cert.pem")),
            dir.join(format!("{stem}.key.pem")),
        )
    }
}

/// The challenge certificates of the validations in progress, by domain.
#[derive(Default)]
struct Challenges(Mutex<HashMap<String, Arc<CertifiedKey>>>);

impl Challenges {
    /// The map holds complete values only, so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Challenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Challenges {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.lock().get(name).cloned()
    }
}

impl Tls {
    /// TLS with certificates from ACME: the cached one at once if there is one, then whatever
    /// the upkeep job obtains. Checks the settings (errors name the flag); the CA is first
    /// contacted by the job, once the hub serves (the CA validates through it).
    pub fn acme(settings: AcmeSettings) -> Result<Tls, ConfigError> {
        settings.validate()?;
        let cached = load_cached(&settings);
        let current = CurrentCertificate::new(cached.as_ref().map(|c| Arc::clone(&c.certified)));
        let challenges = Arc::new(Challenges::default());
        let mut challenge_config = server_config(Arc::clone(&challenges) as _);
        challenge_config.alpn_protocols = vec![ALPN_ACME.to_vec()];
        let acceptor = TlsAcceptor::new(Arc::clone(&current), Some(Arc::new(challenge_config)));
        let upkeep = keep_current(settings, cached, current, challenges);
        Ok(Tls {
            acceptor,
            maintenance: Some(Box::pin(upkeep)),
        })
    }
}

/// A certificate in use and when it should be renewed.
struct Issued {
    certified: Arc<CertifiedKey>,
    renew_at: SystemTime,
}

/// The cached certificate for these domains, if it loads and is not expired.
fn load_cached(settings: &AcmeSettings) -> Option<Issued> {
    let (cert, key) = settings.certificate_files();
    let (cert, key) = (std::fs::read(cert).ok()?, std::fs::read(key).ok()?);
    match issued(&cert, &key) {
        Ok(issued) if issued.renew_at > SystemTime::now() => Some(issued),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("ACME: the cached certificate does not load ({e}); ordering a new one");
            None
        }
    }
}

/// A PEM chain and key, checked, with their renewal time.
fn issued(chain_pem: &[u8], key_pem: &[u8]) -> Result<Issued, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .filter_map(Result::ok)
        .collect();
    let first = chain.first().ok_or("no certificate in the chain")?;
    let (not_before, not_after) = validity(first).ok_or("unreadable validity dates")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| e.to_string())?;
    // Renew when a third of the lifetime is left (30 days of Let's Encrypt's 90).
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    Ok(Issued {
        certified: Arc::new(certified),
        renew_at: not_before + lifetime * 2 / 3,
    })
}

/// Keeps `current` valid: loads, orders and renews, forever (until the server drops the job).
async fn keep_current(
    settings: AcmeSettings,
    mut issued: Option<Issued>,
    current: Arc<CurrentCertificate>,
    challenges: Arc<Challenges>,
) {
    const FIRST_RETRY: Duration = Duration::from_secs(10);
    const LAST_RETRY: Duration = Duration::from_secs(3600);
    let mut retry = FIRST_RETRY;
    loop {
        if let Some(valid) = &issued {
            let wait = valid
                .renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if !wait.is_zero() {
                tracing::info!(
                    domains = ?settings.domains,
                    "ACME: certificate valid; renewal in {}",
                    humanize(wait)
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        match order(&settings, &challenges).await {
            Ok(new) => {
                current.replace(Arc::clone(&new.certified));
                tracing::info!(domains = ?settings.domains, "ACME: certificate obtained and in use");
                issued = Some(new);
                retry = FIRST_RETRY;
            }
            Err(e) => {
                tracing::warn!(
                    domains = ?settings.domains,
                    "ACME: could not obtain a certificate: {e}; retrying in {}",
                    humanize(retry)
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
        challenges.lock().clear();
    }
}

/// One order: the account (cached or created), TLS-ALPN-01 for every name, the certificate,
/// written to the cache before it is used.
async fn order(settings: &AcmeSettings, challenges: &Challenges) -> Result<Issued, String> {
    let account = account(settings).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => return Err(format!("authorization is {status:?}")),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or("the CA offers no tls-alpn-01 challenge")?;
        let domain = challenge.identifier().to_string();
        let certified = challenge_certificate(&domain, challenge.key_authorization().digest())?;
        challenges.lock().insert(domain.clone(), certified);
        tracing::debug!(domain, "ACME: answering tls-alpn-01");
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge for {domain}: {e}"))?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .timeout(Duration::from_secs(90));
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("the order is {status:?} after validation"));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    let new = issued(chain_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| format!("the CA's certificate does not load: {e}"))?;
    let (cert_file, key_file) = settings.certificate_files();
    write_private(&key_file, key_pem.as_bytes())?;
    write_private(&cert_file, chain_pem.as_bytes())?;
    Ok(new)
}

/// The ACME account: from the cache, or created (and cached).
async fn account(settings: &AcmeSettings) -> Result<Account, String> {
    let builder = || match &settings.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let builder = builder().map_err(|e| format!("ACME client: {e}"))?;
    let file = settings.account_file();
    if let Ok(json) = std::fs::read(&file) {
        match serde_json::from_slice::<AccountCredentials>(&json) {
            Ok(credentials) => {
                return builder
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("cached account: {e}"));
            }
            Err(e) => tracing::warn!(
                "ACME: {} is not an account ({e}); creating one",
                file.display()
            ),
        }
    }
    let contacts: Vec<&str> = settings.contacts.iter().map(String::as_str).collect();
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account: {e}"))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    write_private(&file, &json)?;
    tracing::info!(directory = %settings.directory, "ACME: account created");
    Ok(account)
}

/// The self-signed certificate of a TLS-ALPN-01 validation (RFC 8737, section 3): the domain,
/// and the key authorization's digest in the critical acmeIdentifier extension.
fn challenge_certificate(
    domain: &str,
    digest: impl AsRef<[u8]>,
) -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .map_err(|e| format!("challenge certificate: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("challenge key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("challenge certificate: {e}"))?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its check that the key matches parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension. The pair is ours anyway.
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("challenge key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

/// Writes a file readable by its owner only (keys and account credentials), atomically.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let staged = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&staged)?, contents)?;
        std::fs::rename(&staged, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A duration as days, hours, minutes or seconds, whichever is most readable.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}min", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// The notBefore and notAfter of an X.509 certificate, read from its DER: Certificate ->
/// tbsCertificate -> (optional [0] version, serialNumber, signature, issuer) -> validity.
fn validity(cert: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, mut tbs, _) = der_element(certificate)?;
    let (tag, _, _) = der_element(tbs)?;
    if tag == 0xA0 {
        tbs = der_element(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = der_element(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der_element(tbs)?;
    let (tag_before, before, rest) = der_element(validity)?;
    let (tag_after, after, _) = der_element(rest)?;
    Some((der_time(tag_before, before)?, der_time(tag_after, after)?))
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        rest = &rest[count..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: u64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| rest[i..i + 2].parse::<u64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let seconds = field(4)? * 3600 + field(6)? * 60 + field(8)?;
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + seconds))
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm), for years >= 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_read_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (before, after) = validity(cert.der()).unwrap();
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // `date -u -d 2026-01-02 +%s`, `date -u -d 2051-03-04 +%s`
        assert_eq!(secs(before), 1_767_312_000);
        assert_eq!(secs(after), 2_561_500_800);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let good = AcmeSettings {
            domains: vec!["hub.example.com".into()],
            contacts: vec!["mailto:ops@example.com".into()],
            cache: dir.path().to_owned(),
            directory: LETS_ENCRYPT.into(),
            directory_ca: None,
        };
        assert_eq!(good.validate(), Ok(()));
        let setting = |change: fn(&mut AcmeSettings)| {
            let mut settings = good.clone();
            change(&mut settings);
            settings.validate().unwrap_err().setting
        };
        assert_eq!(setting(|s| s.domains.clear()), "acme-domain");
        assert_eq!(
            setting(|s| s.domains = vec!["https://x".into()]),
            "acme-domain"
        );
        assert_eq!(
            setting(|s| s.contacts = vec!["ops@example.com".into()]),
            "acme-contact"
        );
        assert_eq!(
            setting(|s| s.directory = "http://ca/dir".into()),
            "acme-directory"
        );
        assert_eq!(
            setting(|s| s.directory_ca = Some("/nonexistent.pem".into())),
            "acme-directory-ca"
        );
        assert_eq!(
            setting(|s| s.cache = "/proc/herald-acme".into()),
            "acme-cache"
        );
    }
}
