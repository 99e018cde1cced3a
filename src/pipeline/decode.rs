//! The decode stage: every record's body to an order or the rule it broke (pure; a panic fails
//! that record only).

use super::*;

/// The decode stage: every record becomes a decided fate or a valid order. Panics are caught
/// per record. A repeated `order_id` shares the first record's fate, or is a conflict if its
/// payload differs.
pub(super) fn decode_all(records: &[SqsMessage]) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(records.len());
    let mut first_of: HashMap<String, (usize, String)> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let mut report = blank_report(record);
        let body = record.body.as_deref();
        let work = match std::panic::catch_unwind(|| body.map(crate::decode::decode_message)) {
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
                // The timestamps' notes (blank_report) come after the body's.
                report.notes.splice(0..0, ok.notes);
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

fn blank_report(record: &SqsMessage) -> RecordReport {
    let (first_sent_ms, notes) = first_sent(record, crate::clock::unix_ms_now());
    RecordReport {
        message_id: record.message_id.clone(),
        order_id: None,
        priority: None,
        receive_count: crate::batch::receive_count(record),
        outcome: RecordOutcome::TransientFailure { reason: "not processed".to_owned() },
        notes,
        unrecorded_send: false,
        extra_mail_recorded: false,
        time_to_confirm_seconds: None,
        after_expired_lease: false,
        first_sent_ms,
    }
}

/// How far a deferred copy's `OrderConfirmationFirstSent` may lie before the copy's own
/// `SentTimestamp`: SQS keeps a message at most 14 days, and a deferral chain re-enqueues within
/// seconds to a minute, so an older first arrival is not one this service wrote.
const FIRST_SENT_MAX_AGE_MS: i64 = 14 * 86_400_000;
/// How far ahead of this clock a `SentTimestamp` may be (SQS's clock against Lambda's).
const CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// When the order first entered a queue (Unix ms), for its time to confirm, and a note for each
/// timestamp that is no plausible time, which is dropped and counted (`OrderDetailInvalid`) like
/// any unusable detail. SQS sets `SentTimestamp`; `OrderConfirmationFirstSent` is this service's
/// attribute on a deferred copy, but any producer can set it, so it only counts when it lies within
/// [`FIRST_SENT_MAX_AGE_MS`] before the message's own `SentTimestamp` (never after it).
fn first_sent(record: &SqsMessage, now_ms: i64) -> (Option<i64>, Vec<Note>) {
    let mut notes = Vec::new();
    let mut read = |field: &'static str, text: Option<&str>, rule: &str, plausible: &dyn Fn(i64) -> bool| {
        let value = text?;
        match value.trim().parse::<i64>() {
            Ok(ms) if plausible(ms) => Some(ms),
            _ => {
                notes.push(Note::OrderDetailInvalid { field, rule: rule.to_owned() });
                None
            }
        }
    };
    let own = read(
        "SentTimestamp",
        record.attributes.get("SentTimestamp").map(String::as_str),
        "must be Unix milliseconds, not in the future",
        &|ms| (0..=now_ms.saturating_add(CLOCK_SKEW_MS)).contains(&ms),
    );
    let first_text = record.message_attributes.get(FIRST_SENT_ATTRIBUTE).and_then(|a| a.string_value.as_deref());
    let first = match own {
        Some(own) => read(
            FIRST_SENT_ATTRIBUTE,
            first_text,
            "must be Unix milliseconds within 14 days before the message's SentTimestamp",
            &|ms| (own.saturating_sub(FIRST_SENT_MAX_AGE_MS)..=own).contains(&ms),
        ),
        None => read(FIRST_SENT_ATTRIBUTE, first_text, "must be Unix milliseconds, not in the future", &|ms| {
            (0..=now_ms.saturating_add(CLOCK_SKEW_MS)).contains(&ms)
        }),
    };
    (first.or(own), notes)
}

fn invalid(rejection: &Rejection) -> RecordOutcome {
    RecordOutcome::Invalid { reason: rejection.to_string() }
}
