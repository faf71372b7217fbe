//! What the hub counts, and its Prometheus exposition (`--metrics-listen`, `/metrics`).
//!
//! Counting is on the hot paths (every dispatch, every write to a subscriber), so it is plain
//! atomics, `Relaxed`, in one [`Metrics`] shared by the registry, the routes, the streams and the
//! accept loop: no lock, no allocation, no lookup by name or label. What is per delivery is
//! counted once per dispatch (deliveries += the subscribers an update was queued for) or once
//! per write (bytes, one latency observation per chunk, however many updates it joins). The
//! histograms are fixed buckets of atomics too ([`LatencyHistogram`]). Values that are states
//! rather than counts (subscribers connected, history size, connections) are read when Prometheus
//! scrapes, from where they already live.
//!
//! At scrape time the counters are copied into a [`Snapshot`] and written in the Prometheus text
//! format (0.0.4) by `prometheus-client`, the official Rust client, used here only as an
//! encoder: it runs no server of its own; `/metrics` is an axum route on a listener of its own
//! (so that metrics are not public by accident), next to `/healthz` and `/readyz`.
//!
//! docs/operations.md, "Metrics", lists every metric with its type, labels and meaning.

pub(crate) mod endpoints;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Why a subscriber's stream ended: the `reason` label of
/// `herald_subscribers_disconnected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    /// Its queue passed `--subscriber-queue-size`: it did not read fast enough.
    SlowReader,
    /// It reached its maximum lifetime (`--write-timeout`).
    Lifetime,
    /// Its token's `exp` passed.
    TokenExpired,
    /// The client went away (or its connection was cut) while the stream was open.
    ClientGone,
    /// The hub is shutting down.
    Shutdown,
    /// History could not be read for its replay.
    ReplayFailed,
}

impl DisconnectReason {
    const ALL: [DisconnectReason; 6] = [
        DisconnectReason::SlowReader,
        DisconnectReason::Lifetime,
        DisconnectReason::TokenExpired,
        DisconnectReason::ClientGone,
        DisconnectReason::Shutdown,
        DisconnectReason::ReplayFailed,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::SlowReader => "slow_reader",
            DisconnectReason::Lifetime => "lifetime",
            DisconnectReason::TokenExpired => "token_expired",
            DisconnectReason::ClientGone => "client_gone",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::ReplayFailed => "replay_failed",
        }
    }
}

/// The reason classes of rejected publishes (the `reason` label of `herald_publishes_total`),
/// by the status answered.
const REJECTION_CLASSES: [(u16, &str); 8] = [
    (400, "bad_request"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (408, "timeout"),
    (413, "too_large"),
    (415, "unsupported_media_type"),
    (503, "unavailable"),
    (0, "other"),
];

/// How a publish over HTTP ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishOutcome {
    /// Stored and acknowledged (200).
    Accepted,
    /// Refused before reaching the transport, with this status.
    Rejected(http::StatusCode),
    /// The transport could not store it (503).
    Failed,
}

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations in fixed buckets, each an atomic: observing is a scan of sixteen
/// bounds and two `fetch_add`s, with no lock (the client library's own histogram takes one).
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    /// The sum of observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// Durations counted by one task without atomics, then added to a [`LatencyHistogram`] at once
/// ([`LatencyHistogram::add`]). A flush task writes to hundreds of subscribers in a row, on
/// both workers at the same time: two atomic adds per write, on cache lines the other worker
/// adds to as well, would move those lines between the cores on every delivery.
#[derive(Debug, Default)]
pub(crate) struct LatencyTally {
    buckets: [u64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: u64,
    /// The last interval counted, its bucket and its length: a flush task counts the same
    /// interval many times over (one event, dispatched at one instant, written to many
    /// subscribers between two reads of its clock), and a repeat is two additions.
    last: Option<(Instant, Instant, usize, u64)>,
}

impl LatencyTally {
    /// Counts the time from `start` to `end` (none if `end` is earlier).
    pub(crate) fn observe_between(&mut self, start: Instant, end: Instant) {
        let (bucket, nanos) = match self.last {
            Some((s, e, bucket, nanos)) if s == start && e == end => (bucket, nanos),
            _ => {
                let elapsed = end.saturating_duration_since(start);
                let counted = (bucket_of(elapsed), nanos_of(elapsed));
                self.last = Some((start, end, counted.0, counted.1));
                counted
            }
        };
        self.buckets[bucket] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// How many durations were counted.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The bucket a duration falls in.
fn bucket_of(elapsed: Duration) -> usize {
    let seconds = elapsed.as_secs_f64();
    LATENCY_BOUNDS
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(LATENCY_BOUNDS.len())
}

fn nanos_of(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

impl LatencyHistogram {
    fn new() -> LatencyHistogram {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.buckets[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(nanos_of(elapsed), Ordering::Relaxed);
    }

    /// Adds what a task counted on its own ([`LatencyTally`]).
    pub(crate) fn add(&self, tally: &LatencyTally) {
        for (bucket, &count) in self.buckets.iter().zip(&tally.buckets) {
            if count > 0 {
                bucket.fetch_add(count, Ordering::Relaxed);
            }
        }
        if tally.sum_nanos > 0 {
            self.sum_nanos.fetch_add(tally.sum_nanos, Ordering::Relaxed);
        }
    }

    /// The buckets (upper bound, observations in that bucket alone: the encoder makes them
    /// cumulative), the count and the sum in seconds.
    fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            let observed = bucket.load(Ordering::Relaxed);
            count += observed;
            let bound = LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, observed));
        }
        HistogramSnapshot {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

/// Everything the hub counts. One per hub, shared (`Arc`) by whatever counts.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Subscriptions opened: `mercure_subscribers_total`.
    pub(crate) subscribers_total: AtomicU64,
    /// Updates accepted for publishing on this node (HTTP and `Hub::publish`):
    /// `mercure_updates_total`.
    pub(crate) updates_total: AtomicU64,
    /// Retained updates this node dispatched (published on any node of a cluster).
    pub(crate) updates_dispatched: AtomicU64,
    /// HTTP publishes accepted.
    publishes_accepted: AtomicU64,
    /// HTTP publishes rejected, by [`REJECTION_CLASSES`].
    publishes_rejected: [AtomicU64; REJECTION_CLASSES.len()],
    /// HTTP publishes the transport failed to store.
    publishes_failed: AtomicU64,
    /// Frames queued for subscribers (one per subscriber per update).
    pub(crate) deliveries: AtomicU64,
    /// Bytes of event streams handed to connections.
    pub(crate) bytes_written: AtomicU64,
    /// Streams ended, by [`DisconnectReason`].
    disconnected: [AtomicU64; DisconnectReason::ALL.len()],
    /// Subscriptions that asked for a replay (`Last-Event-ID`).
    pub(crate) replays: AtomicU64,
    /// Events sent from history.
    pub(crate) replayed_events: AtomicU64,
    /// Operations of the transport that failed: a publish not stored, a replay not planned or
    /// not read, a Redis connection lost.
    pub(crate) transport_errors: AtomicU64,
    /// Connections being served now.
    pub(crate) connections_open: AtomicI64,
    /// Connections refused because `max_connections` were open.
    pub(crate) connections_refused: AtomicU64,
    /// From the publish request to its acknowledgement (accepted publishes).
    pub(crate) publish_latency: LatencyHistogram,
    /// From an update's dispatch to the write that carries it (the oldest update of a write).
    pub(crate) delivery_latency: LatencyHistogram,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            subscribers_total: AtomicU64::new(0),
            updates_total: AtomicU64::new(0),
            updates_dispatched: AtomicU64::new(0),
            publishes_accepted: AtomicU64::new(0),
            publishes_rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            publishes_failed: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            disconnected: std::array::from_fn(|_| AtomicU64::new(0)),
            replays: AtomicU64::new(0),
            replayed_events: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_refused: AtomicU64::new(0),
            publish_latency: LatencyHistogram::new(),
            delivery_latency: LatencyHistogram::new(),
        }
    }

    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a publish over HTTP that ended with `outcome`, `elapsed` after it started.
    pub(crate) fn publish_ended(&self, outcome: PublishOutcome, elapsed: Duration) {
        match outcome {
            PublishOutcome::Accepted => {
                Metrics::inc(&self.publishes_accepted);
                Metrics::inc(&self.updates_total);
                self.publish_latency.observe(elapsed);
            }
            PublishOutcome::Rejected(status) => {
                let class = REJECTION_CLASSES
                    .iter()
                    .position(|(code, _)| *code == status.as_u16())
                    .unwrap_or(REJECTION_CLASSES.len() - 1);
                Metrics::inc(&self.publishes_rejected[class]);
            }
            PublishOutcome::Failed => {
                Metrics::inc(&self.publishes_failed);
                Metrics::inc(&self.transport_errors);
            }
        }
    }

    /// Counts a stream that ended for `reason`.
    pub(crate) fn disconnected(&self, reason: DisconnectReason) {
        let index = DisconnectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        Metrics::inc(&self.disconnected[index]);
    }

    /// A guard counting one open connection for as long as it lives.
    pub(crate) fn connection_opened(self: &std::sync::Arc<Self>) -> OpenConnection {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(std::sync::Arc::clone(self))
    }

    /// The counters now, with the states read by the caller.
    pub(crate) fn snapshot(&self, states: States) -> Snapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            states,
            subscribers_total: load(&self.subscribers_total),
            updates_total: load(&self.updates_total),
            updates_dispatched: load(&self.updates_dispatched),
            publishes_accepted: load(&self.publishes_accepted),
            publishes_rejected: std::array::from_fn(|i| load(&self.publishes_rejected[i])),
            publishes_failed: load(&self.publishes_failed),
            deliveries: load(&self.deliveries),
            bytes_written: load(&self.bytes_written),
            disconnected: std::array::from_fn(|i| load(&self.disconnected[i])),
            replays: load(&self.replays),
            replayed_events: load(&self.replayed_events),
            transport_errors: load(&self.transport_errors),
            connections_open: self.connections_open.load(Ordering::Relaxed).max(0) as u64,
            connections_refused: load(&self.connections_refused),
            publish_latency: self.publish_latency.snapshot(),
            delivery_latency: self.delivery_latency.snapshot(),
        }
    }
}

/// Counts a connection as open until dropped.
pub(crate) struct OpenConnection(std::sync::Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What is read at scrape time from where it lives rather than counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct States {
    /// Subscribers connected to this node.
    pub(crate) subscribers_connected: u64,
    /// Events history holds; `None` when the transport cannot say (it is then not exported).
    pub(crate) history_events: Option<u64>,
    /// `max_connections`, when set.
    pub(crate) connections_max: Option<u64>,
}

#[derive(Debug)]
struct HistogramSnapshot {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

/// The metrics at one instant, ready to encode.
#[derive(Debug)]
pub(crate) struct Snapshot {
    states: States,
    subscribers_total: u64,
    updates_total: u64,
    updates_dispatched: u64,
    publishes_accepted: u64,
    publishes_rejected: [u64; REJECTION_CLASSES.len()],
    publishes_failed: u64,
    deliveries: u64,
    bytes_written: u64,
    disconnected: [u64; DisconnectReason::ALL.len()],
    replays: u64,
    replayed_events: u64,
    transport_errors: u64,
    connections_open: u64,
    connections_refused: u64,
    publish_latency: HistogramSnapshot,
    delivery_latency: HistogramSnapshot,
}

/// The `Content-Type` of [`Snapshot::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Snapshot {
    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// A histogram as the encoder wants it.
struct HistogramMetric<'a>(&'a HistogramSnapshot);

impl EncodeMetric for HistogramMetric<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum,
            self.0.count,
            &self.0.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        // The reference hub's names.
        gauge(
            e,
            "mercure_subscribers_connected",
            "Subscribers connected to this node.",
            self.states.subscribers_connected,
        )?;
        counter(
            e,
            "mercure_subscribers",
            "Subscriptions opened on this node.",
            self.subscribers_total,
        )?;
        counter(
            e,
            "mercure_updates",
            "Updates accepted for publishing on this node.",
            self.updates_total,
        )?;
        // Herald's own.
        {
            let mut family = e.encode_descriptor(
                "herald_publishes",
                "Publishes over HTTP by result (accepted, rejected by reason, failed: not stored).",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(self.publishes_accepted)
                .encode(family.encode_family(&[("result", "accepted")])?)?;
            for ((_, reason), value) in REJECTION_CLASSES.iter().zip(self.publishes_rejected) {
                ConstCounter::new(value)
                    .encode(family.encode_family(&[("result", "rejected"), ("reason", reason)])?)?;
            }
            ConstCounter::new(self.publishes_failed)
                .encode(family.encode_family(&[("result", "failed")])?)?;
        }
        counter(
            e,
            "herald_updates_dispatched",
            "Retained updates dispatched to this node's subscribers (published on any node).",
            self.updates_dispatched,
        )?;
        counter(
            e,
            "herald_deliveries",
            "Updates queued for a subscriber (one per subscriber per update).",
            self.deliveries,
        )?;
        counter(
            e,
            "herald_bytes_written",
            "Bytes of event streams handed to subscribers' connections.",
            self.bytes_written,
        )?;
        {
            let mut family = e.encode_descriptor(
                "herald_subscribers_disconnected",
                "Subscriber streams ended, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, value) in DisconnectReason::ALL.iter().zip(self.disconnected) {
                ConstCounter::new(value)
                    .encode(family.encode_family(&[("reason", reason.as_str())])?)?;
            }
        }
        counter(
            e,
            "herald_replays",
            "Subscriptions that asked for history (Last-Event-ID).",
            self.replays,
        )?;
        counter(
            e,
            "herald_replayed_events",
            "Events sent to subscribers from history.",
            self.replayed_events,
        )?;
        if let Some(events) = self.states.history_events {
            gauge(
                e,
                "herald_history_events",
                "Events retained in history.",
                events,
            )?;
        }
        counter(
            e,
            "herald_transport_errors",
            "Transport operations that failed: publishes not stored, replays not read, \
             Redis connections lost.",
            self.transport_errors,
        )?;
        gauge(
            e,
            "herald_connections",
            "Connections served now.",
            self.connections_open,
        )?;
        if let Some(max) = self.states.connections_max {
            gauge(
                e,
                "herald_connections_max",
                "The --max-connections setting.",
                max,
            )?;
        }
        counter(
            e,
            "herald_connections_refused",
            "Connections refused with 503 because --max-connections were open.",
            self.connections_refused,
        )?;
        HistogramMetric(&self.publish_latency).encode(e.encode_descriptor(
            "herald_publish_duration_seconds",
            "From a publish request to its acknowledgement (accepted publishes).",
            None,
            MetricType::Histogram,
        )?)?;
        HistogramMetric(&self.delivery_latency).encode(e.encode_descriptor(
            "herald_delivery_duration_seconds",
            "From an update's dispatch to the write that carries it to a subscriber.",
            None,
            MetricType::Histogram,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_exact_values() {
        let metrics = Metrics::new();
        metrics.publish_ended(PublishOutcome::Accepted, Duration::from_micros(50));
        metrics.publish_ended(
            PublishOutcome::Rejected(http::StatusCode::FORBIDDEN),
            Duration::ZERO,
        );
        metrics.publish_ended(
            PublishOutcome::Rejected(http::StatusCode::IM_A_TEAPOT),
            Duration::ZERO,
        );
        metrics.disconnected(DisconnectReason::SlowReader);
        metrics.delivery_latency.observe(Duration::from_secs(60));
        let text = metrics
            .snapshot(States {
                subscribers_connected: 3,
                history_events: Some(7),
                connections_max: None,
            })
            .render();
        for line in [
            "mercure_subscribers_connected 3",
            "mercure_updates_total 1",
            "herald_publishes_total{result=\"accepted\"} 1",
            "herald_publishes_total{result=\"rejected\",reason=\"forbidden\"} 1",
            "herald_publishes_total{result=\"rejected\",reason=\"other\"} 1",
            "herald_subscribers_disconnected_total{reason=\"slow_reader\"} 1",
            "herald_history_events 7",
            "herald_publish_duration_seconds_bucket{le=\"0.0001\"} 1",
            "herald_publish_duration_seconds_count 1",
            "herald_delivery_duration_seconds_bucket{le=\"10\"} 0",
            "herald_delivery_duration_seconds_bucket{le=\"+Inf\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("herald_connections_max"));
    }
}
