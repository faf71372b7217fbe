//! `herald token`: mint a token with the draft-07 `mercure` claim.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use herald_client::token::MercureClaim;
use serde_json::Value;

use crate::client_common::{Failure, finish, minter};

/// Print a token (JWT) with the `mercure` claim, signed with the hub's key.
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

    /// How long the token is valid (`30m`, `12h`, `7d`); `0s` for no expiry.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
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
