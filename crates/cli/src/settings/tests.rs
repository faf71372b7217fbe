//! Unit tests of [`super`]: each source of a setting, their precedence, and errors that name
//! the setting.

use herald_hub::config::Timeouts;
use herald_hub::{JwksSource, Storage};

use super::*;

#[test]
fn bad_duration_names_the_setting() {
    let settings = Settings {
        jwt_key: Some("k".into()),
        heartbeat: Some("5 fortnights please".into()),
        ..Settings::default()
    };
    let e = settings.hub_config().unwrap_err();
    assert_eq!(e.setting, "heartbeat");
}

#[test]
fn a_bad_file_names_its_line_column_and_key() {
    let dir = std::env::temp_dir().join(format!("herald-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("herald.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n\nheartbeat = 5\n").unwrap();
    let e = Settings::from_file(&path).unwrap_err();
    let line = e.to_string();
    assert!(line.contains("herald.toml:3:13, key heartbeat"), "{line}");
    std::fs::write(&path, "listen = \"x\"\nhartbeat = \"5s\"\n").unwrap();
    let line = Settings::from_file(&path).unwrap_err().to_string();
    assert!(
        line.contains(":2:1, key hartbeat") && line.contains("unknown field"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_disables_durations() {
    let settings = Settings {
        heartbeat: Some("0s".into()),
        ..Settings::default()
    };
    assert_eq!(settings.hub_config().unwrap().heartbeat, None);
}

#[test]
fn flags_win_over_the_file() {
    let flags = Settings {
        listen: Some("127.0.0.1:1".into()),
        ..Settings::default()
    };
    let file: Settings = toml::from_str(
        "listen = \"127.0.0.1:2\"\ncookie-name = \"c\"\ncors-origin = [\"http://a\"]",
    )
    .unwrap();
    let merged = flags.or(file);
    assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(merged.cookie_name.as_deref(), Some("c"));
    assert_eq!(merged.cors_origins, ["http://a"]);
}

#[test]
fn v2_issuers_apply_to_both_roles_unless_a_role_has_its_own() {
    let file: Settings = toml::from_str(
        "hub-url = \"https://hub.example/.well-known/mercure\"\nprotocols = \"1.0\"\n\
         issuer = [\"https://app.example\"]\nsubscriber-issuer = [\"https://idp.example\"]",
    )
    .unwrap();
    let config = Settings::default().or(file).hub_config().unwrap();
    assert_eq!(config.publisher_issuers, ["https://app.example"]);
    assert_eq!(config.subscriber_issuers, ["https://idp.example"]);
    assert!(config.protocols.v1 && !config.protocols.draft07);
    let bad = Settings {
        protocols: Some("draft-06".into()),
        ..Settings::default()
    };
    assert_eq!(bad.hub_config().unwrap_err().setting, "protocols");
    for hub_url in ["not a url", "/.well-known/mercure", "ftp://hub.example/"] {
        let relative = Settings {
            jwt_key: Some("k".into()),
            hub_url: Some(hub_url.into()),
            ..Settings::default()
        };
        let e = relative.hub_config().unwrap().validate().unwrap_err();
        assert_eq!(e.setting, "hub-url", "{hub_url}");
    }
}

#[test]
fn jwks_is_a_flag_and_a_file_key() {
    let file: Settings =
        toml::from_str("jwks = \"https://idp.example.com/jwks.json\"\npublisher-jwt-key = \"k\"")
            .unwrap();
    let config = Settings::default().or(file).hub_config().unwrap();
    assert_eq!(
        config.subscriber_jwks,
        Some(JwksSource::Url("https://idp.example.com/jwks.json".into()))
    );
    assert_eq!(config.publisher_jwks, None);
    assert!(config.publisher_key.is_some());
}

#[test]
fn a_bad_shared_jwks_is_reported_as_jwks() {
    let settings = Settings {
        jwks: Some("/nonexistent".into()),
        ..Settings::default()
    };
    let e = ConfigError::new("subscriber-jwks", "cannot read", "fix it");
    assert_eq!(settings.name_jwks_setting(e).setting, "jwks");
    let settings = Settings {
        subscriber_jwks: Some("/nonexistent".into()),
        ..settings
    };
    let e = ConfigError::new("subscriber-jwks", "cannot read", "fix it");
    assert_eq!(settings.name_jwks_setting(e).setting, "subscriber-jwks");
}

#[test]
fn a_key_and_a_jwks_for_one_role_are_refused() {
    let shared = Settings {
        jwt_key: Some("k".into()),
        jwks: Some("/etc/jwks.json".into()),
        ..Settings::default()
    };
    assert_eq!(shared.hub_config().unwrap_err().setting, "jwks");
    let own = Settings {
        subscriber_jwt_key: Some("k".into()),
        subscriber_jwks: Some("/etc/jwks.json".into()),
        ..Settings::default()
    };
    assert_eq!(own.hub_config().unwrap_err().setting, "subscriber-jwks");
}

#[test]
fn timeouts_are_flags_and_file_keys() {
    let file: Settings =
        toml::from_str("header-timeout = \"5s\"\nhttp2-idle-timeout = \"1m\"").unwrap();
    let flags = Settings {
        jwt_key: Some("k".into()),
        body_timeout: Some("2s".into()),
        ..Settings::default()
    };
    let timeouts = flags.or(file).hub_config().unwrap().timeouts;
    assert_eq!(timeouts.header, std::time::Duration::from_secs(5));
    assert_eq!(timeouts.body, std::time::Duration::from_secs(2));
    assert_eq!(timeouts.http2_idle, std::time::Duration::from_secs(60));
    assert_eq!(
        timeouts.http2_keep_alive,
        Timeouts::default().http2_keep_alive
    );
    // 0s does not disable a deadline: the hub refuses it, naming the setting.
    let zero = Settings {
        jwt_key: Some("k".into()),
        header_timeout: Some("0s".into()),
        ..Settings::default()
    };
    let e = zero.hub_config().unwrap().validate().unwrap_err();
    assert_eq!(e.setting, "header-timeout");
    let connections = Settings {
        jwt_key: Some("k".into()),
        max_connections: Some("20000".into()),
        ..Settings::default()
    };
    assert_eq!(
        connections.hub_config().unwrap().max_connections,
        Some(20000)
    );
}

#[test]
fn the_overload_settings_are_flags_and_file_keys() {
    let file: Settings = toml::from_str(
        "no-front-page = true\ntrusted-proxy = [\"10.0.0.0/8\"]\ndrain-spread = \"2s\"",
    )
    .unwrap();
    let config = Settings {
        jwt_key: Some("k".into()),
        max_subscriptions_per_client: Some("0".into()),
        ..Settings::default()
    }
    .or(file)
    .hub_config()
    .unwrap();
    assert!(!config.front_page);
    assert_eq!(config.max_subscriptions_per_client, None);
    assert_eq!(config.trusted_proxies, ["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(config.drain_spread, std::time::Duration::from_secs(2));
    let defaults = Settings {
        jwt_key: Some("k".into()),
        ..Settings::default()
    }
    .hub_config()
    .unwrap();
    assert!(defaults.front_page);
    assert_eq!(defaults.max_subscriptions_per_client, Some(100));
    let bad = Settings {
        jwt_key: Some("k".into()),
        trusted_proxies: vec!["proxy.local".into()],
        ..Settings::default()
    };
    assert_eq!(bad.hub_config().unwrap_err().setting, "trusted-proxy");
}

#[test]
fn ui_is_a_flag_and_a_file_key() {
    let file: Settings = toml::from_str("ui = true").unwrap();
    let merged = Settings::default().or(file);
    assert!(merged.ui);
    let config = Settings {
        jwt_key: Some("k".into()),
        ..merged
    }
    .hub_config()
    .unwrap();
    assert!(config.ui);
    assert!(!config.dev_mode);
}

#[test]
fn a_redis_transport_is_a_url_with_its_stream_name() {
    let file: Settings =
        toml::from_str("transport = \"redis://:pw@127.0.0.1:6379/2\"\nredis-stream = \"chat\"")
            .unwrap();
    let config = Settings {
        jwt_key: Some("k".into()),
        ..Settings::default()
    }
    .or(file)
    .hub_config()
    .unwrap();
    let Storage::Redis(options) = &config.storage else {
        panic!("not redis: {:?}", config.storage)
    };
    assert_eq!(options.url, "redis://:pw@127.0.0.1:6379/2");
    assert_eq!(options.stream, "chat");
    assert!(
        !format!("{config:?}").contains(":pw@"),
        "no password in Debug"
    );
    let tls = Settings {
        transport: Some("rediss://cache.example.com:6380".into()),
        ..Settings::default()
    };
    assert!(matches!(
        tls.hub_config().unwrap().storage,
        Storage::Redis(_)
    ));
    let bad = Settings {
        transport: Some("postgres://x".into()),
        ..Settings::default()
    };
    assert_eq!(bad.hub_config().unwrap_err().setting, "transport");
}
