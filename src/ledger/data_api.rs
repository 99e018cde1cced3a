//! The ledger on Aurora PostgreSQL through the RDS Data API (production).
//!
//! Claim and record are one `ExecuteStatement` each for the whole batch: the Data API rejects
//! array parameters, so the batch travels as one JSON text parameter that the statement expands
//! with `jsonb_to_recordset(CAST(:batch AS jsonb))`. Each statement is atomic on its own, so no
//! Data API transaction is needed on the hot path.
//!
//! The Data API's size limits (docs/design.md, "The Data API's limits"): a request is at most
//! 4 MiB, a response at most 1 MiB, a returned row at most 64 KB. Claim and record requests are
//! split by size ([`Limits`]), so a batch that fits stays one call each; no statement returns a
//! payload whole: stored payloads come back in pieces of at most [`Limits::piece_bytes`], a page of
//! pieces per call.

use super::{
    Claim, ClaimRequest, Delivery, DeliveryStats, EventMatch, Ledger, LedgerOps, LedgerStats, OrderState, Percentiles,
    REMOVED_PAYLOAD, Recorded, Recording, Retained, SendEvent, Status, StuckOrder, Takeover, Unconfirmed,
    customer_status, priority_stats,
};
use crate::error::{BackendError, Service, from_sdk};
use crate::order::{OrderId, Priority};
use crate::ses_event::{DeliveryEvent, DeliveryState, Effect};
use aws_sdk_rdsdata::Client;
use aws_sdk_rdsdata::types::{Field, SqlParameter};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Migrations, in order. Each file's statements are separated by a line ending in `;`.
const MIGRATIONS: &[(&str, &str)] = migrations!("postgres");

/// Insert-or-take-over for the whole batch. A row is taken over only when it has the same
/// payload and is `failed` or `sending` with an expired lease. The outer query reports, per input
/// row in input order, the new token (claimed) or the pre-statement state (why not), and how long
/// the previous lease has had to run (still) or has been over (a takeover), and the Send event
/// recorded for an earlier claim's mail.
const CLAIM_SQL: &str = "\
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb))
        AS b(ord int, order_id text, payload_sha256 text, priority text, payload jsonb)
),
before AS (
    SELECT oc.order_id, oc.status, oc.payload_sha256, oc.last_error, oc.lease_until,
        (SELECT s.ses_message_id FROM ses_mails s WHERE s.order_id = oc.order_id
         ORDER BY s.seen_at, s.ses_message_id LIMIT 1) AS earlier_mail
    FROM order_confirmations oc JOIN input USING (order_id)
),
claimed AS (
    INSERT INTO order_confirmations AS oc
        (order_id, payload_sha256, priority, payload, status, claim_token, lease_until, attempts, first_seen_at, updated_at)
    SELECT order_id, payload_sha256, priority, payload, 'sending', gen_random_uuid(),
           now() + make_interval(secs => CAST(:lease_ms AS double precision) / 1000), 1, now(), now()
    FROM input
    ON CONFLICT (order_id) DO UPDATE SET
        status = 'sending', claim_token = gen_random_uuid(), lease_until = EXCLUDED.lease_until,
        attempts = oc.attempts + 1, updated_at = now()
    WHERE oc.payload_sha256 = EXCLUDED.payload_sha256
      AND (oc.status = 'failed' OR (oc.status = 'sending' AND oc.lease_until <= now()))
    RETURNING oc.order_id, oc.claim_token
)
SELECT i.ord, CAST(c.claim_token AS text), b.status, b.payload_sha256 = i.payload_sha256, left(b.last_error, 1000),
    CAST(GREATEST(EXTRACT(EPOCH FROM b.lease_until - now()) * 1000, 0) AS bigint),
    CAST(GREATEST(EXTRACT(EPOCH FROM now() - b.lease_until) * 1000, 0) AS bigint), b.earlier_mail
FROM input i LEFT JOIN claimed c USING (order_id) LEFT JOIN before b USING (order_id)
ORDER BY i.ord";

/// Adds the CTE `new_mails (message_id, target, token, ord, extra_allowed)` to the orders' known
/// mails (`ses_mails`) as [`APPLY_EVENTS_SQL`] describes: `firsts`, the mails that became their
/// order's first, and `extras (ses_message_id, order_id)`, those added as extra mails (counted).
const KNOWN_MAILS: &str = "\
firsts AS (
    INSERT INTO ses_mails (ses_message_id, order_id, claim_token, duplicate)
    SELECT message_id, target, token, false FROM new_mails ORDER BY target, ord
    ON CONFLICT DO NOTHING
    RETURNING ses_message_id
),
extras AS (
    INSERT INTO ses_mails (ses_message_id, order_id, claim_token, duplicate)
    SELECT message_id, target, token, true FROM new_mails n
    WHERE n.extra_allowed AND NOT EXISTS (SELECT 1 FROM firsts f WHERE f.ses_message_id = n.message_id)
    ORDER BY target, ord
    ON CONFLICT DO NOTHING
    RETURNING ses_message_id, order_id
)";

/// Writes every outcome where the claim token still matches (fencing), and reports which did. The
/// token stays on the row (only the next claim replaces it), so a retry of a call that already
/// committed applies again and changes nothing; a released claim gives its attempt back once,
/// while its lease is live. A takeover's outcome that is not final stays `sending` with its lease
/// ended now (`Recording::status`), so the next claim is a takeover again.
///
/// A mail recorded as sent becomes one of the order's known mails (`ses_mails`) in the same
/// statement, by the rule [`APPLY_EVENTS_SQL`] describes: the first if the order has none, else an extra mail
/// (an event brought another one first), reported once. A retry finds it known and reports nothing.
static RECORD_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "\
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb))
        AS b(ord int, order_id text, token uuid, status text, ses_message_id text, last_error text, released boolean)
),
updated AS (
    UPDATE order_confirmations oc SET
        attempts = CASE WHEN i.released AND oc.status = 'sending' AND oc.lease_until > now() THEN GREATEST(oc.attempts - 1, 0) ELSE oc.attempts END,
        status = i.status,
        ses_message_id = COALESCE(i.ses_message_id, oc.ses_message_id),
        last_error = i.last_error,
        sent_at = CASE WHEN oc.status = 'sent' THEN oc.sent_at WHEN i.status = 'sent' THEN now() ELSE oc.sent_at END,
        lease_until = CASE WHEN i.status = 'sending' THEN LEAST(COALESCE(oc.lease_until, now()), now()) END,
        updated_at = now()
    FROM input i
    WHERE oc.order_id = i.order_id AND oc.claim_token = i.token
    RETURNING oc.order_id
),
new_mails AS (
    SELECT i.ses_message_id AS message_id, i.order_id AS target, i.token, 0 AS ord, true AS extra_allowed
    FROM input i JOIN updated u USING (order_id)
    WHERE i.status = 'sent' AND i.ses_message_id IS NOT NULL
),
{KNOWN_MAILS}
SELECT i.ord, u.order_id IS NOT NULL, x.order_id IS NOT NULL
FROM input i LEFT JOIN updated u USING (order_id) LEFT JOIN extras x USING (order_id) ORDER BY i.ord"
    )
});

/// The first hour boundary inside the last 24 hours: the statistics' summary covers whole hours
/// from here (docs/design.md, "Statistics over 24 hours").
const FIRST_WHOLE_HOUR: &str = "(date_trunc('hour', now() - interval '24 hours') + interval '1 hour')";

/// Every send before this is in `sent_per_hour` (as far as the last 24 hours go).
const SUMMARIZED_UNTIL: &str = "COALESCE((SELECT summarized_until FROM sent_summary_progress), '-infinity')";

/// A sent row's time to confirm in whole milliseconds, as `ms`.
const TTC_MS: &str = "CAST(GREATEST(floor(EXTRACT(EPOCH FROM sent_at - first_seen_at) * 1000), 0) AS bigint) AS ms";

/// Everything `stats` shows, in one statement that costs what the pending work costs, not the
/// history: rows `(kind, priority, status, ms, n)`.
/// - `count`: unfinished and refused rows per status, through `order_confirmations_unfinished`
///   (0005);
/// - `sent_1h`: sends of the last hour, `oldest`: the oldest unsent order's age in ms;
/// - `ttc`: the histogram of times to confirm over the last 24 hours: the hourly summaries
///   (0006) of the whole hours, and the sends themselves only in the part of the oldest hour inside
///   the window and since the summary ends (the newest hour or so), through
///   `order_confirmations_recent_sent` (0005, index-only).
///
/// The newest range also has an upper bound (no visible send is later than `now()`) that the
/// planner can estimate: with only the lower bound, which comes from a subquery, it expects a
/// third of the table, and a plan that expensive is JIT-compiled (16 ms of compiling for 1 ms of
/// work, measured at 2 million rows).
static STATS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let bucket = super::ttc_bucket_sql("ms");
    format!(
        "\
SELECT 'count', priority, status, CAST(NULL AS bigint), count(*) FROM order_confirmations
WHERE status IN ('sending', 'failed', 'rejected', 'abandoned') GROUP BY priority, status
UNION ALL
SELECT 'sent_1h', priority, NULL, NULL, count(*) FROM order_confirmations
WHERE status = 'sent' AND sent_at >= now() - interval '1 hour' GROUP BY priority
UNION ALL
SELECT 'oldest', priority, NULL, CAST(floor(EXTRACT(EPOCH FROM now() - min(first_seen_at)) * 1000) AS bigint), NULL
FROM order_confirmations WHERE status IN ('sending', 'failed') GROUP BY priority
UNION ALL
SELECT 'ttc', priority, NULL, ttc_ms, CAST(sum(orders) AS bigint) FROM (
    SELECT priority, ttc_ms, orders FROM sent_per_hour
    WHERE hour_start >= {FIRST_WHOLE_HOUR} AND hour_start < {SUMMARIZED_UNTIL}
    UNION ALL
    SELECT priority, {bucket}, 1 FROM (
        SELECT priority, {TTC_MS} FROM order_confirmations
        WHERE status = 'sent' AND sent_at >= now() - interval '24 hours' AND sent_at < {FIRST_WHOLE_HOUR}
        UNION ALL
        SELECT priority, {TTC_MS} FROM order_confirmations
        WHERE status = 'sent' AND sent_at >= GREATEST({SUMMARIZED_UNTIL}, {FIRST_WHOLE_HOUR})
            AND sent_at < now() + interval '1 hour'
    ) AS unsummarized
) AS sends GROUP BY priority, ttc_ms"
    )
});

/// One step of the statistics' summary: the oldest whole hour inside the last 24 hours not yet
/// summarized, once it has been over for `:settle_ms`, in one statement (the hour's sends, the
/// progress mark, and forgetting summaries that left the window). An hour's rows are inserted at
/// most once (the primary key; a concurrent step's copy does nothing), and the mark only moves
/// forward. The hour's range is repeated in bounds the planner can estimate (the due hour is
/// inside the last 24 hours and over), for the reason given at [`STATS_SQL`].
static SUMMARIZE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let bucket = super::ttc_bucket_sql("ms");
    format!(
        "\
WITH due AS (
    SELECT h FROM (SELECT GREATEST({SUMMARIZED_UNTIL}, {FIRST_WHOLE_HOUR}) AS h) AS next
    WHERE h + interval '1 hour' <= now() - make_interval(secs => CAST(:settle_ms AS double precision) / 1000)
),
summarized AS (
    INSERT INTO sent_per_hour (hour_start, priority, ttc_ms, orders)
    SELECT due.h, s.priority, s.ttc_ms, count(*) FROM due CROSS JOIN LATERAL (
        SELECT priority, {bucket} AS ttc_ms FROM (
            SELECT priority, {TTC_MS} FROM order_confirmations
            WHERE status = 'sent' AND sent_at >= due.h AND sent_at < due.h + interval '1 hour'
                AND sent_at >= now() - interval '25 hours' AND sent_at < now()
        ) AS sent
    ) AS s
    GROUP BY due.h, s.priority, s.ttc_ms
    ON CONFLICT DO NOTHING
),
forgotten AS (
    DELETE FROM sent_per_hour WHERE hour_start < {FIRST_WHOLE_HOUR}
)
INSERT INTO sent_summary_progress (singleton, summarized_until)
SELECT true, h + interval '1 hour' FROM due
ON CONFLICT (singleton) DO UPDATE SET summarized_until = EXCLUDED.summarized_until
WHERE sent_summary_progress.summarized_until < EXCLUDED.summarized_until"
    )
});

/// The stuck orders without their payloads (fetched in pieces by [`PAYLOAD_PIECES_SQL`]): each
/// payload's size in bytes instead, so the fetch can be paged by size.
const STUCK_SQL: &str = "\
SELECT order_id, status, attempts, octet_length(CAST(payload AS text)) FROM order_confirmations
WHERE (status = 'sending' AND lease_until <= now())
   OR (status = 'failed' AND updated_at <= now() - make_interval(secs => CAST(:failed_ms AS double precision) / 1000))
ORDER BY first_seen_at LIMIT :limit";

/// For each `(order_id, token)`, a mail of another claim (or an untagged one) that any SES event
/// told of; one row per input, in input order.
const SENT_EARLIER_SQL: &str = "\
SELECT i.ord, (SELECT s.ses_message_id FROM ses_mails s
    WHERE s.order_id = i.order_id AND s.claim_token IS DISTINCT FROM i.token
    ORDER BY s.seen_at, s.ses_message_id LIMIT 1)
FROM jsonb_to_recordset(CAST(:batch AS jsonb)) AS i(ord int, order_id text, token uuid)
ORDER BY i.ord";

const ABANDON_SQL: &str = "\
UPDATE order_confirmations SET status = 'abandoned',
    last_error = :reason || COALESCE('; last error: ' || NULLIF(last_error, ''), ''), claim_token = NULL, lease_until = NULL,
    updated_at = now()
WHERE order_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))
  AND (status = 'failed' OR (status = 'sending' AND lease_until <= now()))";

const UNCONFIRMED_SQL: &str = "\
SELECT count(*), COALESCE(CAST(EXTRACT(EPOCH FROM now() - min(first_seen_at)) AS double precision), 0)
FROM order_confirmations
WHERE status IN ('sending', 'failed', 'abandoned') AND parked_at IS NULL
  AND first_seen_at <= now() - make_interval(secs => CAST(:grace_ms AS double precision) / 1000)";

const RELEASE_SQL: &str = "\
UPDATE order_confirmations SET status = 'failed', attempts = 0, parked_at = NULL, parked_note = NULL,
    last_error = 'released for retry (was ' || status || ': ' || COALESCE(last_error, '') || ')', updated_at = now()
WHERE order_id = :order_id AND status IN ('abandoned', 'rejected')
RETURNING order_id, status, attempts, octet_length(CAST(payload AS text))";

/// Pieces of stored payloads: `:pieces` is a JSON list of `{order_id, piece}`; piece `n` is bytes
/// `n * :piece_bytes ..` of the payload's UTF-8 text, as `bytea` so a piece may end inside a
/// character (the pieces are joined before the text is decoded).
const PAYLOAD_PIECES_SQL: &str = "\
SELECT w.order_id, w.piece,
    substring(convert_to(CAST(oc.payload AS text), 'UTF8')
        FROM CAST(w.piece * :piece_bytes + 1 AS int) FOR CAST(:piece_bytes AS int))
FROM jsonb_to_recordset(CAST(:pieces AS jsonb)) AS w(order_id text, piece int)
JOIN order_confirmations oc USING (order_id)
ORDER BY w.order_id, w.piece";

const ORDER_STATE_SQL: &str = "\
SELECT order_id, status, priority, attempts, last_error, ses_message_id,
    CAST(EXTRACT(EPOCH FROM first_seen_at) * 1000 AS bigint),
    CAST(EXTRACT(EPOCH FROM updated_at) * 1000 AS bigint),
    CAST(EXTRACT(EPOCH FROM sent_at) * 1000 AS bigint),
    CAST(EXTRACT(EPOCH FROM lease_until) * 1000 AS bigint),
    CAST(EXTRACT(EPOCH FROM parked_at) * 1000 AS bigint), parked_note,
    CAST(EXTRACT(EPOCH FROM payload_removed_at) * 1000 AS bigint),
    delivery_state, delivery_detail, CAST(EXTRACT(EPOCH FROM delivery_at) * 1000 AS bigint),
    send_event_message_id, CAST(send_event_claim_token AS text), CAST(EXTRACT(EPOCH FROM send_event_at) * 1000 AS bigint),
    (SELECT CAST(COALESCE(jsonb_agg(s.ses_message_id ORDER BY s.seen_at, s.ses_message_id), '[]') AS text)
     FROM ses_mails s WHERE s.order_id = oc.order_id AND CASE WHEN oc.ses_message_id IS NULL THEN s.duplicate
        ELSE s.ses_message_id <> oc.ses_message_id END)
FROM order_confirmations oc WHERE order_id = :order_id";

/// One retention step's payload part: the oldest confirmed orders past the retention period, at
/// most `:limit`, through the `order_confirmations_payload_kept` index (0004). The candidates are
/// materialized once, so the step never touches more than `:limit` rows.
const REMOVE_PAYLOADS_SQL: &str = "\
WITH due AS MATERIALIZED (
    SELECT order_id FROM order_confirmations
    WHERE status = 'sent' AND payload_removed_at IS NULL
      AND sent_at <= now() - make_interval(secs => CAST(:after_ms AS double precision) / 1000)
    ORDER BY sent_at LIMIT :limit FOR UPDATE SKIP LOCKED
)
UPDATE order_confirmations oc SET payload = CAST(:removed AS jsonb), payload_removed_at = now()
FROM due WHERE oc.order_id = due.order_id";

/// One retention step's horizon part: the oldest finished rows past the horizon, at most `:limit`,
/// through the `order_confirmations_finished_first_seen` index (0004).
const DELETE_OLD_ROWS_SQL: &str = "\
WITH due AS MATERIALIZED (
    SELECT order_id FROM order_confirmations
    WHERE status IN ('sent', 'rejected', 'abandoned')
      AND first_seen_at <= now() - make_interval(secs => CAST(:after_ms AS double precision) / 1000)
    ORDER BY first_seen_at LIMIT :limit FOR UPDATE SKIP LOCKED
)
DELETE FROM order_confirmations oc USING due WHERE oc.order_id = due.order_id";

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataApiTarget {
    pub cluster_arn: String,
    /// Printed masked: the ARN names the secret, which is worth not spreading.
    #[serde(serialize_with = "crate::serde_helpers::masked")]
    pub secret_arn: String,
    pub database: String,
}

/// How this ledger stays inside the Data API's documented limits (4 MiB per request, 1 MiB per
/// response, 64 KB per returned row), with room to spare for the SQL text, the request's headers
/// and JSON's escaping.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The batch parameter of one claim or record request, as it travels (JSON-escaped).
    pub request_bytes: usize,
    /// Orders in one claim or record request: bounds the response (each row is small).
    pub rows_per_request: usize,
    /// One returned piece of a stored payload: well under the 64 KB row limit.
    pub piece_bytes: usize,
    /// Payload bytes fetched per call: base64 makes them 4/3 larger in the response, which stays
    /// under 1 MiB.
    pub page_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { request_bytes: 3 * 1024 * 1024, rows_per_request: 500, piece_bytes: 32 * 1024, page_bytes: 512 * 1024 }
    }
}

pub struct DataApiLedger {
    client: Client,
    target: DataApiTarget,
    limits: Limits,
}

impl DataApiLedger {
    pub fn new(client: Client, target: DataApiTarget) -> Self {
        Self::with_limits(client, target, Limits::default())
    }

    pub fn with_limits(client: Client, target: DataApiTarget, limits: Limits) -> Self {
        Self { client, target, limits }
    }

    /// One `ExecuteStatement`: the result rows.
    async fn execute(
        &self,
        operation: &str,
        sql: &str,
        params: Vec<SqlParameter>,
        transaction_id: Option<&str>,
    ) -> Result<Vec<Vec<Field>>, BackendError> {
        Ok(self.execute_output(operation, sql, params, transaction_id).await?.records.unwrap_or_default())
    }

    async fn execute_output(
        &self,
        operation: &str,
        sql: &str,
        params: Vec<SqlParameter>,
        transaction_id: Option<&str>,
    ) -> Result<aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementOutput, BackendError> {
        self.client
            .execute_statement()
            .resource_arn(&self.target.cluster_arn)
            .secret_arn(&self.target.secret_arn)
            .database(&self.target.database)
            .sql(sql)
            .set_parameters(Some(params))
            .set_transaction_id(transaction_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                // Counted where the call is made, for LedgerFailuresAlarm; flushed with the batch or run.
                crate::metrics::count(crate::batch::Counter::LedgerFailure, None, 1);
                from_sdk(Service::DataApi, operation, &e)
            })
    }

    /// One claim statement for a run of the batch (see [`split_by_size`]).
    async fn claim_run(&self, elements: &[String], lease: Duration) -> Result<Vec<Claim>, BackendError> {
        let rows = self
            .execute(
                "claim",
                CLAIM_SQL,
                vec![text("batch", json_array(elements)), long("lease_ms", lease.as_millis() as i64)],
                None,
            )
            .await?;
        if rows.len() != elements.len() {
            return Err(shape_error("claim"));
        }
        rows.iter()
            .map(|row| {
                let previous = field_str(row.get(2)).map(|s| stored_status(&s)).transpose()?;
                if let Some(token) = field_str(row.get(1)) {
                    let token = uuid::Uuid::parse_str(&token).map_err(|_| shape_error("claim token"))?;
                    let takeover = (previous == Some(Status::Sending))
                        .then(|| Takeover { lease_ended_ago: duration_ms(row.get(6)) });
                    return Ok(Claim::Claimed { token, takeover, sent_earlier: field_str(row.get(7)) });
                }
                let same_payload = field_bool(row.get(3));
                Ok(match (previous, same_payload) {
                    // Inserted by a concurrent claim after this statement's snapshot: its lease
                    // is at least as long as this one would have been.
                    (None, _) => Claim::InFlight { lease_remaining: lease },
                    (Some(_), Some(false)) => Claim::Conflict,
                    (Some(Status::Sent), _) => Claim::AlreadySent,
                    (Some(status), _) if status.is_terminal() => {
                        Claim::Terminal { status, reason: field_str(row.get(4)).unwrap_or_default() }
                    }
                    (Some(_), _) => Claim::InFlight { lease_remaining: duration_ms(row.get(5)) },
                })
            })
            .collect()
    }

    /// Reads stored payloads back in pieces, a page of pieces per call, so no returned row and no
    /// response exceeds the Data API's limits whatever the payloads' sizes. `sizes`: each order's
    /// payload size in bytes. An order whose pieces do not add up (its row changed meanwhile) is
    /// left out with an error logged; the others are returned.
    async fn payloads(&self, sizes: &[(String, usize)]) -> Result<HashMap<String, String>, BackendError> {
        let piece = self.limits.piece_bytes.max(1);
        let per_page = (self.limits.page_bytes / piece).max(1);
        let wanted: Vec<(&str, usize)> = sizes
            .iter()
            .flat_map(|(id, size)| (0..size.div_ceil(piece).max(1)).map(move |n| (id.as_str(), n)))
            .collect();
        let mut bytes: HashMap<String, Vec<u8>> = HashMap::new();
        for page in wanted.chunks(per_page) {
            let pieces: Vec<serde_json::Value> =
                page.iter().map(|(id, n)| json!({"order_id": id, "piece": n})).collect();
            let rows = self
                .execute(
                    "payload",
                    PAYLOAD_PIECES_SQL,
                    vec![
                        text("pieces", serde_json::Value::Array(pieces).to_string()),
                        long("piece_bytes", piece as i64),
                    ],
                    None,
                )
                .await?;
            for row in &rows {
                let id = field_str(row.first()).ok_or_else(|| shape_error("payload"))?;
                bytes.entry(id).or_default().extend_from_slice(field_blob(row.get(2)).unwrap_or_default());
            }
        }
        let mut out = HashMap::new();
        for (id, size) in sizes {
            match bytes.remove(id).map(String::from_utf8) {
                Some(Ok(text)) if text.len() == *size => {
                    out.insert(id.clone(), text);
                }
                _ => {
                    tracing::error!(order_id = %id, "stored payload could not be read back whole; order skipped this time")
                }
            }
        }
        Ok(out)
    }

    async fn in_transaction(&self, statements: &[String]) -> Result<(), BackendError> {
        let tx = self
            .client
            .begin_transaction()
            .resource_arn(&self.target.cluster_arn)
            .secret_arn(&self.target.secret_arn)
            .database(&self.target.database)
            .send()
            .await
            .map_err(|e| from_sdk(Service::DataApi, "BeginTransaction", &e))?;
        let id = tx.transaction_id.unwrap_or_default();
        for sql in statements {
            if let Err(e) = self.execute("migrate", sql, Vec::new(), Some(&id)).await {
                let _ = self
                    .client
                    .rollback_transaction()
                    .resource_arn(&self.target.cluster_arn)
                    .secret_arn(&self.target.secret_arn)
                    .transaction_id(&id)
                    .send()
                    .await;
                return Err(e);
            }
        }
        self.client
            .commit_transaction()
            .resource_arn(&self.target.cluster_arn)
            .secret_arn(&self.target.secret_arn)
            .transaction_id(&id)
            .send()
            .await
            .map_err(|e| from_sdk(Service::DataApi, "CommitTransaction", &e))?;
        Ok(())
    }
}

fn text(name: &str, value: impl Into<String>) -> SqlParameter {
    SqlParameter::builder().name(name).value(Field::StringValue(value.into())).build()
}

fn long(name: &str, value: i64) -> SqlParameter {
    SqlParameter::builder().name(name).value(Field::LongValue(value)).build()
}

fn field_str(f: Option<&Field>) -> Option<String> {
    match f {
        Some(Field::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A text field read through a `parse` constructor: missing, or failing its rule, is a result
/// shape error for `what` (naming the rule, never the value).
fn field_parsed<T>(
    f: Option<&Field>,
    parse: impl FnOnce(&str) -> Result<T, crate::order::FieldError>,
    what: &str,
) -> Result<T, BackendError> {
    let text = field_str(f).ok_or_else(|| shape_error(what))?;
    parse(&text).map_err(|e| BackendError::fatal(format!("Data API returned an unexpected value for {what}: {e}")))
}

/// A stored status read back (see [`field_parsed`]).
fn stored_status(s: &str) -> Result<Status, BackendError> {
    Status::parse(s).map_err(|e| BackendError::fatal(format!("the Data API ledger holds an unknown {e}")))
}

fn field_i64(f: Option<&Field>) -> Option<i64> {
    match f {
        Some(Field::LongValue(n)) => Some(*n),
        _ => None,
    }
}

fn field_f64(f: Option<&Field>) -> Option<f64> {
    match f {
        Some(Field::DoubleValue(n)) => Some(*n),
        Some(Field::LongValue(n)) => Some(*n as f64),
        _ => None,
    }
}

fn field_bool(f: Option<&Field>) -> Option<bool> {
    match f {
        Some(Field::BooleanValue(b)) => Some(*b),
        _ => None,
    }
}

fn field_blob(f: Option<&Field>) -> Option<&[u8]> {
    match f {
        Some(Field::BlobValue(b)) => Some(b.as_ref()),
        _ => None,
    }
}

/// Splits JSON elements (already serialised) into runs that each fit one request: at most
/// `max_rows` elements, and at most `max_bytes` once the run's JSON array travels as a JSON string
/// (quotes and backslashes escaped). An element larger than `max_bytes` on its own gets a run of its
/// own (the Data API decides; it is never larger than an SQS message). Order is kept.
fn split_by_size(elements: &[String], max_bytes: usize, max_rows: usize) -> Vec<std::ops::Range<usize>> {
    let escaped = |s: &str| s.len() + s.bytes().filter(|b| matches!(b, b'"' | b'\\')).count();
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 2);
    for (i, e) in elements.iter().enumerate() {
        let size = escaped(e) + 1;
        if i > start && (bytes + size > max_bytes || i - start >= max_rows.max(1)) {
            runs.push(start..i);
            (start, bytes) = (i, 2);
        }
        bytes += size;
    }
    if start < elements.len() {
        runs.push(start..elements.len());
    }
    runs
}

fn json_array(elements: &[String]) -> String {
    format!("[{}]", elements.join(","))
}

/// A non-negative number of milliseconds (a missing one is zero).
fn duration_ms(f: Option<&Field>) -> Duration {
    Duration::from_millis(field_i64(f).unwrap_or(0).max(0) as u64)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn shape_error(what: &str) -> BackendError {
    BackendError::fatal(format!("Data API returned an unexpected result shape for {what}"))
}

/// Splits a migration file into statements: each ends with `;` at the end of a line. Comment
/// lines are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[async_trait::async_trait]
impl Ledger for DataApiLedger {
    async fn claim(&self, orders: &[ClaimRequest], lease: Duration) -> Result<Vec<Claim>, BackendError> {
        let elements: Vec<String> = orders
            .iter()
            .enumerate()
            .map(|(ord, o)| {
                let head = json!({"ord": ord, "order_id": o.order_id.as_str(), "payload_sha256": o.payload_sha256,
                       "priority": o.priority.as_str()})
                .to_string();
                // The payload is canonical JSON this service serialised: it is appended as the
                // object's last member as it is, never parsed back (`head` ends with its `}`).
                format!("{},\"payload\":{}}}", &head[..head.len() - 1], o.payload)
            })
            .collect();
        let runs = split_by_size(&elements, self.limits.request_bytes, self.limits.rows_per_request);
        let mut claims = Vec::with_capacity(orders.len());
        let mut first_error = None;
        for run in &runs {
            // Each run is claimed on its own: a run that fails leaves the others claimed.
            match self.claim_run(&elements[run.clone()], lease).await {
                Ok(mut c) => claims.append(&mut c),
                Err(e) => {
                    if runs.len() > 1 {
                        tracing::error!(error = %e, orders = run.len(), "claiming part of a large batch failed; only those orders are retried");
                    }
                    claims.extend(run.clone().map(|_| Claim::Unavailable { error: e.to_string() }));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            // Nothing was claimed: the caller sees the error itself.
            Some(e) if claims.iter().all(|c| matches!(c, Claim::Unavailable { .. })) => Err(e),
            _ => Ok(claims),
        }
    }

    async fn record(&self, recordings: &[Recording]) -> Result<Vec<Recorded>, BackendError> {
        let elements: Vec<String> = recordings
            .iter()
            .enumerate()
            .map(|(ord, r)| {
                let o = &r.outcome;
                json!({"ord": ord, "order_id": r.order_id.as_str(), "token": r.token.to_string(),
                       "status": r.status(), "ses_message_id": o.message_id(), "last_error": o.last_error(),
                       "released": o.gives_back_attempt()})
                .to_string()
            })
            .collect();
        // Recording is idempotent, so a failed run fails the call and the caller's retry repeats
        // the runs that did commit harmlessly.
        let mut applied = Vec::with_capacity(recordings.len());
        for run in split_by_size(&elements, self.limits.request_bytes, self.limits.rows_per_request) {
            let batch = json_array(&elements[run.clone()]);
            let rows = self.execute("record", &RECORD_SQL, vec![text("batch", batch)], None).await?;
            if rows.len() != run.len() {
                return Err(shape_error("record"));
            }
            for row in &rows {
                applied.push(Recorded {
                    applied: field_bool(row.get(1)).ok_or_else(|| shape_error("record"))?,
                    extra_mail: field_bool(row.get(2)).ok_or_else(|| shape_error("record"))?,
                });
            }
        }
        Ok(applied)
    }

    async fn sent_earlier(&self, claims: &[(OrderId, Uuid)]) -> Result<Vec<Option<String>>, BackendError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<serde_json::Value> = claims
            .iter()
            .enumerate()
            .map(|(ord, (id, token))| json!({"ord": ord, "order_id": id.as_str(), "token": token.to_string()}))
            .collect();
        let rows = self
            .execute(
                "sent_earlier",
                SENT_EARLIER_SQL,
                vec![text("batch", serde_json::Value::Array(batch).to_string())],
                None,
            )
            .await?;
        if rows.len() != claims.len() {
            return Err(shape_error("sent_earlier"));
        }
        Ok(rows.iter().map(|row| field_str(row.get(1))).collect())
    }
}

#[async_trait::async_trait]
impl LedgerOps for DataApiLedger {
    async fn migrate(&self) -> Result<Vec<&'static str>, BackendError> {
        let mut ran = Vec::new();
        self.execute(
            "migrate",
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            Vec::new(),
            None,
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let rows = self
                .execute(
                    "migrate",
                    "SELECT 1 FROM schema_migrations WHERE version = :v",
                    vec![text("v", *version)],
                    None,
                )
                .await?;
            if !rows.is_empty() {
                continue;
            }
            let mut stmts = statements(sql);
            stmts.push(format!("INSERT INTO schema_migrations (version) VALUES ('{version}')"));
            self.in_transaction(&stmts).await?;
            tracing::info!(version, "migration applied");
            ran.push(*version);
        }
        Ok(ran)
    }

    async fn stats(&self) -> Result<LedgerStats, BackendError> {
        let rows = self.execute("stats", &STATS_SQL, Vec::new(), None).await?;
        let mut priorities = Vec::new();
        for p in Priority::ALL {
            let mut counts = BTreeMap::new();
            let (mut sent_last_hour, mut oldest_ms, mut histogram) = (0, None, Vec::new());
            for row in rows.iter().filter(|row| field_str(row.get(1)).as_deref() == Some(p.as_str())) {
                let (ms, n) = (field_i64(row.get(3)), field_i64(row.get(4)).unwrap_or(0).max(0) as u64);
                match field_str(row.first()).as_deref() {
                    Some("count") => {
                        counts.insert(stored_status(&field_str(row.get(2)).ok_or_else(|| shape_error("stats"))?)?, n);
                    }
                    Some("sent_1h") => sent_last_hour = n,
                    Some("oldest") => oldest_ms = ms,
                    Some("ttc") => histogram.push((ms.ok_or_else(|| shape_error("stats"))?, n)),
                    _ => return Err(shape_error("stats")),
                }
            }
            counts.insert(Status::Sent, histogram.iter().map(|(_, n)| n).sum());
            let oldest = oldest_ms.map(|ms| ms as f64 / 1000.0);
            let ttc = Percentiles::from_histogram(&histogram);
            priorities.push(priority_stats(p, &counts, oldest, sent_last_hour, ttc));
        }
        Ok(LedgerStats { priorities })
    }

    async fn order_state(&self, order_id: &OrderId) -> Result<Option<OrderState>, BackendError> {
        let rows = self.execute("status", ORDER_STATE_SQL, vec![text("order_id", order_id.as_str())], None).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let ms = |i: usize| field_i64(row.get(i)).map(from_ms);
        let status = field_parsed(row.get(1), Status::parse, "status")?;
        // The schema's CHECK admits only the states DeliveryState names.
        let delivery_state = field_str(row.get(13)).and_then(|s| DeliveryState::parse(&s).ok());
        Ok(Some(OrderState {
            order_id: field_parsed(row.first(), OrderId::parse, "status")?,
            status,
            priority: field_parsed(row.get(2), Priority::parse, "status")?,
            attempts: field_i64(row.get(3)).unwrap_or(0),
            last_error: field_str(row.get(4)),
            ses_message_id: field_str(row.get(5)),
            first_seen_at: ms(6).ok_or_else(|| shape_error("status"))?,
            updated_at: ms(7).ok_or_else(|| shape_error("status"))?,
            sent_at: ms(8),
            lease_until: ms(9),
            parked_at: ms(10),
            parked_note: field_str(row.get(11)),
            payload_removed_at: ms(12),
            customer_status: customer_status(status, delivery_state),
            delivery: Delivery {
                state: delivery_state,
                detail: field_str(row.get(14)),
                at: ms(15),
                send_event: match (field_str(row.get(16)), ms(18)) {
                    (Some(message_id), Some(at)) => Some(SendEvent {
                        message_id,
                        claim_token: field_str(row.get(17)).and_then(|t| uuid::Uuid::parse_str(&t).ok()),
                        at,
                    }),
                    _ => None,
                },
                duplicate_message_ids: field_str(row.get(19))
                    .and_then(|ids| serde_json::from_str(&ids).ok())
                    .ok_or_else(|| shape_error("status"))?,
            },
        }))
    }

    async fn stuck(&self, failed_for: Duration, limit: usize) -> Result<Vec<StuckOrder>, BackendError> {
        let rows = self
            .execute(
                "stuck",
                STUCK_SQL,
                vec![long("failed_ms", failed_for.as_millis() as i64), long("limit", limit as i64)],
                None,
            )
            .await?;
        let found: Vec<(OrderId, Status, i64, usize)> = rows
            .iter()
            .map(|row| {
                Ok((
                    field_parsed(row.first(), OrderId::parse, "stuck")?,
                    field_parsed(row.get(1), Status::parse, "stuck")?,
                    field_i64(row.get(2)).unwrap_or(0),
                    field_i64(row.get(3)).ok_or_else(|| shape_error("stuck"))?.max(0) as usize,
                ))
            })
            .collect::<Result<_, BackendError>>()?;
        let sizes: Vec<(String, usize)> = found.iter().map(|(id, _, _, size)| (id.to_string(), *size)).collect();
        let mut payloads = self.payloads(&sizes).await?;
        Ok(found
            .into_iter()
            .filter_map(|(order_id, status, attempts, _)| {
                let payload = payloads.remove(order_id.as_str())?;
                Some(StuckOrder { order_id, status, attempts, payload })
            })
            .collect())
    }

    async fn abandon(&self, order_ids: &[OrderId], reason: &str) -> Result<u64, BackendError> {
        if order_ids.is_empty() {
            return Ok(0);
        }
        let ids = serde_json::Value::from(order_ids.iter().map(|i| i.as_str()).collect::<Vec<_>>()).to_string();
        let out =
            self.execute_output("abandon", ABANDON_SQL, vec![text("ids", ids), text("reason", reason)], None).await?;
        Ok(out.number_of_records_updated.max(0) as u64)
    }

    async fn unconfirmed(&self, grace: Duration) -> Result<Unconfirmed, BackendError> {
        let rows = self
            .execute("unconfirmed", UNCONFIRMED_SQL, vec![long("grace_ms", grace.as_millis() as i64)], None)
            .await?;
        let row = rows.first().ok_or_else(|| shape_error("unconfirmed"))?;
        Ok(Unconfirmed {
            count: field_i64(row.first()).unwrap_or(0).max(0) as u64,
            oldest_seconds: field_f64(row.get(1)).unwrap_or(0.0),
        })
    }

    async fn release(&self, order_id: &OrderId) -> Result<Option<StuckOrder>, BackendError> {
        let rows = self.execute("release", RELEASE_SQL, vec![text("order_id", order_id.as_str())], None).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let id = field_parsed(row.first(), OrderId::parse, "release")?;
        let size = field_i64(row.get(3)).ok_or_else(|| shape_error("release"))?.max(0) as usize;
        let payload = self
            .payloads(&[(id.to_string(), size)])
            .await?
            .remove(id.as_str())
            .ok_or_else(|| BackendError::transient(format!("the stored payload of {id} could not be read back")))?;
        Ok(Some(StuckOrder {
            status: field_parsed(row.get(1), Status::parse, "release")?,
            order_id: id,
            attempts: field_i64(row.get(2)).unwrap_or(0),
            payload,
        }))
    }

    async fn park(&self, order_id: &OrderId, note: &str) -> Result<Option<OrderState>, BackendError> {
        let out = self
            .execute_output("park", PARK_SQL, vec![text("order_id", order_id.as_str()), text("note", note)], None)
            .await?;
        if out.number_of_records_updated < 1 {
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
        let limit = long("limit", limit as i64);
        let removed = self
            .execute_output(
                "retain",
                REMOVE_PAYLOADS_SQL,
                vec![
                    text("removed", REMOVED_PAYLOAD),
                    long("after_ms", payload_after.as_millis() as i64),
                    limit.clone(),
                ],
                None,
            )
            .await?;
        let deleted = self
            .execute_output(
                "retain",
                DELETE_OLD_ROWS_SQL,
                vec![long("after_ms", delete_after.as_millis() as i64), limit],
                None,
            )
            .await?;
        Ok(Retained {
            payloads_removed: removed.number_of_records_updated.max(0) as u64,
            rows_deleted: deleted.number_of_records_updated.max(0) as u64,
        })
    }

    async fn summarize_sends(&self) -> Result<bool, BackendError> {
        let settle = long("settle_ms", super::SUMMARY_SETTLE.as_millis() as i64);
        let out = self.execute_output("summarize", &SUMMARIZE_SQL, vec![settle], None).await?;
        Ok(out.number_of_records_updated > 0)
    }

    async fn apply_delivery_events(&self, events: &[DeliveryEvent]) -> Result<Vec<EventMatch>, BackendError> {
        let elements: Vec<String> = events
            .iter()
            .enumerate()
            .map(|(ord, e)| {
                let (state, send) = match e.effect {
                    Effect::State(s) => (Some(s.as_str()), false),
                    Effect::Send => (None, true),
                };
                json!({"ord": ord, "order_id": e.order_id.as_ref().map(OrderId::as_str),
                       "message_id": e.message_id.as_str(), "state": state, "detail": e.detail,
                       "at_ms": (e.occurred_at.unix_timestamp_nanos() / 1_000_000) as i64,
                       "token": e.claim_token.map(|t| t.to_string()), "send": send})
                .to_string()
            })
            .collect();
        let mut matches = Vec::with_capacity(events.len());
        // Each run is one statement; a run that fails fails the call, and the retry re-applies the
        // runs that committed without changing them (the fence makes the events idempotent).
        for run in split_by_size(&elements, self.limits.request_bytes, self.limits.rows_per_request) {
            let batch = json_array(&elements[run.clone()]);
            let rows = self.execute("delivery events", &APPLY_EVENTS_SQL, vec![text("batch", batch)], None).await?;
            if rows.len() != run.len() {
                return Err(shape_error("delivery events"));
            }
            for row in &rows {
                let found = match (field_str(row.get(1)), field_str(row.get(2))) {
                    (Some(id), Some(p)) => EventMatch::Order {
                        order_id: OrderId::parse(&id).map_err(|_| shape_error("delivery events"))?,
                        priority: Priority::parse(&p).map_err(|_| shape_error("delivery events"))?,
                        duplicate: field_bool(row.get(3)).ok_or_else(|| shape_error("delivery events"))?,
                    },
                    _ if field_bool(row.get(4)) == Some(true) => EventMatch::Contradiction,
                    _ => EventMatch::Unknown,
                };
                matches.push(found);
            }
        }
        Ok(matches)
    }

    async fn delivery_stats(&self) -> Result<Vec<DeliveryStats>, BackendError> {
        let rows = self.execute("stats", DELIVERY_STATS_SQL, Vec::new(), None).await?;
        let (mut states, mut duplicates) = (Vec::new(), Vec::new());
        for r in &rows {
            let priority = field_str(r.get(1)).ok_or_else(|| shape_error("stats"))?;
            let n = field_i64(r.get(3)).ok_or_else(|| shape_error("stats"))?.max(0) as u64;
            match field_str(r.first()).as_deref() {
                Some("state") => states.push((priority, field_str(r.get(2)), n)),
                Some("duplicates") => duplicates.push((priority, n)),
                _ => return Err(shape_error("stats")),
            }
        }
        Ok(super::delivery_stats_from_rows(&states, &duplicates))
    }
}

/// Delivery counts over the last 24 hours of sends, through `order_confirmations_recent_delivery`
/// (0007, index-only), and the extra mails first seen in the last 24 hours, through
/// `ses_mails_recent_duplicates` (0008): rows `(kind, priority, state, n)`.
const DELIVERY_STATS_SQL: &str = "\
SELECT 'state', priority, delivery_state, count(*) FROM order_confirmations
WHERE status = 'sent' AND sent_at >= now() - interval '24 hours' GROUP BY priority, delivery_state
UNION ALL
SELECT 'duplicates', oc.priority, NULL, count(*) FROM ses_mails s JOIN order_confirmations oc USING (order_id)
WHERE s.duplicate AND s.seen_at >= now() - interval '24 hours' GROUP BY oc.priority";

/// Applies a batch of SES events in one statement (docs/design.md, "Delivery events" and
/// "Duplicates counted from SES's events"). Each event finds its order by the `order_id` tag, else
/// by its SES message id (recorded by the record step, or brought by an earlier event); a message
/// id held by another order than the tag names, or by several, is a contradiction and places the
/// event nowhere, as is a message id this batch gives to two orders (the first in input order keeps
/// it, as SQLite's event-by-event loop does). A mail's first event records its id in `ses_mails`;
/// it is a duplicate when its order already has another mail (recorded, in `ses_mails`, or earlier
/// in this batch). PostgreSQL updates a row at most once per statement, so the batch is first
/// reduced per order: the strongest state of the order's own mail (the first of equal rank in
/// input order) and the latest Send event. The fence is in the `UPDATE` itself, evaluated on the
/// locked row, so concurrent invocations keep the stronger state.
///
/// The known mails: the order's recorded mail (as its first only: the record step adds it, this
/// catches up a row recorded before it did), then each event's mail. Each is first tried as its
/// order's first mail, in that order, and the unique index of one first mail per order (0009)
/// refuses it when the order has one, committed or still being written by a concurrent statement
/// (which it waits for); refused, an event's mail is inserted as an extra mail (`duplicate`,
/// counted once, reported on its first event in the batch). A mail known already (the primary
/// key) is neither. So two invocations adding two mails of one order at the same instant count
/// one extra mail, where deciding from each statement's snapshot counted none.
static APPLY_EVENTS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rank = |column: &str| crate::ses_event::DeliveryState::sql_rank(column);
    format!(
        "\
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb))
        AS b(ord int, order_id text, message_id text, state text, detail text, at_ms bigint, token uuid, send boolean)
),
owners AS (
    SELECT message_id, min(owner) AS owner, count(DISTINCT owner) AS n FROM (
        SELECT i.message_id, oc.order_id AS owner FROM (SELECT DISTINCT message_id FROM input) i
        JOIN order_confirmations oc ON oc.ses_message_id = i.message_id
        UNION
        SELECT i.message_id, s.order_id FROM (SELECT DISTINCT message_id FROM input) i
        JOIN ses_mails s ON s.ses_message_id = i.message_id
    ) AS known GROUP BY message_id
),
placed AS (
    SELECT i.*, to_timestamp(i.at_ms / 1000.0) AS at, t.order_id AS tagged, COALESCE(o.n, 0) AS owners,
        CASE
            WHEN i.order_id IS NOT NULL THEN
                CASE WHEN t.order_id IS NOT NULL AND (o.n IS NULL OR (o.n = 1 AND o.owner = t.order_id))
                    THEN t.order_id END
            WHEN o.n = 1 THEN o.owner
        END AS candidate
    FROM input i
    LEFT JOIN order_confirmations t ON t.order_id = i.order_id
    LEFT JOIN owners o ON o.message_id = i.message_id
),
first_claim AS (
    SELECT DISTINCT ON (message_id) message_id, candidate, ord FROM placed
    WHERE candidate IS NOT NULL ORDER BY message_id, ord
),
matched AS (
    SELECT p.*,
        CASE WHEN p.candidate IS NOT NULL AND p.candidate = f.candidate THEN p.candidate
             WHEN p.order_id IS NULL AND p.owners = 0 AND f.ord < p.ord THEN f.candidate END AS target,
        (p.tagged IS NOT NULL AND (p.candidate IS NULL OR p.candidate <> f.candidate))
            OR (p.order_id IS NULL AND p.owners > 1) AS contradiction
    FROM placed p LEFT JOIN first_claim f USING (message_id)
),
best_state AS (
    SELECT DISTINCT ON (m.target) m.target, m.state, m.detail, m.at FROM matched m
    JOIN order_confirmations oc ON oc.order_id = m.target
    WHERE m.state IS NOT NULL AND (oc.ses_message_id IS NULL OR oc.ses_message_id = m.message_id)
    ORDER BY m.target, {state_rank} DESC, m.ord
),
best_send AS (
    SELECT DISTINCT ON (target) target, message_id, token, at FROM matched
    WHERE target IS NOT NULL AND send ORDER BY target, at DESC, ord
),
changes AS (
    SELECT target, s.state, s.detail, s.at AS state_at, n.message_id, n.token, n.at AS send_at
    FROM (SELECT DISTINCT target FROM matched WHERE target IS NOT NULL) t
    LEFT JOIN best_state s USING (target) LEFT JOIN best_send n USING (target)
),
updated AS (
    UPDATE order_confirmations oc SET
        delivery_state = CASE WHEN {new_rank} > {old_rank} THEN c.state ELSE oc.delivery_state END,
        delivery_detail = CASE WHEN {new_rank} > {old_rank} THEN c.detail ELSE oc.delivery_detail END,
        delivery_at = CASE WHEN {new_rank} > {old_rank} THEN c.state_at ELSE oc.delivery_at END,
        send_event_message_id = CASE WHEN c.send_at > COALESCE(oc.send_event_at, '-infinity')
            THEN c.message_id ELSE oc.send_event_message_id END,
        send_event_claim_token = CASE WHEN c.send_at > COALESCE(oc.send_event_at, '-infinity')
            THEN c.token ELSE oc.send_event_claim_token END,
        send_event_at = CASE WHEN c.send_at > COALESCE(oc.send_event_at, '-infinity')
            THEN c.send_at ELSE oc.send_event_at END
    FROM changes c
    WHERE oc.order_id = c.target
    RETURNING oc.order_id, oc.ses_message_id
),
candidate_mails AS (
    SELECT u.ses_message_id AS message_id, u.order_id AS target, CAST(NULL AS uuid) AS token, -1 AS ord,
        false AS extra_allowed
    FROM updated u WHERE u.ses_message_id IS NOT NULL
    UNION ALL
    SELECT m.message_id, m.target, m.token, m.ord, true FROM matched m WHERE m.target IS NOT NULL
),
new_mails AS (
    SELECT DISTINCT ON (c.message_id) c.* FROM candidate_mails c
    WHERE NOT EXISTS (SELECT 1 FROM ses_mails s WHERE s.ses_message_id = c.message_id)
    ORDER BY c.message_id, c.ord
),
{KNOWN_MAILS}
SELECT m.ord, m.target, oc.priority, COALESCE(x.ses_message_id IS NOT NULL AND n.ord = m.ord, false), m.contradiction
FROM matched m
LEFT JOIN order_confirmations oc ON oc.order_id = m.target
LEFT JOIN new_mails n ON n.message_id = m.message_id
LEFT JOIN extras x ON x.ses_message_id = m.message_id
ORDER BY m.ord",
        state_rank = rank("m.state"),
        new_rank = rank("c.state"),
        old_rank = rank("oc.delivery_state"),
    )
});

/// Parks an abandoned order (docs/design.md, Operations): it stays abandoned, out of the
/// unconfirmed count.
const PARK_SQL: &str = "\
UPDATE order_confirmations SET parked_at = now(), parked_note = :note
WHERE order_id = :order_id AND status = 'abandoned'";

#[cfg(test)]
mod tests {
    #[test]
    fn migration_files_split_into_statements() {
        let stmts = super::statements(super::MIGRATIONS[0].1);
        assert_eq!(stmts.len(), 3);
        assert_eq!(super::statements(super::MIGRATIONS[1].1).len(), 1);
        assert!(stmts[0].starts_with("CREATE TABLE IF NOT EXISTS order_confirmations"));
        assert_eq!(super::statements(super::MIGRATIONS[2].1).len(), 2);
        assert!(stmts.iter().all(|s| !s.ends_with(';')));
    }

    #[test]
    fn a_batch_that_fits_is_one_request_and_a_large_one_is_split_in_order() {
        let small: Vec<String> = (0..50).map(|i| format!("{{\"ord\":{i}}}")).collect();
        assert_eq!(super::split_by_size(&small, 3 << 20, 500), vec![0..50]);
        // Quotes are escaped on the way: 10 elements of 100 bytes with 20 quotes each take 1,210
        // bytes plus the brackets, so 1,000 bytes hold 8 of them.
        let quoted: Vec<String> = (0..10).map(|_| format!("{}{}", "\"".repeat(20), "x".repeat(80))).collect();
        assert_eq!(super::split_by_size(&quoted, 1_000, 500), vec![0..8, 8..10]);
        assert_eq!(super::split_by_size(&small, 3 << 20, 20), vec![0..20, 20..40, 40..50]);
        // An element over the budget on its own still travels, alone.
        let big = vec!["x".repeat(10), "y".repeat(5_000), "z".repeat(10)];
        assert_eq!(super::split_by_size(&big, 1_000, 500), vec![0..1, 1..2, 2..3]);
        assert!(super::split_by_size(&[], 1_000, 500).is_empty());
    }
}
