//! One invocation's work on one SQS batch (DESIGN §4): decode → claim → send → record → respond.
//!
//! Every record ends in exactly one [`RecordOutcome`]; the batch response lists exactly the records
//! whose outcome is a failure. Ledger calls are one per step for the whole batch. A panic while
//! decoding, rendering or sending one record fails that record only.

use crate::decode::{self, Note, Rejection};
use crate::error::{BackendError, ErrorClass};
use crate::ledger::{Claim, ClaimRequest, Ledger, Outcome, Recording};
use crate::mailer::Mailer;
use crate::order::{Order, Priority};
use crate::rate::SendRateLimiter;
use crate::render;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Tuning that does not change correctness.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Sends in flight at once per invocation.
    pub concurrency: usize,
    /// No send starts when less than this remains before the invocation's deadline (capped at a
    /// third of the invocation's time): a send that outlives the invocation could be mailed but
    /// never recorded.
    pub safety_margin: Duration,
    /// Added to the remaining invocation time to form the lease, so the lease always outlives
    /// the invocation that holds it.
    pub lease_slack: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self { concurrency: 16, safety_margin: Duration::from_secs(5), lease_slack: Duration::from_secs(60) }
    }
}

/// How one record ended. Failures are retried by SQS (and reach the DLQ after `maxReceiveCount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Mailed in this invocation.
    Sent { provider_message_id: String },
    /// Already confirmed earlier: acknowledged without mailing (the idempotency).
    AlreadySent,
    /// The body breaks the message contract.
    Rejected { reason: String },
    /// The mail provider refused this mail for good.
    MailRejected { reason: String },
    /// The `order_id` was seen before with a different payload.
    Conflict { reason: String },
    /// The order is terminal in the ledger (rejected or abandoned earlier).
    Terminal { status: String, reason: String },
    /// Another invocation holds a live lease on the order.
    InFlight,
    /// A transient failure (throttling, timeout, ledger unreachable, stopped after a fatal error).
    Transient { reason: String },
    /// Not attempted in this invocation (no send slot or no time left); retried soon.
    Deferred { reason: String },
}

impl RecordOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Sent { .. } | Self::AlreadySent)
    }

    /// How a failed record should be retried; `None` for successes.
    pub fn failure_class(&self) -> Option<ErrorClass> {
        match self {
            Self::Sent { .. } | Self::AlreadySent => None,
            Self::Rejected { .. } | Self::MailRejected { .. } | Self::Conflict { .. } | Self::Terminal { .. } => {
                Some(ErrorClass::Permanent)
            }
            Self::InFlight | Self::Transient { .. } | Self::Deferred { .. } => Some(ErrorClass::Transient),
        }
    }

    /// Short machine name, used in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::AlreadySent => "duplicate",
            Self::Rejected { .. } => "rejected",
            Self::MailRejected { .. } => "mail_rejected",
            Self::Conflict { .. } => "conflict",
            Self::Terminal { .. } => "terminal",
            Self::InFlight => "in_flight",
            Self::Transient { .. } => "transient_failure",
            Self::Deferred { .. } => "deferred",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Rejected { reason }
            | Self::MailRejected { reason }
            | Self::Conflict { reason }
            | Self::Terminal { reason, .. }
            | Self::Transient { reason }
            | Self::Deferred { reason } => Some(reason),
            _ => None,
        }
    }
}

/// What happened to one record of the batch.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub message_id: Option<String>,
    pub order_id: Option<String>,
    pub priority: Option<Priority>,
    /// `ApproximateReceiveCount` from the record's attributes (1 on first delivery).
    pub receive_count: u32,
    #[serde(flatten)]
    pub outcome: RecordOutcome,
    /// Decode notes: legacy format, dropped vendor fields or details.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// The order's mail was accepted but the ledger could not record it (at-least-once case).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unrecorded_send: bool,
    /// For orders mailed now: seconds from the message entering the queue (`SentTimestamp`) to
    /// the mail being accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_confirm_seconds: Option<f64>,
    /// The order was taken over from an invocation whose lease expired; if this one mails it,
    /// the customer may get a second confirmation (counted as `possible_duplicate`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_expired_lease: bool,
    #[serde(skip)]
    enqueued_at_ms: Option<i64>,
}

/// Counters for one priority (or for records whose priority is unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub received: u64,
    pub sent: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub transient_failure: u64,
    pub deferred: u64,
    pub conflict: u64,
    pub in_flight: u64,
    pub vendor_field_invalid: u64,
    pub order_detail_invalid: u64,
    pub legacy_payload_format: u64,
    /// Mails accepted whose `sent` record could not be written (ledger down or lease lost).
    pub unrecorded_send: u64,
    /// Mails sent after taking over an expired lease: the previous holder may have mailed too.
    pub possible_duplicate: u64,
}

/// The result of one batch: per-record reports and the Lambda response.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub records: Vec<RecordReport>,
}

impl BatchReport {
    /// The `SqsBatchResponse`: every failed record that has a message id, once each.
    pub fn response(&self) -> SqsBatchResponse {
        let mut seen = std::collections::HashSet::new();
        let mut response = SqsBatchResponse::default();
        for r in &self.records {
            if let (false, Some(id)) = (r.outcome.is_success(), r.message_id.as_deref().filter(|id| !id.is_empty()))
                && seen.insert(id)
            {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.to_owned();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Failed records that have no message id: they cannot be named in the response (an empty
    /// identifier fails the whole batch in Lambda), so the caller must fail the invocation to get
    /// them retried. The rest of the batch is safe to redeliver: the ledger acknowledges what was
    /// already sent.
    pub fn unidentifiable_failures(&self) -> usize {
        self.records
            .iter()
            .filter(|r| !r.outcome.is_success() && r.message_id.as_deref().is_none_or(str::is_empty))
            .count()
    }

    /// Counters per priority; records rejected before their priority was known count under `None`.
    pub fn counters(&self) -> BTreeMap<Option<Priority>, Counters> {
        let mut map: BTreeMap<Option<Priority>, Counters> = BTreeMap::new();
        for r in &self.records {
            let c = map.entry(r.priority).or_default();
            c.received += 1;
            match &r.outcome {
                RecordOutcome::Sent { .. } => c.sent += 1,
                RecordOutcome::AlreadySent => c.duplicate += 1,
                RecordOutcome::Rejected { .. }
                | RecordOutcome::MailRejected { .. }
                | RecordOutcome::Terminal { .. } => c.rejected += 1,
                RecordOutcome::Conflict { .. } => c.conflict += 1,
                RecordOutcome::InFlight => c.in_flight += 1,
                RecordOutcome::Transient { .. } => c.transient_failure += 1,
                RecordOutcome::Deferred { .. } => c.deferred += 1,
            }
            if r.unrecorded_send {
                c.unrecorded_send += 1;
            }
            if r.after_expired_lease && matches!(r.outcome, RecordOutcome::Sent { .. }) {
                c.possible_duplicate += 1;
            }
            for n in &r.notes {
                match n {
                    Note::VendorFieldInvalid { .. } => c.vendor_field_invalid += 1,
                    Note::OrderDetailInvalid { .. } => c.order_detail_invalid += 1,
                    Note::LegacyPayloadFormat => c.legacy_payload_format += 1,
                }
            }
        }
        map
    }

    /// One-line human summary, e.g. `5 records: 2 sent, 1 duplicate, 2 rejected`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.records {
            *counts.entry(r.outcome.name()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} records: {}", self.records.len(), parts.join(", "))
    }
}

/// The handler's core, shared by every entry point (Lambda, CLI, `consume`).
pub struct Pipeline {
    ledger: Arc<dyn Ledger>,
    mailer: Arc<dyn Mailer>,
    limiter: Option<Arc<SendRateLimiter>>,
    settings: PipelineSettings,
}

/// A record after decoding.
enum Decoded {
    Order { order: Box<Order>, sha: String },
    Done(RecordOutcome),
}

impl Pipeline {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        mailer: Arc<dyn Mailer>,
        limiter: Option<Arc<SendRateLimiter>>,
        settings: PipelineSettings,
    ) -> Self {
        Self { ledger, mailer, limiter, settings }
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Processes one SQS batch that must be finished by `deadline`.
    pub async fn handle(&self, event: &SqsEvent, deadline: Instant) -> BatchReport {
        let records = &event.records;
        let mut reports: Vec<RecordReport> = records.iter().map(blank_report).collect();

        // 1. Decode, isolating panics per record.
        let mut decoded: Vec<Decoded> = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let body = record.body.as_deref();
            let result = std::panic::catch_unwind(|| body.map(decode::decode));
            let d = match result {
                Ok(None) => Decoded::Done(RecordOutcome::Rejected { reason: "record has no body".to_owned() }),
                Ok(Some(Err(rejection))) => {
                    reports[i].order_id = body.and_then(decode::salvage_order_id).map(|id| id.to_string());
                    Decoded::Done(rejected(&rejection))
                }
                Ok(Some(Ok(ok))) => {
                    reports[i].order_id = Some(ok.order.order_id.to_string());
                    reports[i].priority = Some(ok.order.priority);
                    reports[i].notes = ok.notes;
                    let sha = ok.order.payload_sha256();
                    Decoded::Order { order: Box::new(ok.order), sha }
                }
                Err(panic) => Decoded::Done(RecordOutcome::Transient {
                    reason: format!("panic while decoding: {}", panic_text(&panic)),
                }),
            };
            decoded.push(d);
        }

        // A repeated order_id shares the first record's fate, or is a conflict if its payload
        // differs. `unique` holds each first occurrence: record index, order, payload hash.
        let mut first_of: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut same_as: Vec<Option<usize>> = vec![None; records.len()];
        let mut unique: Vec<(usize, &Order, &str)> = Vec::new();
        for (i, d) in decoded.iter().enumerate() {
            let Decoded::Order { order, sha } = d else { continue };
            match first_of.get(order.order_id.as_str()) {
                None => {
                    first_of.insert(order.order_id.as_str(), (i, sha));
                    unique.push((i, order, sha));
                }
                Some(&(first, first_sha)) if first_sha == sha => same_as[i] = Some(first),
                Some(_) => {
                    reports[i].outcome = RecordOutcome::Conflict {
                        reason: "order_id repeated in this batch with a different payload".to_owned(),
                    }
                }
            }
        }

        // 2. Claim every unique valid order in one ledger call.
        let requests: Vec<ClaimRequest> = unique
            .iter()
            .map(|&(_, order, sha)| ClaimRequest {
                order_id: order.order_id.clone(),
                payload_sha256: sha.to_owned(),
                priority: order.priority,
                payload: order.canonical_json(),
            })
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let lease = remaining + self.settings.lease_slack;
        let claims = if requests.is_empty() { Ok(Vec::new()) } else { self.ledger.claim(&requests, lease).await };

        let mut to_send: Vec<(usize, &Order, uuid::Uuid)> = Vec::new();
        match claims {
            Ok(claims) if claims.len() == unique.len() => {
                for (&(i, order, _), claim) in unique.iter().zip(claims) {
                    reports[i].outcome = match claim {
                        Claim::Claimed { token, after_expired_lease } => {
                            reports[i].after_expired_lease = after_expired_lease;
                            to_send.push((i, order, token));
                            continue;
                        }
                        Claim::AlreadySent => RecordOutcome::AlreadySent,
                        Claim::InFlight => RecordOutcome::InFlight,
                        Claim::Conflict => RecordOutcome::Conflict {
                            reason: "order_id was seen before with a different payload".to_owned(),
                        },
                        Claim::Terminal { status, reason } => RecordOutcome::Terminal { status, reason },
                    };
                }
            }
            Ok(claims) => {
                let reason = format!("ledger answered {} claims for {} orders", claims.len(), unique.len());
                for &(i, _, _) in &unique {
                    reports[i].outcome = RecordOutcome::Transient { reason: reason.clone() };
                }
            }
            Err(e) => {
                tracing::error!(error = %e, orders = unique.len(), "claim failed; the batch will be retried");
                for &(i, _, _) in &unique {
                    reports[i].outcome = RecordOutcome::Transient { reason: format!("claim failed: {e}") };
                }
            }
        }

        // 3. Send: high priority first (stable within a priority), bounded concurrency.
        to_send.sort_by_key(|&(_, order, _)| order.priority);
        // The margin never takes more than a third of the time this invocation had: with a short
        // function timeout (Lambda's default is 3 s) a fixed 5 s margin would defer every order.
        let margin = self.settings.safety_margin.min(remaining / 3);
        let stop_sending_at = deadline.checked_sub(margin).unwrap_or_else(Instant::now);
        let fatal = AtomicBool::new(false);
        let sends = futures::stream::iter(to_send.iter().map(|&(i, order, token)| {
            let fatal = &fatal;
            async move {
                let attempt = AssertUnwindSafe(self.send_one(order, stop_sending_at, fatal)).catch_unwind().await;
                let outcome = attempt.unwrap_or_else(|panic| Outcome::Failed {
                    error: format!("panic while sending: {}", panic_text(&panic)),
                });
                (i, Recording { order_id: order.order_id.clone(), token, outcome })
            }
        }))
        .buffered(self.settings.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;

        // 4. Record every outcome in one ledger call, fenced by claim token.
        let (sent_records, recordings): (Vec<usize>, Vec<Recording>) = sends.into_iter().unzip();
        let applied = if recordings.is_empty() { Ok(Vec::new()) } else { self.ledger.record(&recordings).await };
        let applied: Vec<bool> = match applied {
            Ok(a) if a.len() == recordings.len() => a,
            Ok(_) | Err(_) => {
                if let Err(e) = &applied {
                    tracing::error!(error = %e, "recording outcomes failed; sent orders may be mailed again later");
                }
                vec![false; recordings.len()]
            }
        };
        for ((i, Recording { outcome, .. }), applied) in sent_records.iter().zip(&recordings).zip(applied) {
            reports[*i].outcome = match outcome {
                Outcome::Sent { message_id } => {
                    // The mail went out: acknowledge it even if the record was lost, and count
                    // it, because reconciliation or a redelivery may mail it again.
                    reports[*i].unrecorded_send = !applied;
                    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
                    reports[*i].time_to_confirm_seconds =
                        reports[*i].enqueued_at_ms.map(|t| (now_ms - t).max(0) as f64 / 1000.0);
                    RecordOutcome::Sent { provider_message_id: message_id.clone() }
                }
                Outcome::Failed { error } => RecordOutcome::Transient { reason: error.clone() },
                Outcome::Rejected { reason } => RecordOutcome::MailRejected { reason: reason.clone() },
                Outcome::Released { reason } => RecordOutcome::Deferred { reason: reason.clone() },
            };
        }

        // Duplicates inside the batch take their first record's outcome; decode results last.
        for (i, d) in decoded.iter().enumerate() {
            if let Decoded::Done(outcome) = d {
                reports[i].outcome = outcome.clone();
            }
        }
        for i in 0..reports.len() {
            if let Some(first) = same_as[i] {
                reports[i].outcome = match &reports[first].outcome {
                    RecordOutcome::Sent { .. } => RecordOutcome::AlreadySent,
                    other => other.clone(),
                };
            }
        }

        for r in &reports {
            log_record(r);
        }
        BatchReport { records: reports }
    }

    /// Renders and sends one claimed order, unless the invocation must stop sending.
    async fn send_one(&self, order: &Order, stop_sending_at: Instant, fatal: &AtomicBool) -> Outcome {
        if fatal.load(Ordering::Relaxed) {
            return Outcome::Released { reason: "not sent: sending stopped after a fatal error".to_owned() };
        }
        if Instant::now() >= stop_sending_at {
            return Outcome::Released { reason: "not sent: too little time left in this invocation".to_owned() };
        }
        if let Some(limiter) = &self.limiter
            && !limiter.acquire(order.priority, stop_sending_at).await
        {
            return Outcome::Released { reason: "not sent: no send slot before the deadline".to_owned() };
        }
        if fatal.load(Ordering::Relaxed) {
            return Outcome::Released { reason: "not sent: sending stopped after a fatal error".to_owned() };
        }
        let mail = match render::render(order) {
            Ok(mail) => mail,
            Err(e) => return Outcome::Failed { error: e.to_string() },
        };
        match self.mailer.send(order, &mail).await {
            Ok(message_id) => Outcome::Sent { message_id },
            Err(BackendError { class: ErrorClass::Transient, message }) => Outcome::Failed { error: message },
            Err(BackendError { class: ErrorClass::Permanent, message }) => Outcome::Rejected { reason: message },
            Err(BackendError { class: ErrorClass::Fatal, message }) => {
                if !fatal.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %message, "fatal mailer error: no more sends in this invocation");
                }
                Outcome::Failed { error: message }
            }
        }
    }
}

fn blank_report(record: &SqsMessage) -> RecordReport {
    RecordReport {
        message_id: record.message_id.clone(),
        order_id: None,
        priority: None,
        receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1),
        outcome: RecordOutcome::Transient { reason: "not processed".to_owned() },
        notes: Vec::new(),
        unrecorded_send: false,
        time_to_confirm_seconds: None,
        after_expired_lease: false,
        enqueued_at_ms: record.attributes.get("SentTimestamp").and_then(|v| v.parse().ok()),
    }
}

fn rejected(rejection: &Rejection) -> RecordOutcome {
    RecordOutcome::Rejected { reason: rejection.to_string() }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// One log line per record: ids, priority and outcome; never the address or the name.
fn log_record(r: &RecordReport) {
    let message_id = r.message_id.as_deref().unwrap_or("-");
    let order_id = r.order_id.as_deref().unwrap_or("-");
    let priority = r.priority.map_or("-", Priority::as_str);
    let outcome = r.outcome.name();
    let reason = r.outcome.reason().unwrap_or("");
    let notes = r.notes.iter().map(Note::to_string).collect::<Vec<_>>().join("; ");
    let receive_count = r.receive_count;
    if r.unrecorded_send {
        tracing::error!(
            message_id,
            order_id,
            priority,
            outcome,
            "mail sent but not recorded in the ledger; it may be mailed again"
        );
    }
    if let RecordOutcome::Sent { provider_message_id } = &r.outcome {
        tracing::info!(
            message_id,
            order_id,
            priority,
            outcome,
            receive_count,
            notes,
            provider_message_id,
            "record done"
        );
    } else if r.outcome.is_success() {
        tracing::info!(message_id, order_id, priority, outcome, receive_count, notes, "record done");
    } else {
        tracing::warn!(message_id, order_id, priority, outcome, receive_count, reason, notes, "record failed");
    }
}
