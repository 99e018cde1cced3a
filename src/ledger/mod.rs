//! The ledger: one row per order, the single source of truth for "was this order confirmed"
//! (docs/design.md, "The ledger"). It makes redelivery safe (claim before send) and keeps a stale invocation from
//! overwriting a newer one (record only where the claim token still matches).
//!
//! Two implementations honour the same contract and run the same contract tests:
//! [`sqlite::SqliteLedger`], the embedded default for local runs, and
//! [`data_api::DataApiLedger`], Aurora PostgreSQL through the RDS Data API in production.

/// The schema's migrations in order, as `(version, SQL)`, for one dialect's directory under
/// `migrations/`: one list of versions for both ledgers, so a migration is added to both at once.
macro_rules! migrations {
    ($dialect:literal) => {
        migrations!(
            $dialect;
            "0001_order_confirmations",
            "0002_order_confirmation_status",
            "0003_parked_orders",
            "0004_retention",
            "0005_pending_indexes",
            "0006_sent_per_hour",
            "0007_delivery_events",
            "0008_ses_mails",
            "0009_one_first_mail"
        )
    };
    ($dialect:literal; $($version:literal),+) => {
        &[$(($version, include_str!(concat!("../../migrations/", $dialect, "/", $version, ".sql")))),+]
    };
}

pub mod data_api;
pub mod sqlite;

use crate::error::BackendError;
use crate::order::{OrderId, Priority};
pub use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// One order to claim: what the ledger needs to recognise it and to re-send it later.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub order_id: OrderId,
    pub payload_sha256: String,
    pub priority: Priority,
    /// Canonical JSON of the order (see [`crate::order::Order::canonical_json`]).
    pub payload: String,
}

/// What the claim step decided for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation holds the lease and must send, then record with this token.
    /// `takeover`: the order was taken over from an invocation whose lease ran out, so that one
    /// may have mailed it before it died (the at-least-once case; counted).
    /// `sent_earlier`: SES's Send event for an earlier claim's mail of this order had been recorded
    /// (its SES message id): SES accepted that mail, so this claim records it instead of mailing.
    Claimed { token: Uuid, takeover: Option<Takeover>, sent_earlier: Option<String> },
    /// Already confirmed: acknowledge, do not mail again.
    AlreadySent,
    /// Another invocation holds a live lease for this long yet: retry right after it ends (if
    /// the holder died, the order can be taken over then; if not, it is confirmed by then).
    InFlight { lease_remaining: Duration },
    /// The same `order_id` was seen with a different payload: never mail, report.
    Conflict,
    /// Refused for good earlier (by the mail provider or by reconciliation's bound).
    Terminal { status: Status, reason: String },
    /// This order's part of the claim failed (a backend that splits a large batch into several
    /// requests lost one of them): not claimed, retry later. The rest of the batch is unaffected.
    Unavailable { error: String },
}

/// A claim that took an order over from a holder whose lease had run out (it died, or was stopped
/// mid-send), as the claim found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// How long before this claim the holder's lease ended (zero when it ended just now).
    pub lease_ended_ago: Duration,
}

/// The result of one send attempt, written by the record step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        message_id: String,
    },
    /// Transient failure: the order is retryable.
    Failed {
        error: String,
    },
    /// Permanent failure: the provider will never accept this mail.
    Rejected {
        reason: String,
    },
    /// Not attempted (deferred by the rate limiter or SES throttling, out of time, or stopped
    /// after a fatal error): the lease ends so the next delivery can claim at once, and the
    /// claim's attempt is given back (a deferral is not a failed attempt).
    Deferred {
        reason: String,
    },
}

impl Outcome {
    /// The status the record step writes for this outcome: the one mapping both ledgers use.
    pub fn status(&self) -> Status {
        match self {
            Self::Sent { .. } => Status::Sent,
            Self::Failed { .. } | Self::Deferred { .. } => Status::Failed,
            Self::Rejected { .. } => Status::Rejected,
        }
    }

    /// The provider's message id, for a sent mail.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Self::Sent { message_id } => Some(message_id),
            _ => None,
        }
    }

    /// What `last_error` becomes: the error or reason; `None` for a sent mail (which clears it).
    pub fn last_error(&self) -> Option<&str> {
        match self {
            Self::Sent { .. } => None,
            Self::Failed { error } => Some(error),
            Self::Rejected { reason } | Self::Deferred { reason } => Some(reason),
        }
    }

    /// A deferred order's claim gives its attempt back: a deferral is not a failed attempt.
    pub fn gives_back_attempt(&self) -> bool {
        matches!(self, Self::Deferred { .. })
    }
}

/// What the record step did with one [`Recording`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The outcome was written (its claim token still matched).
    pub applied: bool,
    /// The recorded mail is a second mail the ledger knows of for the order: an SES event had
    /// already brought another one (docs/design.md, "Duplicates counted from SES's events"). SES
    /// accepted two mails for the order; counted `DuplicateMailed` this once.
    pub extra_mail: bool,
}

impl Recorded {
    /// Applied, with no extra mail.
    pub const APPLIED: Self = Self { applied: true, extra_mail: false };
    /// Not applied: the lease was lost to another invocation.
    pub const FENCED: Self = Self { applied: false, extra_mail: false };
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub order_id: OrderId,
    pub token: Uuid,
    pub outcome: Outcome,
    /// The claim took the order over from a holder whose lease had run out, which may have
    /// mailed it. An outcome that is not final (failed, deferred) then leaves the order `sending`
    /// with its lease ended now, not `failed`: the next claim is a takeover again and counts the
    /// possible duplicate when it mails (docs/design.md, "SES as the second witness").
    pub takeover: bool,
}

impl Recording {
    /// The status the outcome leaves: [`Outcome::status`], except that a takeover's failed or
    /// deferred outcome stays `sending` (see [`Recording::takeover`]).
    pub fn status(&self) -> Status {
        match self.outcome.status() {
            Status::Failed if self.takeover => Status::Sending,
            status => status,
        }
    }
}

/// The state of one order, without personal data: what `order-confirmation status` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderState {
    pub order_id: OrderId,
    pub status: Status,
    pub priority: Priority,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub ses_message_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    /// When a person parked this abandoned order (took it over): it no longer counts as
    /// unconfirmed. `None` when nobody has.
    #[serde(with = "time::serde::rfc3339::option")]
    pub parked_at: Option<OffsetDateTime>,
    /// What the person wrote when parking it (a ticket, who handles it).
    pub parked_note: Option<String>,
    /// When retention removed the payload (the customer's name, address and items); `None` while
    /// it is kept.
    #[serde(with = "time::serde::rfc3339::option")]
    pub payload_removed_at: Option<OffsetDateTime>,
    /// What SES said about the mail after accepting it (docs/design.md, "Delivery events").
    pub delivery: Delivery,
    /// What the status page may show: `confirmed`, `processing` or `needs_attention` (the same
    /// rule as the `order_confirmation_status` view; see [`customer_status`]).
    pub customer_status: CustomerStatus,
}

/// An order's delivery facts from SES's events; all `None` until the first event.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Delivery {
    /// The strongest delivery state seen.
    pub state: Option<crate::ses_event::DeliveryState>,
    /// Bounce type and sub-type with the SMTP status code, complaint or delay type; no personal data.
    pub detail: Option<String>,
    /// When SES says that state happened.
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// The latest Send event: SES's witness that it accepted the mail of a claim.
    pub send_event: Option<SendEvent>,
    /// The SES message ids of the order's extra mails: mails SES accepted beside the order's own
    /// (its recorded message id, or the first mail seen while none is recorded), first seen first.
    pub duplicate_message_ids: Vec<String>,
}

/// SES's Send event for one of the order's mails.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendEvent {
    pub message_id: String,
    /// The claim that sent it (the mail's `claim_token` tag); `None` for an untagged mail.
    pub claim_token: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What the status page may show for an order, serialized as the view
/// `order_confirmation_status` (migration 0007) writes it: `confirmed`, `processing` or
/// `needs_attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    /// Sent, and SES has said nothing that needs a person.
    Confirmed,
    /// Not sent yet, and still expected to be.
    Processing,
    /// A person must act: SES refused the mail, reconciliation gave up, or the mail was sent and
    /// then bounced, was refused, or drew a complaint.
    NeedsAttention,
}

impl CustomerStatus {
    /// The word the status page and the view use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Processing => "processing",
            Self::NeedsAttention => "needs_attention",
        }
    }
}

impl std::fmt::Display for CustomerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order's [`CustomerStatus`] from its status and what SES said about its mail. The view
/// `order_confirmation_status` (migration 0007) applies the same rule.
pub fn customer_status(status: Status, delivery: Option<crate::ses_event::DeliveryState>) -> CustomerStatus {
    match status {
        Status::Sent if delivery.is_some_and(crate::ses_event::DeliveryState::needs_attention) => {
            CustomerStatus::NeedsAttention
        }
        Status::Sent => CustomerStatus::Confirmed,
        Status::Rejected | Status::Abandoned => CustomerStatus::NeedsAttention,
        Status::Sending | Status::Failed => CustomerStatus::Processing,
    }
}

/// Statistics for one priority.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorityStats {
    pub priority: Priority,
    /// Rows per status; every status is present, zero when none. `sent` counts the orders sent in
    /// the last 24 hours (the history is not counted: the cost stays with the pending work).
    pub by_status: BTreeMap<Status, u64>,
    /// Orders not yet confirmed and still expected to be (`sending` + `failed`).
    pub pending: u64,
    pub oldest_unsent_age_seconds: Option<f64>,
    pub sent_last_hour: u64,
    /// Time to send: from the ledger first seeing the order (`first_seen_at`, its first claim) to
    /// SES accepting its mail (`sent_at`), over orders sent in the last 24 hours. Not the metric
    /// `TimeToConfirm`, which starts earlier, when the order entered a queue.
    pub time_to_send_seconds: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of a histogram of times to confirm: `(milliseconds, orders)`
    /// pairs in any order, the same milliseconds possibly more than once (docs/design.md,
    /// "Statistics over 24 hours"). The answer is in seconds.
    pub fn from_histogram(histogram: &[(i64, u64)]) -> Self {
        let mut merged: BTreeMap<i64, u64> = BTreeMap::new();
        for (ms, n) in histogram {
            *merged.entry(*ms).or_default() += n;
        }
        let total: u64 = merged.values().sum();
        let rank = |p: f64| -> Option<f64> {
            if total == 0 {
                return None;
            }
            let wanted = ((p * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            merged.iter().find_map(|(ms, n)| {
                seen += n;
                (seen >= wanted).then_some(*ms as f64 / 1000.0)
            })
        };
        Self { p50: rank(0.50), p95: rank(0.95), p99: rank(0.99) }
    }
}

/// Significant decimal digits a time to confirm keeps in the statistics' hourly summary.
const TTC_DIGITS: u32 = 3;

/// A time to confirm as the statistics keep it: whole milliseconds truncated to three significant
/// digits (1,234 ms counts as 1,230 ms; below one second it is exact), so it is never above the
/// exact value and less than 1 % below it, and an hour of sends fits in a few hundred summary rows
/// whatever the order rate (docs/design.md, "Statistics over 24 hours").
pub fn ttc_bucket_ms(ms: i64) -> i64 {
    let ms = ms.max(0);
    let mut step = 1;
    while ms >= step * 10_i64.pow(TTC_DIGITS) {
        step *= 10;
    }
    ms / step * step
}

/// [`ttc_bucket_ms`] as an SQL expression over the integer expression `ms` (non-negative), the
/// same text for SQLite and PostgreSQL (integer division truncates in both).
pub(crate) fn ttc_bucket_sql(ms: &str) -> String {
    let mut sql = String::from("CASE");
    let mut step: i64 = 1;
    // Up to 10^12 ms (31 years): far beyond the ledger's horizon.
    while step < 1_000_000_000 {
        let bound = step * 10_i64.pow(TTC_DIGITS);
        sql.push_str(&format!(" WHEN {ms} < {bound} THEN {ms} / {step} * {step}"));
        step *= 10;
    }
    sql.push_str(&format!(" ELSE {ms} / {step} * {step} END"));
    sql
}

/// How long after an hour ends its sends are summarized (docs/design.md, "Statistics over 24
/// hours"): long enough that no send of that hour is still being recorded (a Data API statement
/// runs at most 45 seconds).
pub const SUMMARY_SETTLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerStats {
    pub priorities: Vec<PriorityStats>,
}

/// An unconfirmed order that reconciliation should retry: its stored payload and history.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckOrder {
    pub order_id: OrderId,
    pub status: Status,
    pub attempts: i64,
    /// Canonical JSON of the order, as stored at first claim.
    pub payload: String,
}

/// Orders not confirmed within the grace period: what the `UnconfirmedOrders` alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Unconfirmed {
    pub count: u64,
    pub oldest_seconds: f64,
}

/// What one retention step removed (docs/design.md, "Retention").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Retained {
    /// Confirmed orders whose payload was removed (the row and its times stay).
    pub payloads_removed: u64,
    /// Finished rows (`sent`, `rejected`, `abandoned`) deleted for being past the horizon.
    pub rows_deleted: u64,
}

/// The payload stored in place of a removed one: valid JSON that names no one.
pub const REMOVED_PAYLOAD: &str = "{}";

/// The ledger's hot path: what every queue delivery does (claim, then record). Claim and record
/// take the whole batch so a backend can do each in one round trip; results come back in input
/// order. The pipeline needs only this, so a test fake implements only this (docs/design.md,
/// "Ledger types: two traits, typed rows, the payload once").
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Inserts or takes over each order unless it is terminal or leased by someone else.
    async fn claim(&self, orders: &[ClaimRequest], lease: Duration) -> Result<Vec<Claim>, BackendError>;

    /// Writes outcomes, each only where its claim token still matches. Returns, per recording,
    /// whether it was applied (false: the lease was lost to another invocation) and whether the
    /// mail it recorded revealed an extra mail ([`Recorded::extra_mail`]). Idempotent: the token
    /// stays on the row until the next claim replaces it, so a retry of a call whose first attempt
    /// committed (its answer lost) applies again, changes nothing, and answers applied (and no
    /// extra mail: each mail is counted once).
    async fn record(&self, recordings: &[Recording]) -> Result<Vec<Recorded>, BackendError>;

    /// For each `(order, claim token)`: the SES message id of a mail of that order sent under
    /// another claim (or untagged), if any event of it (Send, Delivery, Bounce, …) has been
    /// applied; in input order. A takeover asks while it waits for the previous holder's event
    /// (docs/design.md, "SES as the second witness").
    async fn sent_earlier(&self, claims: &[(OrderId, Uuid)]) -> Result<Vec<Option<String>>, BackendError>;
}

/// Everything else a ledger does, for operators, reconciliation and deployment: the schema,
/// statistics, one order's state, and the changes made off the hot path. A backend implements
/// both traits; `Arc<dyn LedgerOps>` is the whole ledger and coerces to `Arc<dyn Ledger>`.
#[async_trait::async_trait]
pub trait LedgerOps: Ledger {
    /// Applies pending schema migrations. Returns the versions applied by this call, oldest
    /// first (empty when the schema was current), so `migrate` can say what it did.
    async fn migrate(&self) -> Result<Vec<&'static str>, BackendError>;

    async fn stats(&self) -> Result<LedgerStats, BackendError>;

    async fn order_state(&self, order_id: &OrderId) -> Result<Option<OrderState>, BackendError>;

    /// Orders reconciliation should retry: `sending` with an expired lease, or `failed` and not
    /// updated for `failed_for`; oldest first, at most `limit`.
    async fn stuck(&self, failed_for: Duration, limit: usize) -> Result<Vec<StuckOrder>, BackendError>;

    /// Marks orders `abandoned` (reconciliation's attempt bound reached), unless something
    /// changed them meanwhile (they must still be `failed`, or `sending` with an expired lease).
    /// `last_error` becomes `reason` followed by `; last error: ` and the error it held, so the
    /// verdict never hides the cause a person needs (a refusal, a permission). Returns how many
    /// were marked.
    async fn abandon(&self, order_ids: &[OrderId], reason: &str) -> Result<u64, BackendError>;

    /// An operator's retry of an order automation gave up on (`abandoned`) or SES refused
    /// (`rejected`): the row becomes `failed` with its attempts reset, and is returned with its
    /// stored payload so it can be re-sent. `None` when the order is not in one of those states.
    async fn release(&self, order_id: &OrderId) -> Result<Option<StuckOrder>, BackendError>;

    /// Orders first seen more than `grace` ago and still not confirmed (`sending`, `failed`,
    /// `abandoned`), except those a person parked.
    async fn unconfirmed(&self, grace: Duration) -> Result<Unconfirmed, BackendError>;

    /// A person took over an `abandoned` order (`note` says who or which ticket): it stays
    /// abandoned but leaves the unconfirmed count, so the UnconfirmedOrders alarm can return to OK
    /// and page again for the next order. Parking again replaces the note. `retry` (release) clears
    /// it. Returns the parked order's state, or `None` when the order is not abandoned.
    async fn park(&self, order_id: &OrderId, note: &str) -> Result<Option<OrderState>, BackendError>;

    /// One bounded retention step: removes the payload of at most `limit` orders confirmed (`sent`)
    /// more than `payload_after` ago, and deletes at most `limit` finished rows (`sent`,
    /// `rejected`, `abandoned`) first seen more than `delete_after` ago. Unfinished rows (`sending`,
    /// `failed`) are never touched. Each part is one short statement; callers repeat the step.
    async fn retain(
        &self,
        payload_after: Duration,
        delete_after: Duration,
        limit: usize,
    ) -> Result<Retained, BackendError>;

    /// One bounded step of the statistics' summary (docs/design.md, "Statistics over 24 hours"):
    /// summarizes the sends of the oldest hour inside the last 24 hours not yet summarized, once
    /// that hour has been over for [`SUMMARY_SETTLE`], and forgets summaries older than 24 hours.
    /// Returns whether an hour was summarized (false: nothing is due). Idempotent and safe to run
    /// concurrently: an hour is summarized at most once.
    async fn summarize_sends(&self) -> Result<bool, BackendError>;

    /// Applies SES events (docs/design.md, "Delivery events") in one call, and says per event,
    /// in input order, which order it belonged to. An event finds its order by its `order_id`
    /// tag, else by the stored SES message id; a message id that belongs to another order than
    /// the tag names (or to several) is a contradiction and is applied to none. Each mail's first
    /// event records its message id for the order (once); a second mail of one order is a
    /// duplicate, reported once. A delivery state is replaced only by one of higher rank
    /// ([`crate::ses_event::DeliveryState::rank`]), so redelivered and out-of-order events
    /// converge, and only by events of the order's own mail (the recorded one, or any while none
    /// is recorded); a Send event is kept when it is the latest seen for the order. Never changes
    /// `status`, `updated_at` or the claim.
    async fn apply_delivery_events(
        &self,
        events: &[crate::ses_event::DeliveryEvent],
    ) -> Result<Vec<EventMatch>, BackendError>;

    /// Delivery states of the orders sent in the last 24 hours, per priority (both always present).
    async fn delivery_stats(&self) -> Result<Vec<DeliveryStats>, BackendError>;
}

/// Which order an SES event was applied to (docs/design.md, "Delivery events"), with its priority
/// for the metrics; `Unknown` when the ledger holds no order for it (counted, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventMatch {
    /// Applied to this order. `duplicate`: the event is the first one the ledger saw of a mail
    /// other than the order's mail (SES accepted two mails for it), counted `DuplicateMailed` this
    /// once (docs/design.md, "Duplicates counted from SES's events").
    Order {
        order_id: OrderId,
        priority: Priority,
        duplicate: bool,
    },
    Unknown,
    /// The event's message id belongs to another order than its `order_id` tag names (or, untagged,
    /// to several orders): tags and message id disagree, so it is applied to no order.
    Contradiction,
}

/// The rule a [`EventMatch::Contradiction`] broke, for the log (never a value).
pub const CONTRADICTION_RULE: &str =
    "the event's SES message id belongs to another order than its order_id tag names (or to several orders)";

/// Delivery states of the orders of one priority sent in the last 24 hours (the same window as
/// `stats`' `sent`), and the bounce rate over them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryStats {
    pub priority: Priority,
    /// Orders sent in the last 24 hours.
    pub sent: u64,
    /// Per delivery state (every state present, zero when none), plus `unknown`: sent, and no
    /// event yet that says delivered or failed (a `delayed` order is counted as `delayed`).
    /// Serialized by name, in the names' order.
    pub by_state: BTreeMap<DeliveryBucket, u64>,
    /// Hard bounces over sends (`bounced / sent`), the ratio SES's own reputation metric uses;
    /// `None` with no sends.
    pub bounce_rate: Option<f64>,
    /// Extra mails (duplicates SES accepted) first seen in the last 24 hours, whatever their
    /// order's send time.
    pub duplicates: u64,
}

/// Where [`DeliveryStats::by_state`] counts a sent order: its delivery state, or `unknown` while
/// SES has sent no event about its mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryBucket {
    State(crate::ses_event::DeliveryState),
    Unknown,
}

impl DeliveryBucket {
    /// Every bucket: each delivery state, then `unknown`.
    pub fn all() -> impl Iterator<Item = Self> {
        crate::ses_event::DeliveryState::ALL.into_iter().map(Self::State).chain([Self::Unknown])
    }

    /// The name the statistics show (the state's, or `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State(state) => state.as_str(),
            Self::Unknown => "unknown",
        }
    }
}

impl From<crate::ses_event::DeliveryState> for DeliveryBucket {
    fn from(state: crate::ses_event::DeliveryState) -> Self {
        Self::State(state)
    }
}

/// Ordered by name, so `by_state` serializes its keys in the same order as when they were strings.
impl Ord for DeliveryBucket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for DeliveryBucket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for DeliveryBucket {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Turns `(priority, delivery state or None, count)` rows into one [`DeliveryStats`] per priority
/// (both always present, every state counted, zero when none).
/// `duplicates` is `(priority, extra mails)` rows.
pub(crate) fn delivery_stats_from_rows(
    rows: &[(String, Option<String>, u64)],
    duplicates: &[(String, u64)],
) -> Vec<DeliveryStats> {
    Priority::ALL
        .iter()
        .map(|&priority| {
            let mut by_state: BTreeMap<DeliveryBucket, u64> = DeliveryBucket::all().map(|b| (b, 0)).collect();
            for (_, state, n) in rows.iter().filter(|r| r.0 == priority.as_str()) {
                // The column holds only the states' names (its CHECK constraint); anything else is
                // counted as not yet known rather than lost from the sent total.
                let bucket = state
                    .as_deref()
                    .and_then(|s| crate::ses_event::DeliveryState::parse(s).ok())
                    .map_or(DeliveryBucket::Unknown, DeliveryBucket::State);
                *by_state.entry(bucket).or_insert(0) += n;
            }
            let sent: u64 = by_state.values().sum();
            let bounced = by_state[&crate::ses_event::DeliveryState::Bounced.into()];
            let duplicates = duplicates.iter().filter(|r| r.0 == priority.as_str()).map(|r| r.1).sum();
            DeliveryStats {
                priority,
                sent,
                by_state,
                bounce_rate: (sent > 0).then(|| bounced as f64 / sent as f64),
                duplicates,
            }
        })
        .collect()
}

/// The longest note `park` keeps: enough for a ticket reference and a name.
pub const PARK_NOTE_MAX_CHARS: usize = 200;

/// A park note, checked: not empty, at most [`PARK_NOTE_MAX_CHARS`], no control characters. The
/// error names the rule and never repeats the note.
pub fn park_note(note: &str) -> Result<&str, &'static str> {
    let note = note.trim();
    if note.is_empty() {
        return Err("the note is empty: say who handles the order or which ticket tracks it");
    }
    if note.chars().count() > PARK_NOTE_MAX_CHARS {
        return Err("the note is longer than 200 characters");
    }
    if note.chars().any(char::is_control) {
        return Err("the note contains control characters");
    }
    Ok(note)
}

/// Turns raw per-priority numbers into the reported shape, filling absent statuses with zero.
pub(crate) fn priority_stats(
    priority: Priority,
    counts: &BTreeMap<Status, u64>,
    oldest_unsent_age_seconds: Option<f64>,
    sent_last_hour: u64,
    time_to_send_seconds: Percentiles,
) -> PriorityStats {
    let by_status: BTreeMap<Status, u64> =
        Status::ALL.iter().map(|s| (*s, counts.get(s).copied().unwrap_or(0))).collect();
    PriorityStats {
        priority,
        pending: by_status[&Status::Sending] + by_status[&Status::Failed],
        by_status,
        oldest_unsent_age_seconds,
        sent_last_hour,
        time_to_send_seconds,
    }
}

#[cfg(test)]
mod tests;
