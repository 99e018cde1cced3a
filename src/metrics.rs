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

/// Every counter this service publishes (unit Count): per record, with the dimension `priority`,
/// from `Received` to `PossibleDuplicate` (an outcome's metric is its name in CamelCase, see
/// [`crate::pipeline::RecordOutcome::metric`]); per reconciliation or ledger call, without it,
/// the rest. The template's alarms and dashboard, and the docs, use these names; they are the one
/// list (tests/docs.rs and tests/template.rs read it from here).
pub const COUNTERS: &[&str] = &[
    "Received",
    "Sent",
    "AlreadySent",
    "SentEarlier",
    "Invalid",
    "Rejected",
    "Conflict",
    "Terminal",
    "InFlight",
    "TransientFailure",
    "Deferred",
    "VendorFieldInvalid",
    "OrderDetailInvalid",
    "LegacyPayloadFormat",
    "UnrecordedSend",
    "PossibleDuplicate",
    "ReconcileResent",
    "ReconcileAbandoned",
    "LedgerFailure",
    // A record failed on its last allowed receive, on its way to the DLQ: dimension `queue` (the
    // source queue's name) instead of `priority` (crate::backoff::failed_on_last_receive).
    "FailedOnLastReceive",
    // SES's events about sent mail (crate::delivery::metric_name): per priority.
    "SendEvent",
    "Delivered",
    "DeliveryDelayed",
    "SoftBounced",
    "Bounced",
    "Complained",
    "RejectedBySes",
    "RenderingFailed",
    // Events the ledger could not place, and bodies that were not SES events: no dimension.
    "DeliveryEventUnknown",
    "DeliveryEventInvalid",
];

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

/// Records one batch's counters (per priority) and time-to-confirm samples.
pub fn record_batch(report: &BatchReport) {
    if collector().is_none() {
        return;
    }
    for (priority, c) in report.counters() {
        let p = priority.map_or("unknown", Priority::as_str);
        for (name, v) in c.iter() {
            metrics::counter!(name, "priority" => p).increment(v);
        }
    }
    for r in &report.records {
        if let (Some(p), Some(ttc)) = (r.priority, r.time_to_confirm_seconds) {
            metrics::histogram!("TimeToConfirm", "priority" => p.as_str()).record(ttc);
        }
    }
}

/// Records one SES events batch: each applied event under its delivery state's metric (dimension
/// priority), unknown and invalid events without dimension.
pub fn record_delivery_events(report: &crate::delivery::EventBatchReport) {
    if collector().is_none() {
        return;
    }
    for ((name, priority), n) in report.counters() {
        match priority {
            Some(p) => metrics::counter!(name, "priority" => p.as_str()).increment(n),
            None => metrics::counter!(name).increment(n),
        }
    }
}

/// Records failed on their last allowed receive, per source queue (dimension `queue`): each is on
/// its way to that queue's DLQ. Flushed with the batch.
pub fn record_failed_on_last_receive(per_queue: &std::collections::BTreeMap<String, u64>) {
    if per_queue.is_empty() || collector().is_none() {
        return;
    }
    for (queue, n) in per_queue {
        metrics::counter!("FailedOnLastReceive", "queue" => queue.clone()).increment(*n);
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
    use crate::pipeline::RecordOutcome;
    use std::time::Duration;

    /// One of each outcome; the match makes a new variant fail to compile here until it is added.
    fn every_outcome() -> Vec<RecordOutcome> {
        let reason = || "r".to_owned();
        let all = vec![
            RecordOutcome::Sent { provider_message_id: "m".into() },
            RecordOutcome::AlreadySent,
            RecordOutcome::SentEarlier { provider_message_id: "m".into() },
            RecordOutcome::Invalid { reason: reason() },
            RecordOutcome::Rejected { reason: reason() },
            RecordOutcome::Conflict { reason: reason() },
            RecordOutcome::Terminal { status: crate::ledger::Status::Abandoned, reason: reason() },
            RecordOutcome::InFlight { lease_remaining: Duration::from_secs(1) },
            RecordOutcome::TransientFailure { reason: reason() },
            RecordOutcome::Deferred { reason: reason(), requeued: false },
        ];
        for o in &all {
            match o {
                RecordOutcome::Sent { .. }
                | RecordOutcome::AlreadySent
                | RecordOutcome::SentEarlier { .. }
                | RecordOutcome::Invalid { .. }
                | RecordOutcome::Rejected { .. }
                | RecordOutcome::Conflict { .. }
                | RecordOutcome::Terminal { .. }
                | RecordOutcome::InFlight { .. }
                | RecordOutcome::TransientFailure { .. }
                | RecordOutcome::Deferred { .. } => {}
            }
        }
        all
    }

    #[test]
    fn each_outcome_has_one_name_in_serde_logs_and_its_metric() {
        let names: Vec<&str> = every_outcome().iter().map(RecordOutcome::name).collect();
        assert_eq!(names, crate::pipeline::OUTCOME_NAMES);
        for o in every_outcome() {
            let json = serde_json::to_value(&o).unwrap();
            assert_eq!(json["outcome"], o.name(), "serde and name() differ for {o:?}");
            let camel: String = o.name().split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
            assert_eq!(o.metric(), camel, "the metric is the name in CamelCase");
            assert!(COUNTERS.contains(&o.metric()), "{} is not in COUNTERS", o.metric());
        }
    }

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
            assert!(COUNTERS.contains(&note.metric()), "{}", note.metric());
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
