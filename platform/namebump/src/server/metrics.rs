//! Prometheus metrics: requests by op and result, request latency, inputs
//! dropped, key agreements and open TCP connections.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The server's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabel, Histogram>,
    dropped: Family<ReasonLabel, Counter>,
    key_agreements: Counter,
    tcp_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_store(None)
    }

    /// Request metrics, and the store's database metrics if it has any.
    pub fn with_store(db: Option<&crate::store::DbMetrics>) -> Self {
        let mut registry = Registry::with_prefix("keyway_namebump");
        if let Some(db) = db {
            db.register(&mut registry);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            // 50 µs to ~6.5 s.
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by op and result",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its reply",
            latency.clone(),
        );
        registry.register(
            "dropped",
            "Inputs dropped without a reply, by reason",
            dropped.clone(),
        );
        let key_agreements = Counter::default();
        registry.register(
            "key_agreements",
            "Requests decrypted: each costs an ECDH (a scalar multiplication)",
            key_agreements.clone(),
        );
        let tcp_connections = Gauge::default();
        registry.register(
            "tcp_connections",
            "TCP connections open",
            tcp_connections.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            dropped,
            key_agreements,
            tcp_connections,
        }
    }

    pub(crate) fn request(&self, op: &'static str, result: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { op, result })
            .inc();
        self.latency
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn dropped(&self, reason: &'static str) {
        self.dropped.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn key_agreement(&self) {
        self.key_agreements.inc();
    }

    /// Requests decrypted so far (each an ECDH).
    pub fn key_agreements(&self) -> u64 {
        self.key_agreements.get()
    }

    /// A TCP connection task started (+1) or ended (-1).
    pub(crate) fn tcp_connection(&self, change: i64) {
        self.tcp_connections.inc_by(change);
    }

    /// Inputs dropped for `reason` so far (see the `dropped` metric).
    pub fn dropped_count(&self, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&ReasonLabel { reason }).get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
