//! Prometheus metrics: requests by op and result, and request latency.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyway_namebump");
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
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            dropped,
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

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
