//! `herald subscribe`: print a hub's events as they arrive, reconnecting like the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use herald_client::{Event, SubscribeError, Subscriber};
use serde_json::json;

use crate::client_common::{EXIT_UNREACHABLE, Failure, finish, http_client, runtime};

/// Subscribe to topics and print each event as it arrives.
///
/// The subscription reconnects by itself when the connection drops or the hub ends it, resuming
/// after the last event received (nothing is missed, nothing printed twice); reconnections are
/// reported on stderr. It stops on a refusal (bad token, bad selector), after --max-retries
/// failed attempts, or when interrupted.
#[derive(Args, Debug)]
pub(crate) struct SubscribeArgs {
    /// The hub's URL, such as http://127.0.0.1:3000/.well-known/mercure.
    #[arg(long, env = "HERALD_HUB", value_name = "URL")]
    hub: String,

    /// A topic selector: a topic, a URI template such as https://example.com/books/{id}, or *
    /// (repeat it, or give several after one --topic).
    #[arg(long = "topic", value_name = "SELECTOR", required = true, num_args = 1..)]
    topics: Vec<String>,

    /// A subscriber token (JWT), for private updates or a hub without anonymous access.
    #[arg(long, env = "HERALD_TOKEN", value_name = "JWT", hide_env_values = true)]
    token: Option<String>,

    /// Start after this event id (the hub replays what followed), or `earliest` for the whole
    /// history it keeps.
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,

    /// How to print events: `text` (SSE fields, a blank line after each event) or `json` (one
    /// JSON object per line: id, type, data, retry).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Give up after this many consecutive failed connection attempts [default: never].
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,

    /// Do not report reconnections on stderr.
    #[arg(long, short)]
    quiet: bool,

    /// Also trust the CA certificates (PEM) in this file for an https:// hub, besides the
    /// system's store.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: SubscribeArgs) -> ExitCode {
    finish(subscribe(args))
}

fn subscribe(args: SubscribeArgs) -> Result<(), Failure> {
    let mut subscriber = Subscriber::new(&args.hub).topics(args.topics.iter().cloned());
    if let Some(cacert) = &args.cacert {
        let http = http_client(cacert, |b| b.connect_timeout(Duration::from_secs(10)))?;
        subscriber = subscriber.http_client(http);
    }
    if let Some(token) = &args.token {
        subscriber = subscriber.token(token.trim());
    }
    if let Some(id) = &args.last_event_id {
        subscriber = subscriber.last_event_id(id.clone());
    }
    if let Some(max) = args.max_retries {
        subscriber = subscriber.max_retries(max);
    }
    if !args.quiet {
        subscriber = subscriber.on_reconnect(|r| {
            let after = r
                .last_event_id
                .map(|id| format!(", resuming after {id}"))
                .unwrap_or_default();
            eprintln!(
                "herald: {}; reconnecting in {}{after}",
                r.error,
                format_delay(r.delay)
            );
        });
    }
    let mut events = subscriber
        .stream()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let format = args.format;
    let count = args.count;
    runtime()?.block_on(async move {
        let mut printed = 0u64;
        if count == Some(0) {
            return Ok(());
        }
        while let Some(item) = events.next().await {
            let event = item.map_err(failure)?;
            print_event(&event, format)?;
            printed += 1;
            if count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
        }
        Ok(())
    })
}

fn failure(error: SubscribeError) -> Failure {
    let hint = match error.status() {
        Some(401) => " (give a valid --token, or the hub must allow anonymous subscribers)",
        Some(403) => " (the token does not allow this subscription)",
        _ => "",
    };
    let message = format!("subscription failed: {error}{hint}");
    match &error {
        SubscribeError::NotEventStream { .. } => Failure {
            code: crate::client_common::EXIT_REJECTED,
            message,
        },
        SubscribeError::Invalid(_) => Failure::usage(message),
        SubscribeError::GaveUp { .. } => Failure {
            code: EXIT_UNREACHABLE,
            message,
        },
        _ => Failure::for_status(error.status(), message),
    }
}

fn print_event(event: &Event, format: Format) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let text = match format {
        Format::Json => {
            let mut line = json!({
                "id": event.id,
                "type": event.event_type,
                "data": event.data,
                "retry": event.retry.map(|r| r.as_millis() as u64),
            })
            .to_string();
            line.push('\n');
            line
        }
        Format::Text => {
            let mut text = String::new();
            if let Some(event_type) = &event.event_type {
                text.push_str(&format!("event: {event_type}\n"));
            }
            if let Some(retry) = event.retry {
                text.push_str(&format!("retry: {}\n", retry.as_millis()));
            }
            if let Some(id) = &event.id {
                text.push_str(&format!("id: {id}\n"));
            }
            for line in event.data.split('\n') {
                text.push_str(&format!("data: {line}\n"));
            }
            text.push('\n');
            text
        }
    };
    // A closed stdout (`herald subscribe ... | head -1`) ends the command quietly.
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Failure {
            code: EXIT_UNREACHABLE,
            message: format!("cannot write to standard output: {e}"),
        }),
    }
}

fn format_delay(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}
