//! The ledger on SQLite: the embedded default, so `make run` needs no server. One connection
//! behind a mutex, each batch in one `BEGIN IMMEDIATE` transaction, which gives the same
//! atomicity the PostgreSQL statement has. Blocking calls run on tokio's blocking pool.

use super::{
    Claim, ClaimRequest, Delivery, DeliveryStats, EventMatch, Ledger, LedgerOps, LedgerStats, OrderState, Percentiles,
    REMOVED_PAYLOAD, Recorded, Recording, Retained, SendEvent, Status, StuckOrder, Takeover, Unconfirmed,
    customer_status, priority_stats,
};
use crate::error::BackendError;
use crate::order::{OrderId, Priority};
use crate::ses_event::{DeliveryEvent, DeliveryState, Effect};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Migrations, in order; applied once each, tracked in `schema_migrations`.
const MIGRATIONS: &[(&str, &str)] = migrations!("sqlite");

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The first hour boundary inside the 24 hours before `now`: the statistics' summary covers whole
/// hours from here (docs/design.md, "Statistics over 24 hours").
fn first_whole_hour(now: i64) -> i64 {
    let since = now - DAY_MS;
    since - since.rem_euclid(HOUR_MS) + HOUR_MS
}

/// Every send before this is in `sent_per_hour` (as far as the last 24 hours go).
fn summarized_until(conn: &Connection) -> Result<i64, BackendError> {
    conn.query_row("SELECT summarized_until FROM sent_summary_progress", [], |r| r.get::<_, i64>(0))
        .optional()
        .map(|until| until.unwrap_or(i64::MIN))
        .map_err(sql_error)
}

/// The histogram of times to confirm over `[since, now]` per priority: the hourly summaries of the
/// whole hours `[first, summarized)` and the sends themselves elsewhere (the same split as the
/// Data API ledger's statement).
static TTC_HISTOGRAM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let bucket = super::ttc_bucket_sql("ms");
    format!(
        "SELECT ttc_ms, SUM(orders) FROM (\
         SELECT ttc_ms, orders FROM sent_per_hour WHERE priority = ?1 AND hour_start >= ?3 AND hour_start < ?4 \
         UNION ALL SELECT {bucket}, 1 FROM (\
         SELECT max(sent_at - first_seen_at, 0) AS ms FROM order_confirmations \
         WHERE priority = ?1 AND status = 'sent' AND sent_at >= ?2 AND sent_at < ?3 \
         UNION ALL SELECT max(sent_at - first_seen_at, 0) AS ms FROM order_confirmations \
         WHERE priority = ?1 AND status = 'sent' AND sent_at >= max(?3, ?4))) GROUP BY ttc_ms"
    )
});

/// One hour's sends, summarized (`?1` the hour's start).
static SUMMARIZE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let bucket = super::ttc_bucket_sql("ms");
    format!(
        "INSERT OR IGNORE INTO sent_per_hour (hour_start, priority, ttc_ms, orders) \
         SELECT ?1, priority, {bucket} AS ttc_ms, COUNT(*) FROM (\
         SELECT priority, max(sent_at - first_seen_at, 0) AS ms FROM order_confirmations \
         WHERE status = 'sent' AND sent_at >= ?1 AND sent_at < ?1 + {HOUR_MS}) GROUP BY priority, ttc_ms"
    )
});

/// One order's extra mails (docs/design.md, "Duplicates counted from SES's events"): every mail
/// seen but the recorded one; while none is recorded, every mail seen after the first.
const DUPLICATES_OF_SQL: &str = "SELECT s.ses_message_id FROM ses_mails s JOIN order_confirmations oc USING (order_id) \
     WHERE s.order_id = ?1 AND CASE WHEN oc.ses_message_id IS NULL THEN s.duplicate \
     ELSE s.ses_message_id != oc.ses_message_id END ORDER BY s.seen_at, s.ses_message_id";

pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteLedger {
    /// Opens (creating if needed) the database file and its parent directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::fatal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(&path)
            .map_err(|e| BackendError::fatal(format!("cannot open SQLite ledger {}: {e}", path.display())))?;
        // WAL lets `stats` read while an invocation writes; busy_timeout makes concurrent local
        // processes (two `invoke`s at once) wait instead of failing.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql_error)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql_error)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Opens an existing database file for reading only, for the commands that only read
    /// (`stats`, `status`): they work on a ledger file this user may not write. When SQLite
    /// cannot create its -shm file beside a WAL database (a read-only directory), the file is
    /// opened as immutable: nothing else can be writing it through that directory either.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        use rusqlite::OpenFlags;
        let path = path.as_ref();
        let cannot =
            |e: rusqlite::Error| BackendError::fatal(format!("cannot open SQLite ledger {}: {e}", path.display()));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let readable =
            |conn: &Connection| conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
        let conn = Connection::open_with_flags(path, flags).map_err(cannot)?;
        let conn = match readable(&conn) {
            Ok(_) => conn,
            Err(_) => {
                let escaped = path.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
                let conn = Connection::open_with_flags(format!("file:{escaped}?immutable=1"), flags).map_err(cannot)?;
                readable(&conn).map_err(cannot)?;
                conn
            }
        };
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql_error)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Whether every migration this build knows has been applied (reads only).
    pub async fn is_current(&self) -> Result<bool, BackendError> {
        self.with_conn(|conn| {
            let has_table: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql_error)?;
            if !has_table {
                return Ok(false);
            }
            let mut stmt = conn.prepare("SELECT version FROM schema_migrations").map_err(sql_error)?;
            let applied = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql_error)?
                .collect::<Result<std::collections::HashSet<String>, _>>()
                .map_err(sql_error)?;
            Ok(MIGRATIONS.iter().all(|(version, _)| applied.contains(*version)))
        })
        .await
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still sound
            // (SQLite rolled the transaction back), so keep using it.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| BackendError::transient(format!("SQLite task failed: {e}")))?
    }
}

fn sql_error(e: rusqlite::Error) -> BackendError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => BackendError::transient(format!("SQLite busy: {e}")),
        _ => BackendError::fatal(format!("SQLite: {e}")),
    }
}

/// A stored status read back: anything else means the row was written by something other than
/// this service, which is a fault, not a value to pass on.
fn stored_status(s: &str) -> Result<Status, BackendError> {
    Status::parse(s).map_err(|e| BackendError::fatal(format!("SQLite ledger holds an unknown {e}")))
}

/// A text column read through a `parse` constructor; a value that fails it is a conversion error
/// naming the column's rule (never the value).
fn column<T>(
    row: &rusqlite::Row<'_>,
    index: usize,
    parse: impl FnOnce(&str) -> Result<T, crate::order::FieldError>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into()))
}

/// A `StuckOrder` from `order_id, status, attempts, payload`.
fn stuck_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<StuckOrder> {
    Ok(StuckOrder {
        order_id: column(r, 0, OrderId::parse)?,
        status: column(r, 1, Status::parse)?,
        attempts: r.get(2)?,
        payload: r.get(3)?,
    })
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[async_trait::async_trait]
impl Ledger for SqliteLedger {
    async fn claim(&self, orders: &[ClaimRequest], lease: Duration) -> Result<Vec<Claim>, BackendError> {
        let orders = orders.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
            let now = crate::clock::unix_ms_now();
            let lease_until = now + lease.as_millis() as i64;
            let mut claims = Vec::with_capacity(orders.len());
            for o in &orders {
                let existing: Option<(String, String, Option<i64>, Option<String>, Option<String>)> = tx
                    .query_row(
                        "SELECT payload_sha256, status, lease_until, last_error, \
                         (SELECT ses_message_id FROM ses_mails s WHERE s.order_id = oc.order_id \
                          ORDER BY seen_at, ses_message_id LIMIT 1) \
                         FROM order_confirmations oc WHERE order_id = ?1",
                        [o.order_id.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .optional()
                    .map_err(sql_error)?;
                let existing = match existing {
                    Some((sha, st, until, reason, sent)) => Some((sha, stored_status(&st)?, until, reason, sent)),
                    None => None,
                };
                let token = Uuid::new_v4();
                let claim = match existing {
                    None => {
                        tx.execute(
                            "INSERT INTO order_confirmations (order_id, payload_sha256, priority, payload, status, \
                             claim_token, lease_until, attempts, first_seen_at, updated_at) \
                             VALUES (?1, ?2, ?3, ?4, 'sending', ?5, ?6, 1, ?7, ?7)",
                            params![
                                o.order_id.as_str(),
                                o.payload_sha256,
                                o.priority.as_str(),
                                o.payload,
                                token.to_string(),
                                lease_until,
                                now
                            ],
                        )
                        .map_err(sql_error)?;
                        Claim::Claimed { token, takeover: None, sent_earlier: None }
                    }
                    Some((sha, ..)) if sha != o.payload_sha256 => Claim::Conflict,
                    Some((_, Status::Sent, ..)) => Claim::AlreadySent,
                    Some((_, st, _, reason, _)) if st.is_terminal() => {
                        Claim::Terminal { status: st, reason: reason.unwrap_or_default() }
                    }
                    Some((_, Status::Sending, Some(until), ..)) if until > now => {
                        Claim::InFlight { lease_remaining: Duration::from_millis((until - now) as u64) }
                    }
                    Some((_, previous, until, _, sent_earlier)) => {
                        tx.execute(
                            "UPDATE order_confirmations SET status = 'sending', claim_token = ?2, lease_until = ?3, \
                             attempts = attempts + 1, updated_at = ?4 WHERE order_id = ?1",
                            params![o.order_id.as_str(), token.to_string(), lease_until, now],
                        )
                        .map_err(sql_error)?;
                        let takeover = (previous == Status::Sending).then(|| Takeover {
                            lease_ended_ago: Duration::from_millis(until.map_or(0, |u| (now - u).max(0)) as u64),
                        });
                        Claim::Claimed { token, takeover, sent_earlier }
                    }
                };
                claims.push(claim);
            }
            tx.commit().map_err(sql_error)?;
            Ok(claims)
        })
        .await
    }

    async fn record(&self, recordings: &[Recording]) -> Result<Vec<Recorded>, BackendError> {
        let recordings = recordings.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
            let now = crate::clock::unix_ms_now();
            let mut applied = Vec::with_capacity(recordings.len());
            for r in &recordings {
                let outcome = &r.outcome;
                let sent_at = (r.status() == Status::Sent).then_some(now);
                // The token stays on the row (only the next claim replaces it), so a retry of a
                // record that already committed applies again without changing anything; the
                // attempt is given back only once, while the lease is live (a takeover's deferral
                // stays `sending`, its lease ended).
                let n = tx
                    .execute(
                        "UPDATE order_confirmations SET \
                         attempts = CASE WHEN ?8 AND status = 'sending' AND lease_until > ?7 THEN max(attempts - 1, 0) ELSE attempts END, \
                         status = ?3, ses_message_id = COALESCE(?4, ses_message_id), last_error = ?5, \
                         sent_at = CASE WHEN status = 'sent' THEN sent_at ELSE COALESCE(?6, sent_at) END, \
                         lease_until = CASE WHEN ?3 = 'sending' THEN min(coalesce(lease_until, ?7), ?7) END, \
                         updated_at = ?7 WHERE order_id = ?1 AND claim_token = ?2",
                        params![
                            r.order_id.as_str(),
                            r.token.to_string(),
                            r.status().as_str(),
                            outcome.message_id(),
                            outcome.last_error(),
                            sent_at,
                            now,
                            outcome.gives_back_attempt()
                        ],
                    )
                    .map_err(sql_error)?;
                let extra_mail = match outcome.message_id() {
                    Some(message_id) if n == 1 && r.status() == Status::Sent => {
                        known_mail(&tx, r.order_id.as_str(), message_id, Some(&r.token.to_string()), now)?
                            == Some(true)
                    }
                    _ => false,
                };
                applied.push(Recorded { applied: n == 1, extra_mail });
            }
            tx.commit().map_err(sql_error)?;
            Ok(applied)
        })
        .await
    }

    async fn sent_earlier(&self, claims: &[(OrderId, Uuid)]) -> Result<Vec<Option<String>>, BackendError> {
        let claims: Vec<(String, String)> = claims.iter().map(|(id, t)| (id.to_string(), t.to_string())).collect();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ses_message_id FROM ses_mails WHERE order_id = ?1 \
                     AND (claim_token IS NULL OR claim_token != ?2) ORDER BY seen_at, ses_message_id LIMIT 1",
                )
                .map_err(sql_error)?;
            claims
                .iter()
                .map(|(id, token)| stmt.query_row(params![id, token], |r| r.get(0)).optional().map_err(sql_error))
                .collect()
        })
        .await
    }
}

#[async_trait::async_trait]
impl LedgerOps for SqliteLedger {
    async fn migrate(&self) -> Result<Vec<&'static str>, BackendError> {
        self.with_conn(|conn| {
            let mut ran = Vec::new();
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .map_err(sql_error)?;
            for (version, sql) in MIGRATIONS {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
                let applied: bool = tx
                    .query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| {
                        r.get(0)
                    })
                    .map_err(sql_error)?;
                if !applied {
                    tx.execute_batch(sql).map_err(sql_error)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                        params![version, crate::clock::unix_ms_now()],
                    )
                    .map_err(sql_error)?;
                    ran.push(*version);
                }
                tx.commit().map_err(sql_error)?;
            }
            Ok(ran)
        })
        .await
    }

    async fn stats(&self) -> Result<LedgerStats, BackendError> {
        self.with_conn(|conn| {
            let now = crate::clock::unix_ms_now();
            let summarized = summarized_until(conn)?;
            let mut priorities = Vec::new();
            for p in Priority::ALL {
                let mut counts = BTreeMap::new();
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT status, COUNT(*) FROM order_confirmations \
                         WHERE priority = ?1 AND status IN ('sending', 'failed', 'rejected', 'abandoned') GROUP BY status",
                    )
                    .map_err(sql_error)?;
                let rows = stmt
                    .query_map(params![p.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(sql_error)?;
                for row in rows {
                    let (s, n) = row.map_err(sql_error)?;
                    counts.insert(stored_status(&s)?, n as u64);
                }
                let oldest: Option<i64> = conn
                    .query_row(
                        "SELECT MIN(first_seen_at) FROM order_confirmations WHERE priority = ?1 AND status IN ('sending', 'failed')",
                        [p.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(sql_error)?;
                let sent_last_hour: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM order_confirmations WHERE priority = ?1 AND status = 'sent' AND sent_at >= ?2",
                        params![p.as_str(), now - 3_600_000],
                        |r| r.get(0),
                    )
                    .map_err(sql_error)?;
                let mut stmt = conn.prepare_cached(&TTC_HISTOGRAM_SQL).map_err(sql_error)?;
                let histogram: Vec<(i64, u64)> = stmt
                    .query_map(params![p.as_str(), now - DAY_MS, first_whole_hour(now), summarized], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                    })
                    .map_err(sql_error)?
                    .collect::<Result<_, _>>()
                    .map_err(sql_error)?;
                counts.insert(Status::Sent, histogram.iter().map(|(_, n)| n).sum());
                let oldest_age = oldest.map(|t| (now - t) as f64 / 1000.0);
                let ttc = Percentiles::from_histogram(&histogram);
                priorities.push(priority_stats(p, &counts, oldest_age, sent_last_hour as u64, ttc));
            }
            Ok(LedgerStats { priorities })
        })
        .await
    }

    async fn order_state(&self, order_id: &OrderId) -> Result<Option<OrderState>, BackendError> {
        let id = order_id.as_str().to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT order_id, status, priority, attempts, last_error, ses_message_id, first_seen_at, updated_at, \
                 sent_at, lease_until, parked_at, parked_note, payload_removed_at, \
                 delivery_state, delivery_detail, delivery_at, send_event_message_id, send_event_claim_token, \
                 send_event_at \
                 FROM order_confirmations WHERE order_id = ?1",
                [id],
                |r| {
                    let status = column(r, 1, Status::parse)?;
                    // The schema's CHECK admits only the states DeliveryState names.
                    let delivery_state = r.get::<_, Option<String>>(13)?.and_then(|s| DeliveryState::parse(&s).ok());
                    Ok(OrderState {
                        order_id: column(r, 0, OrderId::parse)?,
                        status,
                        priority: column(r, 2, Priority::parse)?,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        ses_message_id: r.get(5)?,
                        first_seen_at: from_ms(r.get(6)?),
                        updated_at: from_ms(r.get(7)?),
                        sent_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
                        lease_until: r.get::<_, Option<i64>>(9)?.map(from_ms),
                        parked_at: r.get::<_, Option<i64>>(10)?.map(from_ms),
                        parked_note: r.get(11)?,
                        payload_removed_at: r.get::<_, Option<i64>>(12)?.map(from_ms),
                        customer_status: customer_status(status, delivery_state),
                        delivery: Delivery {
                            state: delivery_state,
                            detail: r.get(14)?,
                            at: r.get::<_, Option<i64>>(15)?.map(from_ms),
                            send_event: match (r.get::<_, Option<String>>(16)?, r.get::<_, Option<i64>>(18)?) {
                                (Some(message_id), Some(at)) => Some(SendEvent {
                                    message_id,
                                    claim_token: r.get::<_, Option<String>>(17)?.and_then(|t| Uuid::parse_str(&t).ok()),
                                    at: from_ms(at),
                                }),
                                _ => None,
                            },
                            duplicate_message_ids: Vec::new(),
                        },
                    })
                },
            )
            .optional()
            .map_err(sql_error)?
            .map(|mut state| {
                let mut stmt = conn.prepare_cached(DUPLICATES_OF_SQL).map_err(sql_error)?;
                state.delivery.duplicate_message_ids = stmt
                    .query_map([state.order_id.as_str()], |r| r.get(0))
                    .map_err(sql_error)?
                    .collect::<Result<_, _>>()
                    .map_err(sql_error)?;
                Ok(state)
            })
            .transpose()
        })
        .await
    }

    async fn stuck(&self, failed_for: Duration, limit: usize) -> Result<Vec<StuckOrder>, BackendError> {
        self.with_conn(move |conn| {
            let now = crate::clock::unix_ms_now();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT order_id, status, attempts, payload FROM order_confirmations \
                     WHERE (status = 'sending' AND lease_until <= ?1) OR (status = 'failed' AND updated_at <= ?2) \
                     ORDER BY first_seen_at LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![now, now - failed_for.as_millis() as i64, limit as i64], stuck_order)
                .map_err(sql_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
        })
        .await
    }

    async fn abandon(&self, order_ids: &[OrderId], reason: &str) -> Result<u64, BackendError> {
        let ids: Vec<String> = order_ids.iter().map(|i| i.as_str().to_owned()).collect();
        let reason = reason.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
            let now = crate::clock::unix_ms_now();
            let mut n = 0;
            for id in &ids {
                n += tx
                    .execute(
                        "UPDATE order_confirmations SET status = 'abandoned', last_error = ?2 || COALESCE('; last error: ' || NULLIF(last_error, ''), ''), claim_token = NULL, \
                         lease_until = NULL, updated_at = ?3 \
                         WHERE order_id = ?1 AND (status = 'failed' OR (status = 'sending' AND lease_until <= ?3))",
                        params![id, reason, now],
                    )
                    .map_err(sql_error)? as u64;
            }
            tx.commit().map_err(sql_error)?;
            Ok(n)
        })
        .await
    }

    async fn unconfirmed(&self, grace: Duration) -> Result<Unconfirmed, BackendError> {
        self.with_conn(move |conn| {
            let now = crate::clock::unix_ms_now();
            let (count, oldest): (i64, Option<i64>) = conn
                .query_row(
                    "SELECT COUNT(*), MIN(first_seen_at) FROM order_confirmations \
                     WHERE status IN ('sending', 'failed', 'abandoned') AND parked_at IS NULL AND first_seen_at <= ?1",
                    [now - grace.as_millis() as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql_error)?;
            Ok(Unconfirmed { count: count as u64, oldest_seconds: oldest.map_or(0.0, |t| (now - t) as f64 / 1000.0) })
        })
        .await
    }

    async fn release(&self, order_id: &OrderId) -> Result<Option<StuckOrder>, BackendError> {
        let id = order_id.as_str().to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "UPDATE order_confirmations SET status = 'failed', attempts = 0, parked_at = NULL, parked_note = NULL, \
                 last_error = 'released for retry (was ' || status || ': ' || COALESCE(last_error, '') || ')', \
                 updated_at = ?2 WHERE order_id = ?1 AND status IN ('abandoned', 'rejected') \
                 RETURNING order_id, status, attempts, payload",
                params![id, crate::clock::unix_ms_now()],
                stuck_order,
            )
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    async fn park(&self, order_id: &OrderId, note: &str) -> Result<Option<OrderState>, BackendError> {
        let id = order_id.as_str().to_owned();
        let note = note.to_owned();
        let parked = self
            .with_conn(move |conn| {
                conn.execute(
                    "UPDATE order_confirmations SET parked_at = ?2, parked_note = ?3 \
                     WHERE order_id = ?1 AND status = 'abandoned'",
                    params![id, crate::clock::unix_ms_now(), note],
                )
                .map_err(sql_error)
            })
            .await?;
        if parked == 0 {
            return Ok(None);
        }
        self.order_state(order_id).await
    }

    async fn retain(
        &self,
        payload_after: Duration,
        delete_after: Duration,
        limit: usize,
    ) -> Result<Retained, BackendError> {
        self.with_conn(move |conn| {
            let now = crate::clock::unix_ms_now();
            let limit = limit as i64;
            // Two short statements, each bounded by `limit` through its partial index (0004).
            let payloads_removed = conn
                .execute(
                    "UPDATE order_confirmations SET payload = ?1, payload_removed_at = ?2 WHERE order_id IN (\
                     SELECT order_id FROM order_confirmations \
                     WHERE status = 'sent' AND payload_removed_at IS NULL AND sent_at <= ?3 \
                     ORDER BY sent_at LIMIT ?4)",
                    params![REMOVED_PAYLOAD, now, now - payload_after.as_millis() as i64, limit],
                )
                .map_err(sql_error)? as u64;
            let rows_deleted = conn
                .execute(
                    "DELETE FROM order_confirmations WHERE order_id IN (\
                     SELECT order_id FROM order_confirmations \
                     WHERE status IN ('sent', 'rejected', 'abandoned') AND first_seen_at <= ?1 \
                     ORDER BY first_seen_at LIMIT ?2)",
                    params![now - delete_after.as_millis() as i64, limit],
                )
                .map_err(sql_error)? as u64;
            Ok(Retained { payloads_removed, rows_deleted })
        })
        .await
    }

    async fn summarize_sends(&self) -> Result<bool, BackendError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
            let now = crate::clock::unix_ms_now();
            let first = first_whole_hour(now);
            let hour = summarized_until(&tx)?.max(first);
            if hour + HOUR_MS > now - super::SUMMARY_SETTLE.as_millis() as i64 {
                return Ok(false);
            }
            tx.execute(&SUMMARIZE_SQL, [hour]).map_err(sql_error)?;
            tx.execute("DELETE FROM sent_per_hour WHERE hour_start < ?1", [first]).map_err(sql_error)?;
            tx.execute(
                "INSERT INTO sent_summary_progress (singleton, summarized_until) VALUES (1, ?1) \
                 ON CONFLICT (singleton) DO UPDATE SET summarized_until = excluded.summarized_until \
                 WHERE summarized_until < excluded.summarized_until",
                [hour + HOUR_MS],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(true)
        })
        .await
    }

    async fn apply_delivery_events(&self, events: &[DeliveryEvent]) -> Result<Vec<EventMatch>, BackendError> {
        let events = events.to_vec();
        self.with_conn(move |conn| apply_delivery_events(conn, &events)).await
    }

    async fn delivery_stats(&self) -> Result<Vec<DeliveryStats>, BackendError> {
        self.with_conn(|conn| {
            let since = crate::clock::unix_ms_now() - 24 * 3_600_000;
            let mut stmt = conn
                .prepare(
                    "SELECT priority, delivery_state, count(*) FROM order_confirmations \
                     WHERE status = 'sent' AND sent_at >= ?1 GROUP BY priority, delivery_state",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))
                .map_err(sql_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_error)?;
            let mut stmt = conn
                .prepare(
                    "SELECT oc.priority, count(*) FROM ses_mails s JOIN order_confirmations oc USING (order_id) \
                     WHERE s.duplicate AND s.seen_at >= ?1 GROUP BY oc.priority",
                )
                .map_err(sql_error)?;
            let duplicates = stmt
                .query_map([since], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(sql_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_error)?;
            Ok(super::delivery_stats_from_rows(&rows, &duplicates))
        })
        .await
    }
}

/// An event's order as [`apply_delivery_events`] reads it: id, priority, delivery state, Send
/// event time, recorded SES message id.
type TargetRow = (String, String, Option<String>, Option<i64>, Option<String>);

/// The SQLite side of [`Ledger::apply_delivery_events`]: one transaction, the events in input
/// order, each fenced against the row as the previous ones left it (the same result as the
/// PostgreSQL statement, which ranks the batch's events per order first).
fn apply_delivery_events(conn: &mut Connection, events: &[DeliveryEvent]) -> Result<Vec<EventMatch>, BackendError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
    let now = crate::clock::unix_ms_now();
    let mut matches = Vec::with_capacity(events.len());
    for e in events {
        let target_id = match event_target(&tx, e)? {
            Ok(id) => id,
            Err(unmatched) => {
                matches.push(unmatched);
                continue;
            }
        };
        let target: Option<TargetRow> = tx
            .query_row(
                "SELECT order_id, priority, delivery_state, send_event_at, ses_message_id \
                 FROM order_confirmations WHERE order_id = ?1",
                [target_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(sql_error)?;
        let Some(row) = target else {
            matches.push(EventMatch::Unknown);
            continue;
        };
        let duplicate = note_mail(&tx, e, &row.0, row.4.as_deref(), now)?;
        apply_effect(&tx, e, &row)?;
        let (order_id, priority) = (row.0, row.1);
        let order_id = OrderId::parse(&order_id).map_err(|e| BackendError::fatal(format!("ledger row: {e}")))?;
        let priority = Priority::parse(&priority).map_err(|e| BackendError::fatal(format!("ledger row: {e}")))?;
        matches.push(EventMatch::Order { order_id, priority, duplicate });
    }
    tx.commit().map_err(sql_error)?;
    Ok(matches)
}

/// The order an event belongs to (`Ok`), or how it is left unmatched (`Err`): the order that holds
/// its message id (recorded it, or an earlier event brought it) must be the order its tag names.
fn event_target(tx: &rusqlite::Transaction<'_>, e: &DeliveryEvent) -> Result<Result<String, EventMatch>, BackendError> {
    let message_id = e.message_id.as_str();
    let owners: Vec<String> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT order_id FROM order_confirmations WHERE ses_message_id = ?1 \
                 UNION SELECT order_id FROM ses_mails WHERE ses_message_id = ?1",
            )
            .map_err(sql_error)?;
        stmt.query_map([message_id], |r| r.get(0)).map_err(sql_error)?.collect::<Result<_, _>>().map_err(sql_error)?
    };
    Ok(match (&e.order_id, owners.as_slice()) {
        (Some(tag), []) => Ok(tag.as_str().to_owned()),
        (Some(tag), [owner]) if owner == tag.as_str() => Ok(owner.clone()),
        (None, [owner]) => Ok(owner.clone()),
        (None, []) => Err(EventMatch::Unknown),
        // Tagged with one order, the message id another's (or several): applied to none.
        (Some(tag), _) => {
            let held: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM order_confirmations WHERE order_id = ?1)",
                    [tag.as_str()],
                    |r| r.get(0),
                )
                .map_err(sql_error)?;
            Err(if held { EventMatch::Contradiction } else { EventMatch::Unknown })
        }
        (None, _) => Err(EventMatch::Contradiction),
    })
}

/// The mail's first event makes it one of the order's known mails; true when that makes it a
/// duplicate: the order already has another known mail (recorded, or seen through an earlier
/// event). The order's recorded mail is its own: known before any event of another mail is judged
/// (the record step adds it; a row recorded before it did is caught up here, as a first mail only,
/// so it never counts).
fn note_mail(
    tx: &rusqlite::Transaction<'_>,
    e: &DeliveryEvent,
    order_id: &str,
    recorded: Option<&str>,
    now: i64,
) -> Result<bool, BackendError> {
    if let Some(own) = recorded {
        first_mail_only(tx, order_id, own, now)?;
    }
    let token = e.claim_token.map(|t| t.to_string());
    Ok(known_mail(tx, order_id, e.message_id.as_str(), token.as_deref(), now)? == Some(true))
}

/// Makes `message_id` one of the order's known mails (`ses_mails`, docs/design.md, "Duplicates
/// counted from SES's events"): `None` when it was known already, else whether it is an extra mail
/// (the order had another), marked `duplicate` and to be counted once. The same rule as the
/// PostgreSQL statements, where the unique index of one first mail per order (0009) decides.
fn known_mail(
    tx: &rusqlite::Transaction<'_>,
    order_id: &str,
    message_id: &str,
    claim_token: Option<&str>,
    now: i64,
) -> Result<Option<bool>, BackendError> {
    let known: bool = tx
        .query_row("SELECT EXISTS (SELECT 1 FROM ses_mails WHERE ses_message_id = ?1)", [message_id], |r| r.get(0))
        .map_err(sql_error)?;
    if known {
        return Ok(None);
    }
    let extra: bool = tx
        .query_row("SELECT EXISTS (SELECT 1 FROM ses_mails WHERE order_id = ?1)", [order_id], |r| r.get(0))
        .map_err(sql_error)?;
    tx.execute(
        "INSERT INTO ses_mails (ses_message_id, order_id, claim_token, seen_at, duplicate) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![message_id, order_id, claim_token, now, extra],
    )
    .map_err(sql_error)?;
    Ok(Some(extra))
}

/// Makes the recorded `message_id` the order's first known mail when the order has none yet; does
/// nothing otherwise (it is known already, or another mail came first: after migration 0009 the
/// recorded mail is always known by then).
fn first_mail_only(
    tx: &rusqlite::Transaction<'_>,
    order_id: &str,
    message_id: &str,
    now: i64,
) -> Result<(), BackendError> {
    tx.execute(
        "INSERT OR IGNORE INTO ses_mails (ses_message_id, order_id, claim_token, seen_at, duplicate) \
         SELECT ?1, ?2, NULL, ?3, 0 WHERE NOT EXISTS (SELECT 1 FROM ses_mails WHERE order_id = ?2)",
        params![message_id, order_id, now],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// What the event says about the order: a delivery state (only the order's own mail says how its
/// confirmation fared, fenced by rank), or the Send event (the latest kept).
fn apply_effect(tx: &rusqlite::Transaction<'_>, e: &DeliveryEvent, row: &TargetRow) -> Result<(), BackendError> {
    let (order_id, _, stored_state, send_event_at, recorded) = row;
    let message_id = e.message_id.as_str();
    let at = (e.occurred_at.unix_timestamp_nanos() / 1_000_000) as i64;
    match e.effect {
        Effect::State(state) if recorded.as_deref().is_none_or(|r| r == message_id) => {
            let stored_rank =
                stored_state.as_deref().and_then(|s| DeliveryState::parse(s).ok()).map_or(0, DeliveryState::rank);
            if state.rank() > stored_rank {
                tx.execute(
                    "UPDATE order_confirmations SET delivery_state = ?2, delivery_detail = ?3, delivery_at = ?4 \
                     WHERE order_id = ?1",
                    params![order_id, state.as_str(), e.detail, at],
                )
                .map_err(sql_error)?;
            }
        }
        Effect::State(_) => {}
        Effect::Send => {
            if send_event_at.is_none_or(|stored| at > stored) {
                tx.execute(
                    "UPDATE order_confirmations SET send_event_message_id = ?2, send_event_claim_token = ?3, \
                     send_event_at = ?4 WHERE order_id = ?1",
                    params![order_id, message_id, e.claim_token.map(|t| t.to_string()), at],
                )
                .map_err(sql_error)?;
            }
        }
    }
    Ok(())
}
