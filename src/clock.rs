//! The wall clock in Unix milliseconds: one reading for the ledger's stored times, time to confirm
//! (against SQS's `SentTimestamp`), the Lambda deadline and the metrics' timestamps.

/// Now, in whole milliseconds since the Unix epoch.
pub fn unix_ms_now() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
