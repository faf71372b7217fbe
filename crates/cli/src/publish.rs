//! `herald publish`: post one update to a hub and print the id it was given.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use herald_client::{Publication, Publisher};

use crate::client_common::{Failure, finish, http_client, minter, runtime};

/// Publish an update and print its id.
///
/// The data comes from --data, --data-file, or standard input when neither is given (and
/// standard input is not a terminal). Authenticate with a token (--token) or with the hub's key
/// (--jwt-key), from which a short-lived token allowing every topic is minted.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("credentials").args(["token", "jwt_key"])))]
pub(crate) struct PublishArgs {
    /// The hub's URL, such as http://127.0.0.1:3000/.well-known/mercure.
    #[arg(long, env = "HERALD_HUB", value_name = "URL")]
    hub: String,

    /// A topic of the update (repeat it: the first is canonical, the others alternates).
    #[arg(long = "topic", value_name = "TOPIC", required = true)]
    topics: Vec<String>,

    /// The update's data.
    #[arg(long, value_name = "DATA", conflicts_with = "data_file")]
    data: Option<String>,

    /// Read the update's data from this file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,

    /// Deliver the update only to subscribers authorized for one of its topics.
    #[arg(long)]
    private: bool,

    /// The update's id (default: the hub generates one).
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// The SSE event type of the update.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,

    /// The SSE retry field: how long subscribers wait before reconnecting, in milliseconds.
    #[arg(long, value_name = "MS")]
    retry: Option<u64>,

    /// A publisher token (JWT) whose mercure.publish claim covers the topics [env: HERALD_TOKEN].
    #[arg(long, value_name = "JWT")]
    token: Option<String>,

    /// The hub's publisher key, to mint a token with: an HMAC secret, or for RS*/PS*/ES*/EdDSA a
    /// PEM private key. `@path` reads it from a file [env: HERALD_JWT_KEY].
    #[arg(long, value_name = "KEY")]
    jwt_key: Option<String>,

    /// The algorithm of --jwt-key.
    #[arg(
        long,
        value_name = "ALG",
        default_value = "HS256",
        requires = "jwt_key"
    )]
    alg: String,

    /// Also trust the CA certificates (PEM) in this file for an https:// hub, besides the
    /// system's store.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// Give up after this long without an answer.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub(crate) fn run(args: PublishArgs) -> ExitCode {
    finish(publish(args))
}

fn publish(args: PublishArgs) -> Result<(), Failure> {
    let data = read_data(&args)?;
    let mut builder = Publisher::builder(&args.hub).timeout(args.timeout);
    if let Some(cacert) = &args.cacert {
        let timeout = args.timeout;
        let connect = timeout.min(Duration::from_secs(10));
        let http = http_client(cacert, |b| b.timeout(timeout).connect_timeout(connect))?;
        builder = builder.http_client(http);
    }
    // A flag wins over both variables, so that `--jwt-key` works with HERALD_TOKEN set and the
    // other way round; with no flag, HERALD_TOKEN wins over HERALD_JWT_KEY.
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let credentials = match (&args.token, &args.jwt_key) {
        (Some(token), _) => Some(Ok(token.clone())),
        (None, Some(key)) => Some(Err(key.clone())),
        (None, None) => from_env("HERALD_TOKEN")
            .map(Ok)
            .or_else(|| from_env("HERALD_JWT_KEY").map(Err)),
    };
    builder = match credentials {
        Some(Ok(token)) => builder.token(token.trim()),
        Some(Err(key)) => builder.minter(minter(&key, &args.alg)?),
        None => {
            return Err(Failure::usage(
                "no credentials: give --token JWT (a publisher token) or --jwt-key KEY (the \
                 hub's key), or set HERALD_TOKEN or HERALD_JWT_KEY",
            ));
        }
    };
    let publisher = builder
        .build()
        .map_err(|e| Failure::usage(format!("--hub: {e}")))?;
    let mut topics = args.topics.into_iter();
    let mut update = Publication::new(topics.next().expect("clap requires a topic"));
    for topic in topics {
        update = update.topic(topic);
    }
    update.data = data;
    update.private = args.private;
    update.id = args.id;
    update.event_type = args.event_type;
    update.retry = args.retry;
    let id = runtime()?
        .block_on(publisher.publish(update))
        .map_err(|e| {
            let hint = match e.status() {
                Some(401) => " (check the token, or the key and --alg the hub verifies with)",
                Some(403) => " (the token's mercure.publish claim must match every --topic)",
                _ => "",
            };
            Failure::for_status(e.status(), format!("publish failed: {e}{hint}"))
        })?;
    println!("{id}");
    Ok(())
}

fn read_data(args: &PublishArgs) -> Result<Option<String>, Failure> {
    if let Some(data) = &args.data {
        return Ok(Some(data.clone()));
    }
    let from_stdin = match &args.data_file {
        Some(path) if path.as_os_str() != "-" => {
            return std::fs::read_to_string(path).map(Some).map_err(|e| {
                Failure::usage(format!("--data-file: cannot read {}: {e}", path.display()))
            });
        }
        Some(_) => true,
        None => !std::io::stdin().is_terminal(),
    };
    if !from_stdin {
        return Ok(None);
    }
    let mut data = String::new();
    std::io::stdin()
        .read_to_string(&mut data)
        .map_err(|e| Failure::usage(format!("cannot read the data from standard input: {e}")))?;
    Ok(Some(data))
}
