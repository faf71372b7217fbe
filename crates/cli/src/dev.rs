//! `--dev`: the first five minutes of a new user.
//!
//! Turns on anonymous subscribers, any CORS origin and the web UI, generates a key unless one is
//! given (warning loudly about the tutorials' well-known key), and prints the UI's address,
//! ready-to-use tokens and copy-paste `curl` commands once the hub listens.

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
}

/// Applies dev-mode defaults to `settings`.
pub(crate) fn prepare(settings: &mut Settings) -> DevSession {
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
    if !given {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
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
    DevSession {
        key: hmac.then(|| settings.jwt_key.clone()).flatten(),
    }
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
        println!(
            "\n\
Herald is running in development mode (anonymous subscribers, any CORS origin).

Hub:              {hub_url}
Web UI:           {ui}  (open it in a browser: subscribe, publish, see events arrive)
Publisher token:  {publisher}
Subscriber token: {subscriber}
(both valid 24 h; they allow every topic)

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
