//! What `herald publish`, `herald subscribe` and `herald token` share: exit codes, keys, and
//! turning a failure into one line on stderr.
//!
//! Exit codes (documented in docs/cli.md):
//! - 0: done;
//! - 1: the hub could not be reached, or answered something unexpected (5xx, a stream that
//!   kept failing);
//! - 2: the command line is wrong (clap's own usage errors, a file that cannot be read, a bad
//!   key or JSON);
//! - 3: the hub refused the credentials (401 or 403: fix the token or key);
//! - 4: the hub refused the request itself (400, 413 or another 4xx, or the URL is not a hub).

use std::path::Path;
use std::process::ExitCode;

use herald_client::token::{Algorithm, MintError, TokenMinter};

pub(crate) const EXIT_UNREACHABLE: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_REFUSED: u8 = 3;
pub(crate) const EXIT_REJECTED: u8 = 4;

/// A failure of a client command: the line to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// The exit code for an HTTP refusal (`None`: no status, the hub was not reached).
    pub(crate) fn for_status(status: Option<u16>, message: String) -> Failure {
        let code = match status {
            Some(401 | 403) => EXIT_REFUSED,
            Some(408 | 429) | None => EXIT_UNREACHABLE,
            Some(s) if (400..500).contains(&s) => EXIT_REJECTED,
            Some(_) => EXIT_UNREACHABLE,
        };
        Failure { code, message }
    }
}

/// Prints `failure` (or nothing) and gives the process's exit code.
pub(crate) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("herald: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_UNREACHABLE,
            message: format!("cannot start the runtime: {e}"),
        })
}

/// An HTTP client that also trusts the CA certificates of `cacert` (`--cacert`), set up
/// further by `configure` (timeouts).
pub(crate) fn http_client(
    cacert: &Path,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, Failure> {
    let pem = std::fs::read(cacert)
        .map_err(|e| Failure::usage(format!("--cacert: cannot read {}: {e}", cacert.display())))?;
    let builder = herald_client::tls::client_builder(Some(&pem))
        .map_err(|e| Failure::usage(format!("--cacert {}: {e}", cacert.display())))?;
    configure(builder).build().map_err(|e| Failure {
        code: EXIT_UNREACHABLE,
        message: format!("cannot build an HTTP client: {e}"),
    })
}

/// A key given inline, or `@path` for a file (as `herald serve --jwt-key` reads it).
pub(crate) fn read_key(flag: &str, value: &str) -> Result<Vec<u8>, Failure> {
    let key = match value.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|e| {
            Failure::usage(format!(
                "{flag}: cannot read the key file {path}: {e}; check the path after @, or give the key itself"
            ))
        })?,
        None => value.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(Failure::usage(format!("{flag}: the key is empty")));
    }
    Ok(key)
}

/// An algorithm name, case-insensitive.
pub(crate) fn parse_algorithm(value: &str) -> Result<Algorithm, Failure> {
    let algorithm = match value.to_ascii_uppercase().as_str() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EDDSA" => Algorithm::EdDSA,
        _ => {
            return Err(Failure::usage(format!(
                "--alg: {value:?} is not an algorithm; use HS256, HS384, HS512, RS256, RS384, \
                 RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
            )));
        }
    };
    Ok(algorithm)
}

/// A minter from `--jwt-key` and `--alg`.
pub(crate) fn minter(key: &str, alg: &str) -> Result<TokenMinter, Failure> {
    let algorithm = parse_algorithm(alg)?;
    let key = read_key("--jwt-key", key)?;
    TokenMinter::new(algorithm, &key).map_err(|e| {
        let hint = match e {
            MintError::InvalidPem { .. } => {
                "; give the private key's PEM file as --jwt-key @path/to/key.pem"
            }
            _ => "",
        };
        Failure::usage(format!("--jwt-key: {e}{hint}"))
    })
}
