//! The publishers of a run: each takes the next update number, paces itself, and publishes
//! over its own keep-alive connection (HTTP/1.1, or HTTP/2 over TLS).
//!
//! A [`PublishConn`] is opened on first use and reopened after an error; [`publisher`] counts
//! what was accepted, the publish latency, and the first failure for the report, in the run's
//! [`Shared`] counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Endpoint, Shared, sent_ns, update_data};
use crate::endpoint::Layout;
use crate::http::{self, Conn};
use crate::now_ns;

/// A publisher's connection, opened on first use and reopened after an error.
pub(super) enum PublishConn {
    Http1(Option<Conn>),
    H2(Option<crate::http2::H2Conn>, Arc<rustls::ClientConfig>),
}

impl PublishConn {
    async fn publish(
        &mut self,
        endpoint: &Endpoint,
        topic: &str,
        data: &str,
    ) -> std::io::Result<u16> {
        match self {
            PublishConn::Http1(conn) => {
                let request = endpoint.publish_request(topic, data, None);
                http::exchange(conn, endpoint.addr, &request).await
            }
            PublishConn::H2(conn, config) => {
                if conn.is_none() {
                    *conn =
                        Some(crate::http2::H2Conn::connect(endpoint.addr, config.clone()).await?);
                }
                let c = conn.as_mut().expect("connected");
                c.exchange(endpoint.publish(topic, data, None)).await
            }
        }
    }

    fn reset(&mut self) {
        match self {
            PublishConn::Http1(conn) => *conn = None,
            PublishConn::H2(conn, _) => *conn = None,
        }
    }
}

/// One publisher: takes update numbers from `next` until `total`, paced by `rate`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn publisher(
    endpoint: Arc<Endpoint>,
    layout: Arc<Layout>,
    shared: Arc<Shared>,
    next: Arc<AtomicUsize>,
    total: usize,
    rate: f64,
    start: Instant,
    payload: usize,
    mut conn: PublishConn,
) {
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= total {
            return;
        }
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / rate)).into())
                .await;
        }
        let data = update_data(seq, payload);
        let sent = sent_ns(data.as_bytes()).unwrap_or_default();
        let outcome = conn.publish(&endpoint, &layout.topic(seq), &data).await;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
                let latency = now_ns().saturating_sub(sent);
                shared.publish_latencies.lock().unwrap().push(latency);
            }
            Ok(status) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.first_publish_error.lock().unwrap();
                first.get_or_insert_with(|| format!("status {status}"));
            }
            Err(e) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.first_publish_error.lock().unwrap();
                first.get_or_insert_with(|| e.to_string());
                drop(first);
                conn.reset();
            }
        }
    }
}
