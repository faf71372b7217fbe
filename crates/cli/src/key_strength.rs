//! Refusing HMAC keys anyone could guess, outside `--dev`.
//!
//! An HS256 key is the whole security of a hub: whoever knows it mints publisher tokens. Keys
//! copied from tutorials (`!ChangeThisMercureHubJWTSecretKey!` is in every Mercure guide) and
//! short keys (which can be brute-forced offline from one captured token) are refused at start,
//! with how to generate a good one. `--dev` (a laptop) accepts them, and `--allow-weak-key` is
//! the explicit way to accept them anywhere else.

use herald_hub::{ConfigError, HubConfig, JwtKey};
use herald_protocol::Algorithm;

use crate::settings::Settings;

/// The fewest bytes of an HMAC key: the output size of SHA-256, as RFC 7518 section 3.2 asks.
pub(crate) const MIN_HMAC_KEY_BYTES: usize = 32;

/// Keys that tutorials, examples and defaults print: a hub using one is open to anyone.
pub(crate) const WELL_KNOWN_KEYS: &[&str] = &[
    "!ChangeThisMercureHubJWTSecretKey!",
    "!ChangeMe!",
    "ChangeMe",
    "changeme",
    "abc",
    "secret",
    "mercure",
    "password",
    "your-256-bit-secret",
    "your-secret-key",
    "your_jwt_secret",
];

/// The fix every refusal gives.
const FIX: &str = "generate a key with `openssl rand -base64 32` and give it to the same setting \
                   (or pass --allow-weak-key to start anyway, or use --dev on your own machine)";

/// Refuses a weak HMAC key of either role, naming the setting the user wrote.
pub(crate) fn check(settings: &Settings, config: &HubConfig) -> Result<(), ConfigError> {
    if settings.dev || settings.allow_weak_key {
        return Ok(());
    }
    let roles = [
        (
            &config.publisher_key,
            settings.publisher_jwt_key.is_some(),
            "publisher-jwt-key",
        ),
        (
            &config.subscriber_key,
            settings.subscriber_jwt_key.is_some(),
            "subscriber-jwt-key",
        ),
    ];
    for (key, own, own_setting) in roles {
        let Some(key) = key else { continue };
        if let Some(problem) = weakness(key) {
            let setting = if own { own_setting } else { "jwt-key" };
            return Err(ConfigError::new(setting, problem, FIX));
        }
    }
    Ok(())
}

/// Why `key` is weak, if it is an HMAC key that is.
pub(crate) fn weakness(key: &JwtKey) -> Option<String> {
    if !matches!(
        key.algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return None;
    }
    let text = String::from_utf8_lossy(&key.key);
    let trimmed = text.trim();
    if let Some(known) = WELL_KNOWN_KEYS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(trimmed))
    {
        return Some(format!(
            "the key is {known:?}, a well-known key from tutorials: anyone can mint tokens for \
             this hub"
        ));
    }
    (key.key.len() < MIN_HMAC_KEY_BYTES).then(|| {
        format!(
            "the HMAC key is {} bytes long, shorter than the {MIN_HMAC_KEY_BYTES} bytes needed \
             to resist guessing",
            key.key.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(key: &str) -> JwtKey {
        JwtKey {
            algorithm: Algorithm::HS256,
            key: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn short_and_well_known_keys_are_weak() {
        assert!(weakness(&hs256("abc")).unwrap().contains("well-known"));
        assert!(
            weakness(&hs256("!ChangeThisMercureHubJWTSecretKey!"))
                .unwrap()
                .contains("well-known")
        );
        assert!(weakness(&hs256("0123456789")).unwrap().contains("10 bytes"));
        assert_eq!(weakness(&hs256("0123456789abcdef0123456789abcdef")), None);
        let pem = JwtKey {
            algorithm: Algorithm::RS256,
            key: b"short".to_vec(),
        };
        assert_eq!(weakness(&pem), None, "only HMAC keys are secrets");
    }

    #[test]
    fn the_refusal_names_the_setting_written_and_dev_or_the_flag_lifts_it() {
        let settings = Settings {
            publisher_jwt_key: Some("abc".into()),
            jwt_key: Some("0123456789abcdef0123456789abcdef".into()),
            ..Settings::default()
        };
        let config = settings.hub_config().unwrap();
        let e = check(&settings, &config).unwrap_err();
        assert_eq!(e.setting, "publisher-jwt-key");
        assert!(e.fix.contains("openssl rand -base64 32"), "{e}");
        let shared = Settings {
            jwt_key: Some("secret".into()),
            ..Settings::default()
        };
        let config = shared.hub_config().unwrap();
        assert_eq!(check(&shared, &config).unwrap_err().setting, "jwt-key");
        for lifted in [
            Settings {
                dev: true,
                ..Settings::default()
            },
            Settings {
                allow_weak_key: true,
                ..Settings::default()
            },
        ] {
            assert!(check(&lifted, &config).is_ok());
        }
    }
}
