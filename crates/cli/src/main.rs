//! `herald`: the command line of the Herald hub.
//!
//! `herald serve` runs a hub configured by flags, environment variables and an optional TOML
//! file (see `settings`). The binary's job is only to turn those into a
//! [`herald_hub::HubConfig`], report bad settings in one line, set up logging, and run
//! [`herald_hub::serve`]; everything else lives in the library crates.

mod caddyfile;
mod client_common;
mod dev;
#[cfg(test)]
mod flag_table;
mod key_strength;
mod mercure_compat;
mod publish;
mod serve;
mod setting_origin;
mod settings;
mod subscribe;
mod tls;
mod token;
mod values;

use std::process::ExitCode;

/// jemalloc rather than the C library's malloc. A hub's allocations come in waves: each new
/// subscription makes about forty-five, most of them short-lived (its request, its head, its
/// route's futures), and a reconnection storm makes tens of thousands at once. Measured side by side (docs/benchmarks.md, "Connect time"), jemalloc
/// sets up a subscription with about 5% less CPU than glibc's malloc and holds an idle one in
/// about 7% less memory. It is built with one arena (`.cargo/config.toml`): with its default of
/// four per core, reconnection waves grew the process (docs/operations.md, "Memory and the
/// allocator"), as glibc's per-thread heaps did before they were capped.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A real-time push hub speaking the Mercure protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(Box<serve::ServeArgs>),
    /// Publish an update to a hub and print its id.
    Publish(Box<publish::PublishArgs>),
    /// Subscribe to topics of a hub and print events as they arrive.
    Subscribe(Box<subscribe::SubscribeArgs>),
    /// Mint a token (JWT) with the mercure claim.
    Token(Box<token::TokenArgs>),
}

/// Exit code for a setting that prevents the start (documented in the README).
const EXIT_BAD_SETTING: u8 = 2;
/// Exit code for a failure while running (cannot bind, I/O error).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Publish(args) => publish::run(*args),
        Command::Subscribe(args) => subscribe::run(*args),
        Command::Token(args) => token::run(*args),
        Command::Serve(args) => match serve::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(serve::ServeError::Setting(e)) => {
                eprintln!("herald: {e}");
                ExitCode::from(EXIT_BAD_SETTING)
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}
