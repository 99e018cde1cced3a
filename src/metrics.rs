//! CloudWatch metrics as Embedded Metric Format log lines (no extra service: CloudWatch Logs
//! extracts them). Namespace `OrderConfirmation`, dimension `priority` for per-order counts.
//! Written with `metrics_cloudwatch_embedded`; flushed after every batch and every
//! reconciliation.

use crate::ledger::Unconfirmed;
use crate::order::Priority;
use crate::pipeline::BatchReport;
use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;
use std::sync::OnceLock;

pub const NAMESPACE: &str = "OrderConfirmation";

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
    "SentEarlier",
    "ReconcileResent",
    "ReconcileAbandoned",
    "LedgerFailure",
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

fn collector() -> Option<&'static Collector> {
    static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();
    *COLLECTOR.get_or_init(|| {
        let c = metrics_cloudwatch_embedded::Builder::new().cloudwatch_namespace(NAMESPACE).init();
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
            ("SentEarlier", c.sent_earlier),
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
