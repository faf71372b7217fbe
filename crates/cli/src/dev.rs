//! `--dev`: the first five minutes of a new user.
//!
//! Turns on anonymous subscribers, any CORS origin and the web UI, generates a key unless one is
//! given (warning loudly about the tutorials' well-known key), and prints the UI's address,
//! ready-to-use tokens and copy-paste `curl` commands once the hub listens.
//!
//! The generated key is kept in the data directory (`herald-data/dev-key`, readable by its owner
//! only) and read back on the next start, so that tokens minted or copied before a restart keep
//! working, as the history does. With `--transport memory` (nothing on disk) or a Redis
//! transport it lives in memory only, and the banner prints it.

use std::path::{Path, PathBuf};

use herald_hub::ConfigError;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use serde_json::json;

use crate::settings::Settings;

/// The key every Mercure tutorial uses. Fine on a laptop, a disaster anywhere else.
const TUTORIAL_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";

/// What the banner needs once the hub listens.
pub(crate) struct DevSession {
    /// The HMAC key, when the dev session can mint tokens with it (it chose it or was given an
    /// HS256 secret).
    key: Option<String>,
    /// Where the generated key is kept, if it was generated and is kept on disk.
    key_file: Option<PathBuf>,
    /// Whether the key was generated (rather than given).
    generated: bool,
}

/// The name of the generated key's file in the data directory.
pub(crate) const KEY_FILE: &str = "dev-key";

/// Applies dev-mode defaults to `settings`.
pub(crate) fn prepare(settings: &mut Settings) -> Result<DevSession, ConfigError> {
    settings.anonymous = true;
    settings.ui = true;
    if settings.cors_origins.is_empty() {
        settings.cors_origins = vec!["*".into()];
    }
    let given = settings.jwt_key.is_some()
        || settings.publisher_jwt_key.is_some()
        || settings.subscriber_jwt_key.is_some()
        || settings.jwks.is_some()
        || settings.publisher_jwks.is_some()
        || settings.subscriber_jwks.is_some();
    let mut key_file = None;
    if !given {
        let on_disk = matches!(settings.transport.as_deref(), None | Some("embedded"));
        let key = if on_disk {
            let dir = settings
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("herald-data"));
            let path = dir.join(KEY_FILE);
            let key = kept_key(&path)?;
            key_file = Some(path);
            key
        } else {
            generate_key()
        };
        settings.jwt_key = Some(key);
    }
    if [
        &settings.jwt_key,
        &settings.publisher_jwt_key,
        &settings.subscriber_jwt_key,
    ]
    .iter()
    .any(|k| k.as_deref() == Some(TUTORIAL_KEY))
    {
        tracing::warn!(
            "!!! the JWT key is the well-known tutorial key {TUTORIAL_KEY:?}: anyone can mint \
             tokens for this hub. Never use it outside your own machine. !!!"
        );
    }
    let hmac = settings
        .jwt_alg
        .as_deref()
        .is_none_or(|alg| alg.eq_ignore_ascii_case("HS256"))
        && settings.publisher_jwt_key.is_none()
        && settings.subscriber_jwt_key.is_none();
    Ok(DevSession {
        key: hmac.then(|| settings.jwt_key.clone()).flatten(),
        key_file,
        generated: !given,
    })
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key in `path`, or a new one written there (mode 0600) if the file does not exist yet.
fn kept_key(path: &Path) -> Result<String, ConfigError> {
    let cannot = |what: &str, e: std::io::Error| {
        ConfigError::new(
            "data-dir",
            format!("cannot {what} the development key {}: {e}", path.display()),
            "make the data directory writable, choose another with --data-dir, or run with \
             --transport memory",
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cannot("read", e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| cannot("create the directory of", e))?;
    }
    let key = generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| cannot("write", e))?;
    std::io::Write::write_all(&mut file, key.as_bytes()).map_err(|e| cannot("write", e))?;
    Ok(key)
}

impl DevSession {
    /// Prints tokens and examples to stdout.
    pub(crate) fn print_banner(&self, hub_url: &str) {
        let ui = format!("{hub_url}/ui/");
        let Some(key) = &self.key else {
            println!(
                "Development mode: anonymous subscribers on. Mint tokens with your own key \
                 (its algorithm is not HS256, so no token is printed).\nWeb UI: {ui}"
            );
            return;
        };
        let publisher = mint(key, json!({"publish": ["*"]}));
        let subscriber = mint(key, json!({"subscribe": ["*"]}));
        let key_line = match (&self.key_file, self.generated) {
            (Some(path), _) => format!(
                "Key:              {path} (kept across restarts: tokens stay valid)\n\
                 Mint more tokens: herald token --jwt-key \"$(cat {path})\" --publish '*'\n\
                 \x20                 (no herald on your PATH? cargo install --path crates/cli)",
                path = path.display()
            ),
            (None, true) => format!(
                "Key:              {key} (in memory only: tokens end with this process)\n\
                 Mint more tokens: herald token --jwt-key {key} --publish '*'"
            ),
            (None, false) => "Key:              the one you gave".to_owned(),
        };
        println!(
            "\n\
Herald is running in development mode (anonymous subscribers, any CORS origin).

Hub:              {hub_url}
Web UI:           {ui}  (open it in a browser: subscribe, publish, see events arrive)
Publisher token:  {publisher}
Subscriber token: {subscriber}
(both valid 24 h; they allow every topic)
{key_line}

Subscribe (leave this running):
  curl -N -g '{hub_url}?topic=https://example.com/books/{{id}}'

Publish (in another terminal):
  curl -d 'topic=https://example.com/books/1' -d 'data={{\"title\":\"Dune\"}}' \\
    -H 'Authorization: Bearer {publisher}' {hub_url}

Private updates need the subscriber token:
  curl -N -H 'Authorization: Bearer {subscriber}' '{hub_url}?topic=*'
"
        );
    }
}

fn mint(key: &str, mercure: serde_json::Value) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
    jsonwebtoken::encode(
        &Header::default(),
        &json!({"mercure": mercure, "exp": exp}),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("HS256 signing with a secret cannot fail")
}
