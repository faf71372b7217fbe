//! The subscribers of a run: opening their streams at a bounded connect rate, and counting
//! what each receives.
//!
//! [`open_subscribers`] starts one task per subscriber ([`subscriber`]), spread over the
//! loopback [`source`] addresses and, on a cluster, over the nodes; a semaphore bounds the
//! connection attempts in flight (`--connect-concurrency`). Each task parses its stream (chunked
//! or not) and adds its deliveries and their latencies to the run's [`Shared`] counters.
//! [`open_stream`] and [`source`] also serve the other subcommands (soak, cluster workers).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Endpoint, RunArgs, Shared, sent_ns};
use crate::endpoint::Layout;
use crate::http::{self, Chunked, Conn, SseScanner};
use crate::now_ns;

/// The `i`-th source address: 127.0.0.2, 127.0.0.3, ...
pub(crate) fn source(i: usize, sources: usize) -> Option<IpAddr> {
    (sources > 0).then(|| {
        let n = 2 + (i % sources) as u32;
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
    })
}

/// Connects, sends a subscription `request` and reads the response head, which must be 200.
pub(crate) async fn open_stream(
    endpoint: &Endpoint,
    from: Option<IpAddr>,
    request: &[u8],
) -> std::io::Result<(Conn, http::Head)> {
    let stream = http::connect(endpoint.addr, from).await?;
    let mut conn = Conn::new(stream, 4096);
    let head = conn.request_head(request).await?;
    if head.status != 200 {
        return Err(std::io::Error::other(format!("status {}", head.status)));
    }
    Ok((conn, head))
}

/// One subscriber: connect (holding a connect permit, retrying up to `retries` times), check
/// the response, then count the deliveries and their latencies until the task is aborted.
pub(crate) async fn subscriber(
    endpoint: Arc<Endpoint>,
    request: Vec<u8>,
    from: Option<IpAddr>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    retries: u32,
) {
    let mut attempt = 0;
    let (mut conn, head) = loop {
        let permit = permits.acquire().await.expect("semaphore open");
        let opened = open_stream(&endpoint, from, &request).await;
        drop(permit);
        match opened {
            Ok(opened) => break opened,
            Err(_) if attempt < retries => {
                attempt += 1;
                shared.connect_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(_) => {
                shared.connect_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    // When the run ends, its subscribers close with a reset, not a FIN: ten thousand
    // connections left in TIME_WAIT for a minute would slow the next run's connects, whichever
    // server it measures (each connect() searches them for a free source port). The server
    // sees a reset where it would have seen an end of stream, after the measurements.
    let _ = conn.stream.set_zero_linger();
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut chunked = head.chunked.then(Chunked::default);
    let mut sse = SseScanner::default();
    let mut latencies = Vec::new();
    let mut start = 0;
    let mut end = conn.filled;
    loop {
        if end > start {
            let now = now_ns();
            let mut on_data = |data: &[u8]| {
                if let Some(sent) = sent_ns(data) {
                    latencies.push(now.saturating_sub(sent));
                }
            };
            let bytes = &conn.buf[start..end];
            match &mut chunked {
                Some(decoder) => {
                    decoder.feed(bytes, &mut |piece| sse.feed(piece, &mut on_data));
                }
                None => sse.feed(bytes, &mut on_data),
            }
            if !latencies.is_empty() {
                shared
                    .delivered
                    .fetch_add(latencies.len() as u64, Ordering::Relaxed);
                shared.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
                shared.latencies.lock().unwrap().append(&mut latencies);
            }
            if chunked
                .as_ref()
                .is_some_and(|d| d.is_done() || d.is_error())
            {
                shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        start = 0;
        end = match tokio::io::AsyncReadExt::read(&mut conn.stream, &mut conn.buf).await {
            Ok(0) | Err(_) => {
                shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(n) => n,
        };
    }
}

/// Starts `count` subscribers numbered from `offset`, plus `templates` template subscribers.
pub(super) fn open_subscribers(
    args: &RunArgs,
    endpoint: &Arc<Endpoint>,
    layout: &Layout,
    shared: &Arc<Shared>,
    offset: usize,
    count: usize,
    templates: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let endpoints: Vec<Arc<Endpoint>> = std::iter::once(endpoint.clone())
        .chain(
            args.also_subscribe_at
                .iter()
                .map(|addr| Arc::new(endpoint.at(*addr))),
        )
        .collect();
    let selectors = (offset..offset + count)
        .map(|i| layout.subscriber(i))
        .chain((0..templates).map(|k| layout.template_subscriber(k)));
    selectors
        .enumerate()
        .map(|(n, selectors)| {
            let endpoint = &endpoints[(offset + n) % endpoints.len()];
            let request = endpoint.subscribe_request(&selectors, None);
            tokio::spawn(subscriber(
                endpoint.clone(),
                request,
                source(offset + n, args.sources),
                permits.clone(),
                shared.clone(),
                args.connect_retries,
            ))
        })
        .collect()
}

pub(super) async fn wait_connected(shared: &Shared, count: usize) {
    while shared.connected.load(Ordering::Relaxed) + shared.connect_failed.load(Ordering::Relaxed)
        < count
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
