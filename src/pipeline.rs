//! One invocation's work on one SQS batch, in stages: decode → claim → send and record in waves →
//! respond. Each record carries one typed fate ([`RecordOutcome`]) from stage to stage; the batch
//! response lists exactly the records that must come back.
//!
//! Containment (see docs/design.md, "Containment"):
//! - **Time budget.** Every step's time comes from the invocation's deadline ([`Budget`]): no send
//!   starts unless its worst case and the record step still fit; a send still running when only
//!   the record step's time is left is abandoned (its order stays leased, so whoever takes it over
//!   counts a possible duplicate); ledger calls are cut off where the batch must be answered.
//! - **Recording in waves.** Outcomes are recorded while the batch is still sending, one ledger call
//!   per wave (every `concurrency` finished sends or every `wave_interval`, whichever comes first),
//!   so a crash or timeout re-mails at most the wave being recorded and the one filling. A batch
//!   that finishes within one wave costs two ledger calls: one claim, one record.
//! - **Record retries.** A failed record call is retried with backoff for as long as the budget
//!   allows; the ledger's record is idempotent, so a retry of a call that did commit counts as
//!   applied.
//! - **Panics** while decoding, rendering or sending one record fail that record only.

use crate::decode::{self, Note, Rejection};
use crate::error::{BackendError, ErrorClass};
use crate::ledger::{Claim, ClaimRequest, Ledger, Outcome, Recording, Status, Takeover};
use crate::mailer::Mailer;
use crate::order::{Canonical, Order, Priority};
use crate::rate::SendGate;
use crate::render;
use crate::ses_event::MailTags;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The message attribute that carries, across deferrals, when the order first entered a queue
/// (Unix milliseconds), so time-to-confirm counts from the first arrival.
pub const FIRST_SENT_ATTRIBUTE: &str = "OrderConfirmationFirstSent";
/// The message attribute that counts how many times the order was deferred and re-enqueued.
pub const DEFERRALS_ATTRIBUTE: &str = "OrderConfirmationDeferrals";

/// How often a takeover looks for the previous holder's Send event while it waits.
const SEND_EVENT_POLL: Duration = Duration::from_millis(500);

/// Tuning that does not change correctness.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Sends in flight at once per invocation; also the size of a recording wave.
    pub concurrency: usize,
    /// Time kept before the deadline for the record step (capped at a third of the invocation's
    /// time, so a short function timeout still sends).
    pub safety_margin: Duration,
    /// Added to the remaining invocation time to form the lease, so the lease always outlives
    /// the invocation that holds it.
    pub lease_slack: Duration,
    /// The longest one send may take, retries included (the SES client's operation timeout; capped
    /// at a third of the invocation's time). No send starts unless this and the record step fit.
    pub send_timeout: Duration,
    /// A wave is recorded at the latest this long after its first send finished.
    pub wave_interval: Duration,
    /// How long after SES accepts a mail its Send event is expected in the ledger: a takeover
    /// waits until this long has passed since the previous holder's last possible send before
    /// mailing the order again (docs/design.md, "SES as the second witness").
    pub send_event_wait: Duration,
    /// What the mail takes from the configuration (the status link).
    pub mail: render::MailSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        use crate::config::defaults;
        Self {
            concurrency: defaults::SEND_CONCURRENCY,
            safety_margin: Duration::from_secs(defaults::SAFETY_MARGIN_SECONDS),
            lease_slack: Duration::from_secs(defaults::LEASE_SLACK_SECONDS),
            send_timeout: Duration::from_secs(defaults::SEND_TIMEOUT_SECONDS),
            wave_interval: Duration::from_secs(1),
            send_event_wait: Duration::from_secs(30),
            mail: render::MailSettings::default(),
        }
    }
}

/// The invocation's deadline, cut into the points each step must respect.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    /// Ledger calls (claim, record and its retries) end here: the rest is for answering the batch.
    pub ledger_until: Instant,
    /// A send still running here is abandoned: the record step needs the rest.
    pub send_cutoff: Instant,
    /// No send starts after this: its worst case and the record step would not fit.
    pub stop_starting_at: Instant,
}

impl Budget {
    pub fn new(deadline: Instant, settings: &PipelineSettings) -> Self {
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let answer = (remaining / 10).min(Duration::from_secs(1));
        let record = settings.safety_margin.min(remaining / 3);
        let send = settings.send_timeout.min(remaining / 3);
        let before = |t: Instant, d: Duration| t.checked_sub(d).unwrap_or(now).max(now);
        let send_cutoff = before(deadline, record);
        Self {
            deadline,
            ledger_until: before(deadline, answer),
            send_cutoff,
            stop_starting_at: before(send_cutoff, send),
        }
    }
}

/// How one record ended. Failures are retried by SQS (and reach the DLQ after `maxReceiveCount`).
/// Each outcome has one name, the same in the batch summary, the logs' `outcome`, `retry`'s
/// output (the serde tag) and, in CamelCase, the metric that counts it (docs/design.md,
/// "Vocabulary").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// `sent`: mailed in this invocation (SES accepted it).
    Sent { provider_message_id: String },
    /// `already_sent`: confirmed earlier; acknowledged without mailing (the idempotency).
    AlreadySent,
    /// `sent_earlier`: not mailed: SES's Send event shows it accepted an earlier claim's mail of
    /// this order (a holder that died before recording it), so that mail is recorded as the
    /// order's: the duplicate a takeover would have sent, prevented.
    SentEarlier { provider_message_id: String },
    /// `invalid`: the message breaks the message contract; it never reaches the ledger or SES.
    Invalid { reason: String },
    /// `rejected`: SES refused this mail for good; the ledger keeps the order as `rejected`.
    Rejected { reason: String },
    /// `conflict`: the `order_id` was seen before with a different payload.
    Conflict { reason: String },
    /// `terminal`: the ledger already holds the order as `rejected` or `abandoned`.
    Terminal { status: Status, reason: String },
    /// `in_flight`: another invocation holds a live lease on the order for this long yet; the
    /// record comes back right after it ends.
    InFlight {
        #[serde(rename = "lease_remaining_seconds", serialize_with = "as_seconds")]
        lease_remaining: Duration,
    },
    /// `transient_failure`: timeout, 5xx, ledger unreachable, stopped after a fatal error.
    TransientFailure { reason: String },
    /// `deferred`: not attempted in this invocation (no send slot, SES at its rate, no time
    /// left): not a failure. `requeued`: a delayed copy went back to the queue and this delivery
    /// is acknowledged, so the deferral spends no receive.
    Deferred {
        reason: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        requeued: bool,
    },
}

/// Every outcome's name ([`RecordOutcome::name`]), for checks on what the docs and queries filter on.
pub const OUTCOME_NAMES: [&str; 10] = [
    "sent",
    "already_sent",
    "sent_earlier",
    "invalid",
    "rejected",
    "conflict",
    "terminal",
    "in_flight",
    "transient_failure",
    "deferred",
];

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RecordOutcome {
    /// Sent now or earlier.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Sent { .. } | Self::AlreadySent | Self::SentEarlier { .. })
    }

    /// The delivery is done with: a success, or a deferral whose copy is back in the queue.
    /// Everything else is listed in `batchItemFailures`.
    pub fn is_acknowledged(&self) -> bool {
        self.is_success() || matches!(self, Self::Deferred { requeued: true, .. })
    }

    /// How a failed record should be retried; `None` for acknowledged ones.
    pub fn failure_class(&self) -> Option<ErrorClass> {
        match self {
            _ if self.is_acknowledged() => None,
            Self::Invalid { .. } | Self::Rejected { .. } | Self::Conflict { .. } | Self::Terminal { .. } => {
                Some(ErrorClass::Permanent)
            }
            _ => Some(ErrorClass::Transient),
        }
    }

    /// The outcome's name: the serde tag, the logs' `outcome`, the summary's word.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::AlreadySent => "already_sent",
            Self::SentEarlier { .. } => "sent_earlier",
            Self::Invalid { .. } => "invalid",
            Self::Rejected { .. } => "rejected",
            Self::Conflict { .. } => "conflict",
            Self::Terminal { .. } => "terminal",
            Self::InFlight { .. } => "in_flight",
            Self::TransientFailure { .. } => "transient_failure",
            Self::Deferred { .. } => "deferred",
        }
    }

    /// The metric that counts this outcome: the name in CamelCase.
    pub fn metric(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "Sent",
            Self::AlreadySent => "AlreadySent",
            Self::SentEarlier { .. } => "SentEarlier",
            Self::Invalid { .. } => "Invalid",
            Self::Rejected { .. } => "Rejected",
            Self::Conflict { .. } => "Conflict",
            Self::Terminal { .. } => "Terminal",
            Self::InFlight { .. } => "InFlight",
            Self::TransientFailure { .. } => "TransientFailure",
            Self::Deferred { .. } => "Deferred",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Invalid { reason }
            | Self::Rejected { reason }
            | Self::Conflict { reason }
            | Self::Terminal { reason, .. }
            | Self::TransientFailure { reason }
            | Self::Deferred { reason, .. } => Some(reason),
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
    /// For orders mailed now: seconds from the order first entering a queue to the mail being
    /// accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_confirm_seconds: Option<f64>,
    /// The order was taken over from an invocation whose lease expired; if this one mails it,
    /// the customer may get a second confirmation (counted as `possible_duplicate`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_expired_lease: bool,
    /// When the order first entered a queue (Unix ms), if the record says.
    #[serde(skip)]
    pub first_sent_ms: Option<i64>,
}

/// Counts for one priority (or for records whose priority is unknown), by metric name: each
/// record counts once under `Received` and once under its outcome's metric, plus once per note
/// and under `UnrecordedSend` / `PossibleDuplicate` when those apply. Every name is one of
/// [`crate::metrics::COUNTERS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters(BTreeMap<&'static str, u64>);

impl Counters {
    /// The count under `metric`, 0 when nothing counted there.
    pub fn get(&self, metric: &str) -> u64 {
        self.0.get(metric).copied().unwrap_or(0)
    }

    /// The metrics counted at least once, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    fn add(&mut self, metric: &'static str) {
        *self.0.entry(metric).or_default() += 1;
    }
}

/// The result of one batch: per-record reports and the Lambda response.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub records: Vec<RecordReport>,
}

/// The `SqsBatchResponse` for a batch whose failed records have these message ids: each non-empty
/// id once. A failed record without one cannot be named (an empty identifier fails the whole batch
/// in Lambda); its caller fails the invocation instead.
pub fn failures_response<'a>(failed_message_ids: impl IntoIterator<Item = Option<&'a str>>) -> SqsBatchResponse {
    let mut seen = std::collections::HashSet::new();
    let mut response = SqsBatchResponse::default();
    for id in failed_message_ids.into_iter().flatten().filter(|id| !id.is_empty()) {
        if seen.insert(id) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

impl BatchReport {
    /// The `SqsBatchResponse`: every failed record that has a message id, once each.
    pub fn response(&self) -> SqsBatchResponse {
        failures_response(self.records.iter().filter(|r| !r.outcome.is_acknowledged()).map(|r| r.message_id.as_deref()))
    }

    /// Failed records that have no message id: they cannot be named in the response (an empty
    /// identifier fails the whole batch in Lambda), so the caller must fail the invocation to get
    /// them retried. The rest of the batch is safe to redeliver: the ledger acknowledges what was
    /// already sent.
    pub fn unidentifiable_failures(&self) -> usize {
        self.records
            .iter()
            .filter(|r| !r.outcome.is_acknowledged() && r.message_id.as_deref().is_none_or(str::is_empty))
            .count()
    }

    /// Counters per priority; invalid records whose priority could not be read count under `None`.
    pub fn counters(&self) -> BTreeMap<Option<Priority>, Counters> {
        let mut map: BTreeMap<Option<Priority>, Counters> = BTreeMap::new();
        for r in &self.records {
            let c = map.entry(r.priority).or_default();
            c.add("Received");
            c.add(r.outcome.metric());
            if r.unrecorded_send {
                c.add("UnrecordedSend");
            }
            if r.after_expired_lease && matches!(r.outcome, RecordOutcome::Sent { .. }) {
                c.add("PossibleDuplicate");
            }
            for n in &r.notes {
                c.add(n.metric());
            }
        }
        map
    }

    /// One-line human summary in the outcomes' names, e.g. `5 records: 1 already_sent, 2 invalid, 2 sent`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.records {
            *counts.entry(r.outcome.name()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} records: {}", self.records.len(), parts.join(", "))
    }
}

/// The handler's core, shared by every entry point (Lambda, CLI, `consume`, reconcile).
pub struct Pipeline {
    ledger: Arc<dyn Ledger>,
    mailer: Arc<dyn Mailer>,
    gate: Option<Arc<dyn SendGate>>,
    settings: PipelineSettings,
}

/// One record on its way through the stages: its report (with its fate so far) and the work
/// left for it.
struct Item {
    report: RecordReport,
    work: Work,
}

enum Work {
    /// Its fate is decided.
    Done,
    /// A valid order, to be claimed, with its canonical payload (built once).
    Decoded { order: Box<Order>, canonical: Canonical },
    /// The same order as an earlier record of this batch: it shares that record's fate.
    SameAs(usize),
    /// Claimed: this invocation must send it and record the outcome with `token`.
    Claimed(Box<Claimed>),
}

/// A claimed order and what the claim found out about it.
struct Claimed {
    order: Order,
    token: uuid::Uuid,
    lease_ends: Instant,
    /// Taken over from a holder whose lease ran out: it may have mailed the order.
    takeover: Option<Takeover>,
    /// SES's Send event for an earlier claim's mail of this order (its message id), recorded
    /// when the claim was made: SES accepted that mail, so this one is not sent.
    sent_earlier: Option<String>,
}

/// One finished send, on its way to the recorder.
struct Finished {
    index: usize,
    order_id: crate::order::OrderId,
    token: uuid::Uuid,
    sent: Sent,
}

/// What one send attempt produced.
enum Sent {
    /// An outcome to record in the ledger.
    Record(Outcome),
    /// Not mailed: SES's Send event shows it accepted an earlier claim's mail of this order (this
    /// SES message id), which is recorded as the order's mail.
    Earlier(String),
    /// Abandoned at the time budget's cut-off: SES may or may not have accepted it. The order is
    /// left leased, so whoever takes it over after the lease counts a possible duplicate.
    Unknown(String),
}

impl Pipeline {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        mailer: Arc<dyn Mailer>,
        gate: Option<Arc<dyn SendGate>>,
        settings: PipelineSettings,
    ) -> Self {
        Self { ledger, mailer, gate, settings }
    }

    /// Processes one SQS batch that must be finished by `deadline`.
    pub async fn handle(&self, event: &SqsEvent, deadline: Instant) -> BatchReport {
        let budget = Budget::new(deadline, &self.settings);
        let mut items = decode_all(&event.records);
        self.claim(&mut items, &budget).await;
        // Boxed: the sender and recorder futures are deep types, and every entry point awaits this.
        Box::pin(self.send_and_record(&mut items, &budget)).await;
        // Records repeated in the batch take their first record's fate.
        for i in 0..items.len() {
            if let Work::SameAs(first) = items[i].work {
                items[i].report.outcome = match &items[first].report.outcome {
                    RecordOutcome::Sent { .. } | RecordOutcome::SentEarlier { .. } => RecordOutcome::AlreadySent,
                    other => other.clone(),
                };
            }
        }
        let records: Vec<RecordReport> = items.into_iter().map(|item| item.report).collect();
        for r in &records {
            log_record(r);
        }
        BatchReport { records }
    }

    /// Claims every valid order of the batch in one ledger call (split by size inside the ledger).
    async fn claim(&self, items: &mut [Item], budget: &Budget) {
        let (pending, requests): (Vec<usize>, Vec<ClaimRequest>) = items
            .iter_mut()
            .enumerate()
            .filter_map(|(i, it)| match &mut it.work {
                // The canonical payload moves into the request: from here on the item needs only
                // its order.
                Work::Decoded { order, canonical } => Some((
                    i,
                    ClaimRequest {
                        order_id: order.order_id.clone(),
                        payload_sha256: std::mem::take(&mut canonical.sha256),
                        priority: order.priority,
                        payload: std::mem::take(&mut canonical.json),
                    },
                )),
                _ => None,
            })
            .unzip();
        if pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let lease = budget.deadline.saturating_duration_since(started) + self.settings.lease_slack;
        let claims = match tokio::time::timeout_at(budget.ledger_until, self.ledger.claim(&requests, lease)).await {
            Ok(Ok(claims)) if claims.len() == requests.len() => Ok(claims),
            Ok(Ok(claims)) => Err(format!("ledger answered {} claims for {} orders", claims.len(), requests.len())),
            Ok(Err(e)) => Err(format!("claim failed: {e}")),
            Err(_) => Err("claim did not finish within the invocation's time budget".to_owned()),
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::error!(error = %reason, orders = pending.len(), "claim failed; the batch will be retried");
                for &i in &pending {
                    items[i].work = Work::Done;
                    items[i].report.outcome = RecordOutcome::TransientFailure { reason: reason.clone() };
                }
                return;
            }
        };
        for (&i, claim) in pending.iter().zip(claims) {
            let Work::Decoded { order, .. } = std::mem::replace(&mut items[i].work, Work::Done) else { continue };
            let report = &mut items[i].report;
            report.outcome = match claim {
                Claim::Claimed { token, takeover, sent_earlier } => {
                    report.after_expired_lease = takeover.is_some();
                    let lease_ends = started + lease;
                    let order = *order;
                    items[i].work =
                        Work::Claimed(Box::new(Claimed { order, token, lease_ends, takeover, sent_earlier }));
                    continue;
                }
                Claim::AlreadySent => RecordOutcome::AlreadySent,
                Claim::InFlight { lease_remaining } => RecordOutcome::InFlight { lease_remaining },
                Claim::Conflict => {
                    RecordOutcome::Conflict { reason: "order_id was seen before with a different payload".to_owned() }
                }
                Claim::Terminal { status, reason } => RecordOutcome::Terminal { status, reason },
                Claim::Unavailable { error } => {
                    RecordOutcome::TransientFailure { reason: format!("claim failed: {error}") }
                }
            };
        }
    }

    /// Sends the claimed orders (high priority first, bounded concurrency) while a recorder
    /// writes their outcomes in waves.
    async fn send_and_record(&self, items: &mut [Item], budget: &Budget) {
        let mut claimed: Vec<(usize, &Claimed)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| match &it.work {
                Work::Claimed(c) => Some((i, c.as_ref())),
                _ => None,
            })
            .collect();
        if claimed.is_empty() {
            return;
        }
        claimed.sort_by_key(|&(_, c)| c.order.priority);
        let fatal = AtomicBool::new(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
        let sender = async move {
            futures::stream::iter(claimed)
                .for_each_concurrent(self.settings.concurrency.max(1), |(i, c)| {
                    let (tx, fatal) = (tx.clone(), &fatal);
                    async move {
                        let attempt =
                            AssertUnwindSafe(self.send_unless_sent_earlier(c, budget, fatal)).catch_unwind().await;
                        let sent = attempt.unwrap_or_else(|panic| {
                            Sent::Record(Outcome::Failed {
                                error: format!("panic while sending: {}", panic_text(&panic)),
                            })
                        });
                        let _ =
                            tx.send(Finished { index: i, order_id: c.order.order_id.clone(), token: c.token, sent });
                    }
                })
                .await;
        };
        let recorder = async {
            let wave_size = self.settings.concurrency.max(1);
            let mut done: Vec<(usize, Sent, bool)> = Vec::new();
            let mut wave: Vec<Finished> = Vec::new();
            let mut wave_due: Option<Instant> = None;
            loop {
                let next = match wave_due {
                    Some(due) => tokio::time::timeout_at(due, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                };
                let closed = matches!(next, Some(None));
                if let Some(Some(sent)) = next {
                    wave_due.get_or_insert_with(|| Instant::now() + self.settings.wave_interval);
                    wave.push(sent);
                    if wave.len() < wave_size {
                        continue;
                    }
                }
                if !wave.is_empty() {
                    done.extend(self.record_wave(std::mem::take(&mut wave), budget).await);
                }
                wave_due = None;
                if closed {
                    break done;
                }
            }
        };
        let ((), done) = futures::join!(sender, recorder);
        let now_ms = unix_ms_now();
        for (i, sent, applied) in done {
            items[i].work = Work::Done;
            let report = &mut items[i].report;
            report.outcome = match sent {
                Sent::Record(Outcome::Sent { message_id }) => {
                    // The mail went out: acknowledge it even if the record was lost, and count
                    // it, because reconciliation or a redelivery may mail it again.
                    report.unrecorded_send = !applied;
                    report.time_to_confirm_seconds = report
                        .first_sent_ms
                        .and_then(|t| now_ms.checked_sub(t))
                        .filter(|ms| *ms >= 0)
                        .map(|ms| ms as f64 / 1000.0);
                    RecordOutcome::Sent { provider_message_id: message_id }
                }
                Sent::Record(Outcome::Failed { error }) => RecordOutcome::TransientFailure { reason: error },
                Sent::Record(Outcome::Rejected { reason }) => RecordOutcome::Rejected { reason },
                Sent::Record(Outcome::Released { reason }) => RecordOutcome::Deferred { reason, requeued: false },
                Sent::Earlier(message_id) => {
                    // Mailed earlier, by a claim that did not live to record it.
                    report.unrecorded_send = !applied;
                    RecordOutcome::SentEarlier { provider_message_id: message_id }
                }
                Sent::Unknown(reason) => RecordOutcome::TransientFailure { reason },
            };
        }
    }

    /// Records one wave in one ledger call, retrying with backoff while the budget allows.
    /// Returns each send with whether its outcome was applied.
    async fn record_wave(&self, wave: Vec<Finished>, budget: &Budget) -> Vec<(usize, Sent, bool)> {
        let recordings: Vec<Recording> = wave
            .iter()
            .filter_map(|f| match &f.sent {
                Sent::Record(outcome) => {
                    Some(Recording { order_id: f.order_id.clone(), token: f.token, outcome: outcome.clone() })
                }
                Sent::Earlier(message_id) => Some(Recording {
                    order_id: f.order_id.clone(),
                    token: f.token,
                    outcome: Outcome::Sent { message_id: message_id.clone() },
                }),
                Sent::Unknown(_) => None,
            })
            .collect();
        let applied = if recordings.is_empty() {
            Vec::new()
        } else {
            self.record_with_retries(&recordings, budget).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, orders = recordings.len(), "recording a wave failed; its mailed orders may be mailed again later");
                vec![false; recordings.len()]
            })
        };
        let mut applied = applied.into_iter();
        wave.into_iter()
            .map(|f| {
                let ok = matches!(f.sent, Sent::Record(_) | Sent::Earlier(_)) && applied.next().unwrap_or(false);
                (f.index, f.sent, ok)
            })
            .collect()
    }

    async fn record_with_retries(&self, recordings: &[Recording], budget: &Budget) -> Result<Vec<bool>, BackendError> {
        let mut delay = Duration::from_millis(100);
        loop {
            let error = match tokio::time::timeout_at(budget.ledger_until, self.ledger.record(recordings)).await {
                Ok(Ok(applied)) if applied.len() == recordings.len() => return Ok(applied),
                Ok(Ok(applied)) => {
                    return Err(BackendError::fatal(format!(
                        "ledger answered {} results for {} recordings",
                        applied.len(),
                        recordings.len()
                    )));
                }
                Ok(Err(e)) if e.class == ErrorClass::Fatal || e.class == ErrorClass::Permanent => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => return Err(BackendError::transient("the record step ran out of time")),
            };
            let wake = Instant::now() + delay.mul_f64(0.5 + 0.5 * rand::random::<f64>());
            if wake >= budget.ledger_until {
                return Err(error);
            }
            tracing::warn!(error = %error, retry_in_ms = (wake - Instant::now()).as_millis() as u64, "recording failed; retrying");
            tokio::time::sleep_until(wake).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Sends one claimed order, unless SES already accepted an earlier claim's mail of it: the
    /// claim found that mail's Send event, or, taken over from a holder whose lease ended only
    /// recently, the event arrives within the wait (docs/design.md, "SES as the second witness").
    async fn send_unless_sent_earlier(&self, c: &Claimed, budget: &Budget, fatal: &AtomicBool) -> Sent {
        if let Some(message_id) = &c.sent_earlier {
            return Sent::Earlier(message_id.clone());
        }
        if let Some(takeover) = c.takeover
            && let Some(message_id) = self.await_send_event(c, takeover, budget).await
        {
            return Sent::Earlier(message_id);
        }
        self.send_one(&c.order, c.token, c.lease_ends, budget, fatal).await
    }

    /// Waits, a bounded time, for SES's Send event of a mail the previous holder may have had
    /// accepted. Its last send ended before its own deadline, a lease slack before its lease
    /// ended, so the event has had `lease_slack + lease_ended_ago` to arrive; the wait tops that up
    /// to `send_event_wait`. It ends in time for the send to start in this invocation: an order
    /// released for lack of time would come back as a plain retry, no longer known as a takeover.
    async fn await_send_event(&self, c: &Claimed, takeover: Takeover, budget: &Budget) -> Option<String> {
        let waited = self.settings.lease_slack + takeover.lease_ended_ago;
        let last_start = budget.stop_starting_at.checked_sub(SEND_EVENT_POLL).unwrap_or(budget.stop_starting_at);
        let until = (Instant::now() + self.settings.send_event_wait.saturating_sub(waited)).min(last_start);
        let claim = [(c.order.order_id.clone(), c.token)];
        while Instant::now() < until {
            tokio::time::sleep_until((Instant::now() + SEND_EVENT_POLL).min(until)).await;
            match tokio::time::timeout_at(budget.ledger_until, self.ledger.sent_earlier(&claim)).await {
                Ok(Ok(found)) => {
                    if let Some(Some(message_id)) = found.into_iter().next() {
                        return Some(message_id);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(order_id = %c.order.order_id, error = %e, "looking for the previous holder's Send event failed; sending");
                    return None;
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Renders and sends one claimed order, unless the invocation must stop sending.
    async fn send_one(
        &self,
        order: &Order,
        token: uuid::Uuid,
        lease_ends: Instant,
        budget: &Budget,
        fatal: &AtomicBool,
    ) -> Sent {
        let release = |reason: &str| Sent::Record(Outcome::Released { reason: format!("not sent: {reason}") });
        // Checked before and again after waiting for a slot: the wait takes time (or the process
        // was paused), so the lease and the budget may have run out meanwhile.
        let must_stop = || {
            let now = Instant::now();
            if fatal.load(Ordering::Relaxed) {
                Some("sending stopped after a fatal error")
            } else if now >= budget.stop_starting_at {
                Some("too little time left in this invocation")
            } else if now + self.settings.send_timeout.min(budget.send_cutoff - now) >= lease_ends {
                Some("the lease would end before the send could finish")
            } else {
                None
            }
        };
        if let Some(reason) = must_stop() {
            return release(reason);
        }
        if let Some(gate) = &self.gate
            && !gate.acquire(order.priority, budget.stop_starting_at).await
        {
            return release("no send slot before the time budget ran out");
        }
        if let Some(reason) = must_stop() {
            return release(reason);
        }
        let mail = match render::render(order, &self.settings.mail) {
            Ok(mail) => mail,
            Err(e) => return Sent::Record(Outcome::Failed { error: e.to_string() }),
        };
        let tags = MailTags { order_id: order.order_id.clone(), claim_token: token };
        let result = match tokio::time::timeout_at(budget.send_cutoff, self.mailer.send(order, &mail, &tags)).await {
            Ok(result) => result,
            Err(_) => {
                return Sent::Unknown(
                    "the send did not finish within the time budget; left leased until it can be taken over".to_owned(),
                );
            }
        };
        if let Some(gate) = &self.gate {
            let throttled = matches!(&result, Err(e) if e.class == ErrorClass::Throttled);
            gate.feedback(order.priority, throttled).await;
        }
        Sent::Record(match result {
            Ok(message_id) => Outcome::Sent { message_id },
            Err(BackendError { class: ErrorClass::Throttled, message }) => {
                Outcome::Released { reason: format!("not sent: SES is at its sending rate ({message})") }
            }
            Err(BackendError { class: ErrorClass::Transient, message }) => Outcome::Failed { error: message },
            Err(BackendError { class: ErrorClass::Permanent, message }) => Outcome::Rejected { reason: message },
            Err(BackendError { class: ErrorClass::Fatal, message }) => {
                if !fatal.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %message, "fatal mailer error: no more sends in this invocation");
                }
                Outcome::Failed { error: message }
            }
        })
    }
}

/// The decode stage: every record becomes a decided fate or a valid order. Panics are caught
/// per record. A repeated `order_id` shares the first record's fate, or is a conflict if its
/// payload differs.
fn decode_all(records: &[SqsMessage]) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(records.len());
    let mut first_of: HashMap<String, (usize, String)> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let mut report = blank_report(record);
        let body = record.body.as_deref();
        let work = match std::panic::catch_unwind(|| body.map(decode::decode_message)) {
            Ok(None) => {
                report.outcome = RecordOutcome::Invalid { reason: "record has no body".to_owned() };
                Work::Done
            }
            Ok(Some(Err(refused))) => {
                report.order_id = refused.order_id.map(|id| id.to_string());
                report.outcome = invalid(&refused.rejection);
                Work::Done
            }
            Ok(Some(Ok(ok))) => {
                report.order_id = Some(ok.order.order_id.to_string());
                report.priority = Some(ok.order.priority);
                report.notes = ok.notes;
                let canonical = ok.order.canonical();
                match first_of.get(ok.order.order_id.as_str()) {
                    None => {
                        first_of.insert(ok.order.order_id.to_string(), (i, canonical.sha256.clone()));
                        Work::Decoded { order: Box::new(ok.order), canonical }
                    }
                    Some((first, first_sha)) if *first_sha == canonical.sha256 => Work::SameAs(*first),
                    Some(_) => {
                        report.outcome = RecordOutcome::Conflict {
                            reason: "order_id repeated in this batch with a different payload".to_owned(),
                        };
                        Work::Done
                    }
                }
            }
            Err(panic) => {
                report.outcome =
                    RecordOutcome::TransientFailure { reason: format!("panic while decoding: {}", panic_text(&panic)) };
                Work::Done
            }
        };
        items.push(Item { report, work });
    }
    items
}

fn unix_ms_now() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn blank_report(record: &SqsMessage) -> RecordReport {
    let first_sent = record
        .message_attributes
        .get(FIRST_SENT_ATTRIBUTE)
        .and_then(|a| a.string_value.as_deref())
        .or_else(|| record.attributes.get("SentTimestamp").map(String::as_str));
    RecordReport {
        message_id: record.message_id.clone(),
        order_id: None,
        priority: None,
        receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1),
        outcome: RecordOutcome::TransientFailure { reason: "not processed".to_owned() },
        notes: Vec::new(),
        unrecorded_send: false,
        time_to_confirm_seconds: None,
        after_expired_lease: false,
        first_sent_ms: first_sent.and_then(|v| v.parse().ok()),
    }
}

fn invalid(rejection: &Rejection) -> RecordOutcome {
    RecordOutcome::Invalid { reason: rejection.to_string() }
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
    if let RecordOutcome::Sent { provider_message_id } | RecordOutcome::SentEarlier { provider_message_id } = &r.outcome
    {
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
    } else if let RecordOutcome::Deferred { reason, .. } = &r.outcome {
        // Not a failure: the order goes out on a later delivery.
        tracing::info!(message_id, order_id, priority, outcome, receive_count, reason, notes, "record deferred");
    } else {
        tracing::warn!(message_id, order_id, priority, outcome, receive_count, reason, notes, "record failed");
    }
}
