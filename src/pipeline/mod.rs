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

mod claim;
mod decode;
mod record;
mod send;

use crate::batch::{BatchReport, FIRST_SENT_ATTRIBUTE, RecordOutcome, RecordReport};
use crate::decode::{Note, Rejection};
use crate::error::{BackendError, ErrorClass};
use crate::ledger::{Claim, ClaimRequest, Ledger, Outcome, Recorded, Recording, Takeover};
use crate::mailer::Mailer;
use crate::order::{Canonical, Order, Priority};
use crate::rate::SendGate;
use crate::render;
use crate::ses_event::MailTags;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use decode::decode_all;
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How often the takeovers of a batch look for their previous holders' Send events (one ledger
/// call for all of them) while they wait.
const SEND_EVENT_POLL: Duration = Duration::from_millis(500);

/// A batch keeps no more orders than its send rate grants within this (at least one); the rest
/// are handed back unclaimed, to return at once for an instance that can send them. An event
/// source mapping delivers its `BatchSize` whatever the rate: at the end of a backlog an instance
/// holding a batch of 20 at 1.25 mails/s sent for 16 s while the others had nothing
/// (docs/design.md, "Under `consume` and under Lambda"). A kept order whose slot does not come
/// within this and a second (the rate was cut meanwhile) is handed back too, once released.
/// `consume` receives what its rate sends within two seconds, so it hands back only those.
pub const HAND_BACK_HORIZON: Duration = Duration::from_secs(3);

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
    pub mail: crate::render::MailSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        use crate::defaults;
        Self {
            concurrency: defaults::SEND_CONCURRENCY,
            safety_margin: Duration::from_secs(defaults::SAFETY_MARGIN_SECONDS),
            lease_slack: Duration::from_secs(defaults::LEASE_SLACK_SECONDS),
            send_timeout: Duration::from_secs(defaults::SEND_TIMEOUT_SECONDS),
            wave_interval: Duration::from_secs(1),
            send_event_wait: Duration::from_secs(30),
            mail: crate::render::MailSettings::default(),
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

/// A batch after [`Pipeline::begin`]: decoded, with what its rate cannot send soon handed back.
pub struct Begun {
    items: Vec<Item>,
    budget: Budget,
}

impl Begun {
    /// The records' fates so far, in the batch's order: the handed-back orders are `Deferred`,
    /// invalid records and conflicts final; the rest are not decided yet.
    pub fn report(&self) -> BatchReport {
        BatchReport { records: self.items.iter().map(|item| item.report.clone()).collect() }
    }

    /// Takes from `early` (a [`Self::report`] whose deferred copies went back to their queue) the
    /// `requeued` marks, so the batch's end does not re-enqueue those records a second time.
    pub fn requeued(&mut self, early: &BatchReport) {
        for (item, r) in self.items.iter_mut().zip(&early.records) {
            if matches!(item.work, Work::Done) && matches!(r.outcome, RecordOutcome::Deferred { requeued: true, .. }) {
                item.report.outcome = r.outcome.clone();
            }
        }
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
    /// The claim was a takeover ([`Recording::takeover`]).
    takeover: bool,
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
    /// Not mailed: no send slot came within [`HAND_BACK_HORIZON`] (the rate was cut meanwhile).
    /// Released as a deferral, and handed back: its copy returns at once.
    HandBack(String),
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

    /// How many orders a batch finishing by `deadline` can send within `horizon` (and before its
    /// budget stops new sends) at the gate's rate now; `None` without a gate (no limit).
    pub async fn sendable(&self, deadline: Instant, horizon: Duration) -> Option<usize> {
        let gate = self.gate.as_ref()?;
        let window = Budget::new(deadline, &self.settings).stop_starting_at.saturating_duration_since(Instant::now());
        gate.sendable_within(horizon.min(window)).await
    }

    /// Hands back the orders beyond what the rate sends within [`HAND_BACK_HORIZON`]: high
    /// priority is kept first, then the batch's order. They are never claimed, so no lease holds
    /// them when their copies return.
    async fn hand_back_beyond_rate(&self, items: &mut [Item], deadline: Instant) {
        let Some(sendable) = self.sendable(deadline, HAND_BACK_HORIZON).await else { return };
        let mut orders: Vec<usize> =
            (0..items.len()).filter(|&i| matches!(items[i].work, Work::Decoded { .. })).collect();
        let keep = sendable.max(1);
        if orders.len() <= keep {
            return;
        }
        orders.sort_by_key(|&i| items[i].report.priority != Some(Priority::High));
        for &i in &orders[keep..] {
            items[i].work = Work::Done;
            items[i].report.outcome = RecordOutcome::Deferred {
                reason: format!(
                    "handed back: more than this invocation's send rate grants within {} s",
                    HAND_BACK_HORIZON.as_secs()
                ),
                requeued: false,
                handed_back: true,
            };
        }
    }

    /// Processes one SQS batch that must be finished by `deadline`.
    pub async fn handle(&self, event: &SqsEvent, deadline: Instant) -> BatchReport {
        let begun = self.begin(event, deadline).await;
        self.complete(begun).await
    }

    /// The first step of [`Self::handle`]: decodes the batch and hands back the orders beyond what
    /// the rate sends soon. A caller with the queue re-enqueues those now ([`Begun::report`],
    /// [`Begun::requeued`]), not when the batch ends: the batch may hold its kept orders for
    /// seconds, and meanwhile an instance that can send the others would find the queue empty.
    pub async fn begin(&self, event: &SqsEvent, deadline: Instant) -> Begun {
        let budget = Budget::new(deadline, &self.settings);
        let mut items = decode_all(&event.records);
        self.hand_back_beyond_rate(&mut items, deadline).await;
        Begun { items, budget }
    }

    /// The rest of [`Self::handle`]: claims, sends and records what [`Self::begin`] kept.
    pub async fn complete(&self, begun: Begun) -> BatchReport {
        let Begun { mut items, budget } = begun;
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
    if r.extra_mail_recorded {
        tracing::warn!(
            message_id,
            order_id,
            priority,
            "duplicate mail: SES accepted a second mail for this order (an event brought the other one before this record)"
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
