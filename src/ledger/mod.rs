//! The ledger: one row per order, the single source of truth for "was this order confirmed"
//! (docs/design.md, "The ledger"). It makes redelivery safe (claim before send) and keeps a stale invocation from
//! overwriting a newer one (record only where the claim token still matches).
//!
//! Two implementations honour the same contract and run the same contract tests:
//! [`sqlite::SqliteLedger`], the embedded default for local runs, and
//! [`data_api::DataApiLedger`], Aurora PostgreSQL through the RDS Data API in production.

pub mod data_api;
pub mod sqlite;

use crate::error::BackendError;
use crate::order::{OrderId, Priority};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Row status values, as stored.
pub mod status {
    /// Leased by an invocation that is sending it now (or died while doing so: see `lease_until`).
    pub const SENDING: &str = "sending";
    /// Terminal: SES accepted the mail.
    pub const SENT: &str = "sent";
    /// Retryable: the last attempt failed transiently, was deferred, or never started.
    pub const FAILED: &str = "failed";
    /// Terminal: the mail provider refused this message for good; `last_error` says why.
    pub const REJECTED: &str = "rejected";
    /// Terminal for automation: reconciliation gave up after its attempt bound; a person decides.
    pub const ABANDONED: &str = "abandoned";
    pub const ALL: [&str; 5] = [SENDING, SENT, FAILED, REJECTED, ABANDONED];
}

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
    /// `after_expired_lease`: the order was taken over from an invocation whose lease ran out, so
    /// that one may have mailed it before it died (the at-least-once case; counted).
    Claimed { token: Uuid, after_expired_lease: bool },
    /// Already confirmed: acknowledge, do not mail again.
    AlreadySent,
    /// Another invocation holds a live lease for this long yet: retry right after it ends (if
    /// the holder died, the order can be taken over then; if not, it is confirmed by then).
    InFlight { lease_remaining: Duration },
    /// The same `order_id` was seen with a different payload: never mail, report.
    Conflict,
    /// Refused for good earlier (by the mail provider or by reconciliation's bound).
    Terminal { status: String, reason: String },
    /// This order's part of the claim failed (a backend that splits a large batch into several
    /// requests lost one of them): not claimed, retry later. The rest of the batch is unaffected.
    Unavailable { error: String },
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
    /// after a fatal error): the lease is released so the next delivery can claim at once, and the
    /// claim's attempt is given back (a deferral is not a failed attempt).
    Released {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub order_id: OrderId,
    pub token: Uuid,
    pub outcome: Outcome,
}

/// The state of one order, without personal data: what `order-confirmation status` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderState {
    pub order_id: String,
    pub status: String,
    pub priority: String,
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
}

/// Statistics for one priority.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PriorityStats {
    pub priority: String,
    /// Rows per status; every status is present, zero when none. `sent` counts the orders sent in
    /// the last 24 hours (the history is not counted: the cost stays with the pending work).
    pub by_status: BTreeMap<String, u64>,
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
    /// Nearest-rank percentiles of a sorted sample.
    pub fn from_sorted(sorted: &[f64]) -> Self {
        let rank = |p: f64| -> Option<f64> {
            if sorted.is_empty() {
                return None;
            }
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            Some(sorted[idx])
        };
        Self { p50: rank(0.50), p95: rank(0.95), p99: rank(0.99) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerStats {
    pub priorities: Vec<PriorityStats>,
}

/// An unconfirmed order that reconciliation should retry: its stored payload and history.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckOrder {
    pub order_id: String,
    pub status: String,
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

/// The ledger contract. Claim and record take the whole batch so a backend can do each in one
/// round trip; results come back in input order.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Applies pending schema migrations.
    async fn migrate(&self) -> Result<(), BackendError>;

    /// Inserts or takes over each order unless it is terminal or leased by someone else.
    async fn claim(&self, orders: &[ClaimRequest], lease: Duration) -> Result<Vec<Claim>, BackendError>;

    /// Writes outcomes, each only where its claim token still matches. Returns, per recording,
    /// whether it was applied (false: the lease was lost to another invocation). Idempotent: the
    /// token stays on the row until the next claim replaces it, so a retry of a call whose first
    /// attempt committed (its answer lost) applies again, changes nothing, and answers true.
    async fn record(&self, recordings: &[Recording]) -> Result<Vec<bool>, BackendError>;

    async fn stats(&self) -> Result<LedgerStats, BackendError>;

    async fn order_state(&self, order_id: &OrderId) -> Result<Option<OrderState>, BackendError>;

    /// Orders reconciliation should retry: `sending` with an expired lease, or `failed` and not
    /// updated for `failed_for`; oldest first, at most `limit`.
    async fn stuck(&self, failed_for: Duration, limit: usize) -> Result<Vec<StuckOrder>, BackendError>;

    /// Marks orders `abandoned` (reconciliation's attempt bound reached), unless something
    /// changed them meanwhile (they must still be `failed`, or `sending` with an expired lease).
    /// Returns how many were marked.
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
    counts: &BTreeMap<String, u64>,
    oldest_unsent_age_seconds: Option<f64>,
    sent_last_hour: u64,
    time_to_send_seconds: Percentiles,
) -> PriorityStats {
    let by_status: BTreeMap<String, u64> =
        status::ALL.iter().map(|s| ((*s).to_owned(), counts.get(*s).copied().unwrap_or(0))).collect();
    PriorityStats {
        priority: priority.as_str().to_owned(),
        pending: by_status[status::SENDING] + by_status[status::FAILED],
        by_status,
        oldest_unsent_age_seconds,
        sent_last_hour,
        time_to_send_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_notes_must_say_something_short_and_printable() {
        assert_eq!(park_note("  OPS-123 (alice)  "), Ok("OPS-123 (alice)"));
        assert!(park_note("   ").unwrap_err().contains("empty"));
        assert!(park_note(&"x".repeat(201)).unwrap_err().contains("200"));
        assert!(park_note("ticket\u{1b}[2J").unwrap_err().contains("control"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::from_sorted(&v);
        assert_eq!((p.p50, p.p95, p.p99), (Some(50.0), Some(95.0), Some(99.0)));
        assert_eq!(Percentiles::from_sorted(&[]).p50, None);
        assert_eq!(Percentiles::from_sorted(&[3.0]).p99, Some(3.0));
    }
}
