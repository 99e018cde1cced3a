//! CloudWatch metrics as Embedded Metric Format log lines (no extra service: CloudWatch Logs
//! extracts them). Namespace `POWERTOOLS_METRICS_NAMESPACE` (default `OrderConfirmation`); every
//! metric carries the dimension `service` (`POWERTOOLS_SERVICE_NAME`, default
//! `order-confirmation`), per-order counts also `priority`, as Powertools for AWS Lambda does
//! (docs/design.md, "Logs and metrics"). Written with `metrics_cloudwatch_embedded`; flushed after
//! every batch and every reconciliation. The `ColdStart` metric is its own document, written once
//! per execution environment ([`cold_start`]).

use crate::order::Priority;
use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;
use std::sync::OnceLock;

/// The names the metrics are published under: the namespace and the value of the `service`
/// dimension every metric carries (Powertools' conventions, docs/design.md "Logs and metrics").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricNames {
    pub namespace: String,
    pub service: String,
}

impl Default for MetricNames {
    fn default() -> Self {
        Self {
            namespace: crate::defaults::POWERTOOLS_METRICS_NAMESPACE.to_owned(),
            service: crate::defaults::POWERTOOLS_SERVICE_NAME.to_owned(),
        }
    }
}

/// The names the collector is built with; set once from the validated configuration before the
/// first metric ([`configure`]), else the defaults.
static NAMES: OnceLock<MetricNames> = OnceLock::new();

/// Publishes every later metric under these names. Call it before the first metric is recorded:
/// the collector is built once, with the names set by then.
pub fn configure(names: &MetricNames) {
    let _ = NAMES.set(names.clone());
}

fn names() -> &'static MetricNames {
    NAMES.get_or_init(MetricNames::default)
}

/// Every counter this service publishes (unit Count), by name: [`crate::batch::Counter`]'s.
pub use crate::batch::COUNTERS;

/// Histograms (unit Seconds): `TimeToConfirm`, from the order first entering a queue (the first
/// message's `SentTimestamp`) to SES accepting its mail, per priority.
pub const HISTOGRAMS: &[&str] = &["TimeToConfirm"];

/// Gauges set by each reconciliation (the `service` dimension only).
pub const GAUGES: &[&str] = &["UnconfirmedOrders", "OldestUnconfirmedSeconds"];

/// Written once per execution environment in a document of its own ([`cold_start`]).
pub const COLD_START: &str = "ColdStart";

/// Every metric name this service publishes.
pub fn published() -> impl Iterator<Item = &'static str> {
    COUNTERS.iter().chain(HISTOGRAMS).chain(GAUGES).copied().chain([COLD_START])
}

fn collector() -> Option<&'static Collector> {
    static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();
    *COLLECTOR.get_or_init(|| {
        let names = names();
        let c = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(names.namespace.clone())
            .with_dimension("service", names.service.clone())
            .init();
        match c {
            Ok(c) => {
                for name in COUNTERS {
                    metrics::describe_counter!(*name, Unit::Count, "");
                }
                for name in HISTOGRAMS {
                    metrics::describe_histogram!(*name, Unit::Seconds, "");
                }
                metrics::describe_gauge!("UnconfirmedOrders", Unit::Count, "");
                metrics::describe_gauge!("OldestUnconfirmedSeconds", Unit::Seconds, "");
                Some(c)
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics disabled: the EMF recorder could not be installed");
                None
            }
        }
    })
}

/// Adds `n` to the counter `name` (one of [`COUNTERS`]). `priority` is the value of the
/// `priority` dimension (`unknown` for a record whose priority was never read); `None` publishes
/// the count without it. The sink takes counts; what they count is decided by whoever finishes the
/// batch or run.
pub fn count(counter: crate::batch::Counter, priority: Option<&'static str>, n: u64) {
    let name = counter.name();
    if collector().is_none() {
        return;
    }
    match priority {
        Some(p) => metrics::counter!(name, "priority" => p).increment(n),
        None => metrics::counter!(name).increment(n),
    }
}

/// One `TimeToConfirm` sample, in seconds, for an order of `priority`.
pub fn time_to_confirm(priority: Priority, seconds: f64) {
    if collector().is_none() {
        return;
    }
    metrics::histogram!("TimeToConfirm", "priority" => priority.as_str()).record(seconds);
}

/// Records failed on their last allowed receive, per source queue (dimension `queue`): each is on
/// its way to that queue's DLQ. Flushed with the batch.
pub fn record_failed_on_last_receive(per_queue: &std::collections::BTreeMap<String, u64>) {
    if per_queue.is_empty() || collector().is_none() {
        return;
    }
    for (queue, n) in per_queue {
        metrics::counter!(crate::batch::Counter::FailedOnLastReceive.name(), "queue" => queue.clone()).increment(*n);
    }
}

/// The alarm's gauges after a reconciliation: how many orders are unconfirmed past their grace,
/// and the age of the oldest, in seconds.
pub fn unconfirmed(count: u64, oldest_seconds: f64) {
    if collector().is_none() {
        return;
    }
    metrics::gauge!("UnconfirmedOrders").set(count as f64);
    metrics::gauge!("OldestUnconfirmedSeconds").set(oldest_seconds);
}

/// Where EMF lines go: stdout inside Lambda (CloudWatch Logs reads it), stderr for the command
/// line, whose stdout is the command's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Writes the EMF documents accumulated since the last flush.
pub fn flush(sink: Sink) {
    let Some(c) = collector() else { return };
    let result = match sink {
        Sink::Stdout => c.flush(std::io::stdout().lock()),
        Sink::Stderr => c.flush(std::io::stderr().lock()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "writing metrics failed");
    }
}

/// The `ColdStart` metric of an execution environment's first invocation, in Powertools' shape:
/// a document of its own with the dimensions `service` and `function_name` (the per-batch
/// documents have no function name, so it cannot ride along with them).
pub fn cold_start_document(names: &MetricNames, function_name: &str, timestamp_ms: u64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": names.namespace,
                "Dimensions": [["service", "function_name"]],
                "Metrics": [{"Name": COLD_START, "Unit": "Count"}],
            }],
        },
        "service": names.service,
        "function_name": function_name,
        COLD_START: 1,
    })
    .to_string()
}

/// Writes the `ColdStart` metric to `sink`, for the function named `function_name`.
pub fn cold_start(function_name: &str, sink: Sink) {
    let now_ms = u64::try_from(crate::clock::unix_ms_now()).unwrap_or(0);
    let line = cold_start_document(names(), function_name, now_ms);
    use std::io::Write;
    let result = match sink {
        Sink::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
        Sink::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "writing the ColdStart metric failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_name_is_listed_once() {
        let names: Vec<&str> = published().collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for note in [
            crate::decode::Note::LegacyPayloadFormat,
            crate::decode::Note::VendorFieldInvalid { field: "f", rule: String::new() },
            crate::decode::Note::OrderDetailInvalid { field: "f", rule: String::new() },
        ] {
            assert!(COUNTERS.contains(&crate::batch::Counter::of_note(&note).name()), "{note}");
        }
    }

    #[test]
    fn the_cold_start_metric_is_its_own_document_with_service_and_function_name() {
        let names = MetricNames { namespace: "Shop/Orders".into(), service: "shop-confirmations".into() };
        let doc: serde_json::Value =
            serde_json::from_str(&cold_start_document(&names, "stack-order-confirmation", 1_700_000_000_000)).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shop/Orders");
        assert_eq!(directive["Dimensions"], serde_json::json!([["service", "function_name"]]));
        assert_eq!(directive["Metrics"], serde_json::json!([{"Name": "ColdStart", "Unit": "Count"}]));
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        assert_eq!(
            (&doc["service"], &doc["function_name"], &doc["ColdStart"]),
            (&"shop-confirmations".into(), &"stack-order-confirmation".into(), &1.into())
        );
    }
}
