//! `herald token`: mint a token, draft-07 (the `mercure` claim, the default) or a Mercure 1.0
//! access token (`--format at+jwt`: `authorization_details`, `aud`, `iss`).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use herald_client::token::{AccessGrants, MercureClaim, TopicMatch};
use serde_json::Value;

use crate::client_common::{Failure, finish, minter};

/// Print a token (JWT) signed with the hub's key: a draft-07 token with the `mercure` claim, or
/// with `--format at+jwt` a Mercure 1.0 access token (`--audience` is the hub's URL; `--publish`
/// and `--subscribe` are then exact topics or `*`, `--publish-pattern` and `--subscribe-pattern`
/// URL patterns).
///
/// HS256/384/512 sign with the shared secret the hub verifies with; RS*, PS*, ES256/384 and
/// EdDSA sign with a PEM private key (give it as @path/to/key.pem), whose public half the hub
/// verifies with.
#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The signing key: an HMAC secret, or a PEM private key for the other algorithms. `@path`
    /// reads it from a file.
    #[arg(
        long,
        env = "HERALD_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    jwt_key: String,

    /// The signing algorithm.
    #[arg(long, value_name = "ALG", default_value = "HS256")]
    alg: String,

    /// Topic selectors the bearer may publish to (`*` for all).
    #[arg(long, value_name = "SELECTOR", num_args = 1..)]
    publish: Vec<String>,

    /// Topic selectors of the private updates the bearer may receive (`*` for all).
    #[arg(long, value_name = "SELECTOR", num_args = 1..)]
    subscribe: Vec<String>,

    /// JSON attached to the bearer's subscriptions (mercure.payload).
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,

    /// How long the token is valid (`30m`, `12h`, `7d`); `0s` for no expiry (draft-07 only).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,

    /// The kind of token: `draft-07` (the `mercure` claim) or `at+jwt` (Mercure 1.0).
    #[arg(long, value_name = "FORMAT", default_value = "draft-07")]
    format: String,

    /// at+jwt: the hub's URL, its resource identifier (`aud`), e.g.
    /// https://hub.example/.well-known/mercure.
    #[arg(long, value_name = "URL")]
    audience: Option<String>,

    /// at+jwt: the issuer (`iss`), one of the hub's trusted issuers.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,

    /// at+jwt: who the bearer is (`sub`).
    #[arg(long, value_name = "ID")]
    subject: Option<String>,

    /// at+jwt: URL patterns of the topics the bearer may publish to.
    #[arg(long, value_name = "PATTERN", num_args = 1..)]
    publish_pattern: Vec<String>,

    /// at+jwt: URL patterns of the private updates the bearer may receive.
    #[arg(long, value_name = "PATTERN", num_args = 1..)]
    subscribe_pattern: Vec<String>,
}

pub(crate) fn run(args: TokenArgs) -> ExitCode {
    finish(token(args))
}

fn token(args: TokenArgs) -> Result<(), Failure> {
    let payload = match &args.payload {
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| Failure::usage(format!("--payload: not valid JSON ({e}): {text}")))?,
        ),
        None => None,
    };
    match args.format.as_str() {
        "draft-07" => {}
        "at+jwt" => return access_token(args, payload),
        other => {
            return Err(Failure::usage(format!(
                "--format {other:?}: the formats are draft-07 and at+jwt"
            )));
        }
    }
    if args.audience.is_some()
        || args.issuer.is_some()
        || args.subject.is_some()
        || !args.publish_pattern.is_empty()
        || !args.subscribe_pattern.is_empty()
    {
        return Err(Failure::usage(
            "--audience, --issuer, --subject and the --*-pattern options are for 1.0 access \
             tokens: add --format at+jwt",
        ));
    }
    if args.publish.is_empty() && args.subscribe.is_empty() && payload.is_none() {
        return Err(Failure::usage(
            "the token would grant nothing: give --publish SELECTOR and/or --subscribe SELECTOR \
             (`*` for every topic)",
        ));
    }
    let claim = MercureClaim {
        publish: (!args.publish.is_empty()).then_some(args.publish),
        subscribe: (!args.subscribe.is_empty()).then_some(args.subscribe),
        payload,
    };
    let minter = minter(&args.jwt_key, &args.alg)?;
    let exp = (!args.ttl.is_zero()).then(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + args.ttl.as_secs().max(1)
    });
    let token = minter
        .mint_payload(&claim, exp, None)
        .map_err(|e| Failure::usage(format!("cannot mint the token: {e}")))?;
    println!("{token}");
    Ok(())
}

/// `--format at+jwt`: a Mercure 1.0 access token.
fn access_token(args: TokenArgs, payload: Option<Value>) -> Result<(), Failure> {
    let audience = args.audience.ok_or_else(|| {
        Failure::usage(
            "--format at+jwt needs --audience, the hub's URL (its resource identifier), e.g. \
             https://hub.example/.well-known/mercure",
        )
    })?;
    if args.ttl.is_zero() {
        return Err(Failure::usage(
            "an at+jwt token must expire: give --ttl a duration above zero",
        ));
    }
    let matches = |exact: Vec<String>, patterns: Vec<String>| -> Vec<TopicMatch> {
        exact
            .into_iter()
            .map(TopicMatch::Exact)
            .chain(patterns.into_iter().map(TopicMatch::UrlPattern))
            .collect()
    };
    let grants = AccessGrants {
        publish: matches(args.publish, args.publish_pattern),
        subscribe: matches(args.subscribe, args.subscribe_pattern),
        payload,
        audience,
        issuer: args.issuer,
        subject: args.subject,
    };
    if grants.publish.is_empty() && grants.subscribe.is_empty() {
        return Err(Failure::usage(
            "the token would grant nothing: give --publish/--publish-pattern and/or \
             --subscribe/--subscribe-pattern (`*` for every topic)",
        ));
    }
    if grants.payload.is_some() && grants.subscribe.is_empty() {
        return Err(Failure::usage(
            "--payload goes with a subscribe grant: add --subscribe or --subscribe-pattern",
        ));
    }
    let token = minter(&args.jwt_key, &args.alg)?
        .mint_access_token(&grants, args.ttl)
        .map_err(|e| Failure::usage(format!("cannot mint the token: {e}")))?;
    println!("{token}");
    Ok(())
}
