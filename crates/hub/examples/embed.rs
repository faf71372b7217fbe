//! Mounting the hub inside your own axum application.
//!
//! The application serves its own routes (here `/` and `/books/1`, which advertises the hub with
//! a `Link` header [R2]) and the hub's routes from the same server, and publishes from its own
//! code without going through HTTP. Run it with:
//!
//! ```sh
//! cargo run -p herald-hub --example embed
//! curl -N 'http://127.0.0.1:3000/.well-known/mercure?topic=https://example.com/books/1'
//! curl -X POST http://127.0.0.1:3000/books/1    # the app publishes, the subscriber sees it
//! ```

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use herald_hub::{Hub, HubConfig, JwtKey};
use herald_protocol::{Algorithm, Update, generate_id};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let hub = Hub::new(HubConfig {
        publisher_key: Some(JwtKey {
            algorithm: Algorithm::HS256,
            key: std::env::var("HUB_KEY")
                .unwrap_or_else(|_| "change-me-change-me-change-me".into())
                .into_bytes(),
        }),
        anonymous: true,
        ..HubConfig::default()
    })
    .await?;

    let app = Router::new()
        .route("/", get(|| async { "my application\n" }))
        .route("/books/1", get(book).post(publish_book_change))
        .with_state(hub.clone())
        .merge(hub.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let shutdown_hub = hub.clone();
    let signal = herald_hub::shutdown::signal();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            // Open streams would otherwise hold the shutdown until their lifetime ends.
            shutdown_hub.close_streams();
        })
        .await?;
    Ok(())
}

/// A resource that tells clients where its updates are published.
async fn book() -> impl IntoResponse {
    (
        [(
            "link",
            "</.well-known/mercure>; rel=\"mercure\", <https://example.com/books/1>; rel=\"self\"",
        )],
        "{\"title\": \"Dune\"}\n",
    )
}

/// The application changes the book and publishes the news itself.
async fn publish_book_change(State(hub): State<Hub>) -> impl IntoResponse {
    let update = Update {
        id: generate_id(),
        topics: vec!["https://example.com/books/1".into()],
        data: "{\"title\": \"Dune Messiah\"}".into(),
        private: false,
        event_type: None,
        retry: None,
    };
    match hub.publish(update).await {
        Ok(()) => "published\n".into_response(),
        Err(e) => (http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
