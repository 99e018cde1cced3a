//! CloudWatch metrics as Embedded Metric Format log lines (no extra service: CloudWatch Logs
//! extracts them). Namespace `POWERTOOLS_METRICS_NAMESPACE` (default `OrderConfirmation`); every
//! metric carries the dimension `service` (`POWERTOOLS_SERVICE_NAME`, default
//! `order-confirmation`), per-order counts also `priority`, as Powertools for AWS Lambda does
//! (docs/design.md, "Logs and metrics"). Written with `metrics_cloudwatch_embedded`; flushed after
//! every batch and every reconciliation. The `ColdStart` metric is its own document, written once
//! per execution environment ([`cold_start`]).

use crate::ledger::Unconfirmed;
use crate::order::Priority;
use crate::pipeline::BatchReport;
use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;
use std::sync::OnceLock;

use crate::config::MetricNames;

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

/// Every metric this service publishes, with its unit. The template's alarms and dashboard use
/// these names.
pub const COUNTERS: &[&str] = &[
    "Received",
    "Sent",
    "Duplicate",
    "Rejected",
    "TransientFailure",
    "Deferred",
    "Conflict",
    "InFlight",
    "VendorFieldInvalid",
    "OrderDetailInvalid",
    "LegacyPayloadFormat",
    "UnrecordedSend",
    "PossibleDuplicate",
    "ReconcileResent",
    "ReconcileAbandoned",
    "LedgerFailure",
];

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
                metrics::describe_histogram!("TimeToConfirm", Unit::Seconds, "");
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

/// Records one batch's counters (per priority) and time-to-confirm samples.
pub fn record_batch(report: &BatchReport) {
    if collector().is_none() {
        return;
    }
    for (priority, c) in report.counters() {
        let p = priority.map_or("unknown", Priority::as_str);
        let values = [
            ("Received", c.received),
            ("Sent", c.sent),
            ("Duplicate", c.duplicate),
            ("Rejected", c.rejected),
            ("TransientFailure", c.transient_failure),
            ("Deferred", c.deferred),
            ("Conflict", c.conflict),
            ("InFlight", c.in_flight),
            ("VendorFieldInvalid", c.vendor_field_invalid),
            ("OrderDetailInvalid", c.order_detail_invalid),
            ("LegacyPayloadFormat", c.legacy_payload_format),
            ("UnrecordedSend", c.unrecorded_send),
            ("PossibleDuplicate", c.possible_duplicate),
        ];
        for (name, v) in values {
            if v > 0 {
                metrics::counter!(name, "priority" => p).increment(v);
            }
        }
    }
    for r in &report.records {
        if let (Some(p), Some(ttc)) = (r.priority, r.time_to_confirm_seconds) {
            metrics::histogram!("TimeToConfirm", "priority" => p.as_str()).record(ttc);
        }
    }
}

/// Records a reconciliation's results: the alarm gauges and what it did.
pub fn record_reconcile(unconfirmed: Unconfirmed, resent: u64, abandoned: u64) {
    if collector().is_none() {
        return;
    }
    metrics::gauge!("UnconfirmedOrders").set(unconfirmed.count as f64);
    metrics::gauge!("OldestUnconfirmedSeconds").set(unconfirmed.oldest_seconds);
    metrics::counter!("ReconcileResent").increment(resent);
    metrics::counter!("ReconcileAbandoned").increment(abandoned);
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

/// One ledger call (a Data API request) that failed after the SDK's own retries: counted without
/// dimension for LedgerFailuresAlarm, flushed with the batch or run it belonged to.
pub fn record_ledger_failure() {
    if collector().is_none() {
        return;
    }
    metrics::counter!("LedgerFailure").increment(1);
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
                "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
            }],
        },
        "service": names.service,
        "function_name": function_name,
        "ColdStart": 1,
    })
    .to_string()
}

/// Writes the `ColdStart` metric to `sink`, for the function named `function_name`.
pub fn cold_start(function_name: &str, sink: Sink) {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let line = cold_start_document(names(), function_name, u64::try_from(now_ms).unwrap_or(u64::MAX));
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
