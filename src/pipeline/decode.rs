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
        receive_count: crate::batch::receive_count(record),
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
