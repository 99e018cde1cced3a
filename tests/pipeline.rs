//! The batch pipeline's invariants (docs/design.md, "The batch pipeline" and "Containment"), on the real SQLite ledger and outbox, with
//! scripted faults where a real backend cannot produce one on demand.

use crate::support;

use order_confirmation::batch::{BatchReport, Counter, RecordOutcome, RecordReport};
use order_confirmation::error::BackendError;
use order_confirmation::ledger::{Ledger, LedgerOps, Status};
use order_confirmation::mailer::Mailer;
use order_confirmation::order::OrderId;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

fn failures(report: &BatchReport) -> Vec<String> {
    report.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
}

/// Every record is acknowledged xor reported; identifiers are the batch's own, non-empty, once each.
fn assert_response_invariants(event: &aws_lambda_events::sqs::SqsEvent, report: &BatchReport) {
    let ids: HashSet<String> = event.records.iter().filter_map(|r| r.message_id.clone()).collect();
    let reported = failures(report);
    let unique: HashSet<&String> = reported.iter().collect();
    assert_eq!(unique.len(), reported.len(), "no identifier twice");
    for id in &reported {
        assert!(!id.is_empty(), "never an empty identifier");
        assert!(ids.contains(id), "identifier {id} is not in the batch");
    }
    assert_eq!(report.records.len(), event.records.len());
    for r in &report.records {
        if let Some(id) = &r.message_id {
            assert_eq!(reported.contains(id), !r.outcome.is_success(), "{id}: acknowledged xor reported");
        }
    }
}

#[tokio::test]
async fn sample_event_sends_valid_orders_and_reports_the_bad_ones() {
    let b = LocalBackends::new().await;
    let event = event_file("sqs-batch.json");
    let report = b.pipeline(b.outbox.clone()).handle(&event, deadline(30)).await;
    assert_response_invariants(&event, &report);
    assert_eq!(failures(&report), vec!["b9b3c0b5-3a30-4d43-9c7a-0d6a3f5f2a11", "c3f4e5d6-1111-4a2b-9c3d-4e5f60718293"]);
    for id in ["ORD-1001", "ORD-1002", "ORD-1005", "ORD-1006"] {
        assert_eq!(b.mails_for(id), 1, "{id} mailed once");
    }
    let counters = report.counters();
    let total_legacy: u64 = counters.values().map(|c| c.get(Counter::LegacyPayloadFormat)).sum();
    let total_vendor: u64 = counters.values().map(|c| c.get(Counter::VendorFieldInvalid)).sum();
    assert_eq!((total_legacy, total_vendor), (1, 2));
}

#[tokio::test]
async fn redelivery_of_a_sent_batch_mails_nothing_and_reports_the_same_failures() {
    let b = LocalBackends::new().await;
    let event = event_file("sqs-batch.json");
    let p = b.pipeline(b.outbox.clone());
    let first = p.handle(&event, deadline(30)).await;
    let mails = b.outbox_files();
    let second = p.handle(&event, deadline(30)).await;
    assert_eq!(b.outbox_files(), mails, "no new mail on redelivery");
    assert_eq!(failures(&first), failures(&second));
    let valid = second.records.iter().filter(|r| !matches!(r.outcome, RecordOutcome::Invalid { .. }));
    assert!(valid.clone().count() == 4 && valid.clone().all(|r| r.outcome == RecordOutcome::AlreadySent));
    // A rejected body with a valid order id is still named, so support can find it by order id.
    assert_eq!(second.records[3].order_id.as_deref(), Some("ORD-1004"));
}

#[tokio::test]
async fn every_bad_input_gets_a_specific_reason_and_spares_its_neighbours() {
    let b = LocalBackends::new().await;
    let event = event_file("sqs-bad-input.json");
    let report = b.pipeline(b.outbox.clone()).handle(&event, deadline(30)).await;
    assert_response_invariants(&event, &report);
    let reason = |suffix: &str| -> String {
        let r = report.records.iter().find(|r| r.message_id.as_deref().unwrap().ends_with(suffix)).unwrap();
        match &r.outcome {
            RecordOutcome::Invalid { reason } => reason.clone(),
            other => format!("{other:?}"),
        }
    };
    assert_eq!(reason("not-json"), "body is neither JSON nor a Python dict literal: expected ident at line 1 column 2");
    assert_eq!(reason("array"), "body is a JSON array; an order must be a JSON object");
    assert_eq!(reason("string"), "body is a JSON string; an order must be a JSON object");
    assert_eq!(reason("empty"), "body is empty");
    assert!(reason("python-code").starts_with("body is neither JSON nor a Python dict literal"));
    assert_eq!(reason("deep"), "body is nested too deeply to be an order");
    assert_eq!(reason("null-email"), "customer_email: is null");
    assert_eq!(reason("numeric-id"), "order_id: must be a string, got number");
    assert_eq!(reason("spaced-id"), "order_id: contains a space; only A-Z a-z 0-9 . _ : - are allowed");
    assert_eq!(reason("long-id"), "order_id: is 65 characters; at most 64 allowed");
    assert_eq!(reason("two-ats"), "customer_email: has more than one @");
    assert_eq!(reason("no-at"), "customer_email: has no @");
    assert_eq!(reason("crlf-name"), "customer_name: contains the control character CR");
    assert_eq!(reason("schema-2"), "schema_version: must be the integer 1, the only version this service knows");
    assert!(matches!(report.records.last().unwrap().outcome, RecordOutcome::Sent { .. }));
    assert_eq!(failures(&report).len(), event.records.len() - 1);
    assert_eq!(b.outbox_files().len(), 1, "only the good neighbour was mailed");
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[tokio::test]
async fn oversized_body_is_rejected_without_being_parsed() {
    let b = LocalBackends::new().await;
    let huge = format!("{{\"order_id\":\"X\",\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let event = event(vec![record("m-big", &huge), record("m-ok", &order_body("OK-1", "normal"))]);
    let report = b.pipeline(b.outbox.clone()).handle(&event, deadline(30)).await;
    assert_eq!(failures(&report), vec!["m-big"]);
    assert!(
        matches!(&report.records[0].outcome, RecordOutcome::Invalid { reason } if reason.contains("the limit is 262144"))
    );
}

#[tokio::test]
async fn duplicate_in_batch_shares_the_first_fate_and_a_changed_payload_is_a_conflict() {
    let b = LocalBackends::new().await;
    let event = event_file("sqs-duplicates.json");
    let report = b.pipeline(b.outbox.clone()).handle(&event, deadline(30)).await;
    assert_response_invariants(&event, &report);
    assert!(matches!(report.records[0].outcome, RecordOutcome::Sent { .. }));
    assert_eq!(report.records[1].outcome, RecordOutcome::AlreadySent);
    assert!(matches!(report.records[2].outcome, RecordOutcome::Conflict { .. }));
    assert_eq!(b.mails_for("ORD-2001"), 1);

    // Later, the same order id with a different payload is a conflict too, and is never mailed.
    let later = event_of(&[("m-later", &order_body("ORD-2001", "high"))]);
    let report = b.pipeline(b.outbox.clone()).handle(&later, deadline(30)).await;
    assert_eq!(failures(&report), vec!["m-later"]);
    assert!(matches!(report.records[0].outcome, RecordOutcome::Conflict { .. }));
    assert_eq!(b.mails_for("ORD-2001"), 1);
}

fn event_of(records: &[(&str, &str)]) -> aws_lambda_events::sqs::SqsEvent {
    event(records.iter().map(|(id, body)| record(id, body)).collect())
}

#[tokio::test]
async fn a_panic_while_sending_one_record_fails_that_record_only() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("P-2", Fault::Panic));
    let e = event_of(&[
        ("m1", &order_body("P-1", "normal")),
        ("m2", &order_body("P-2", "normal")),
        ("m3", &order_body("P-3", "high")),
    ]);
    let report = b.pipeline(mailer.clone()).handle(&e, deadline(30)).await;
    assert_response_invariants(&e, &report);
    assert_eq!(failures(&report), vec!["m2"]);
    assert!(
        matches!(&report.records[1].outcome, RecordOutcome::TransientFailure { reason } if reason.contains("panic while sending: scripted panic for P-2"))
    );
    let state = b.ledger.order_state(&OrderId::parse("P-2").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Failed, "the panicked order is retryable, not stuck in sending");

    mailer.clear();
    let again = b.pipeline(mailer).handle(&e, deadline(30)).await;
    assert!(failures(&again).is_empty());
    assert_eq!((b.mails_for("P-1"), b.mails_for("P-2"), b.mails_for("P-3")), (1, 1, 1));
}

#[tokio::test]
async fn transient_failures_are_retried_until_each_order_is_mailed_exactly_once() {
    let b = LocalBackends::new().await;
    let throttled = BackendError::transient("TooManyRequestsException: Maximum sending rate exceeded");
    let mailer = Arc::new(
        ScriptedMailer::new(b.outbox.clone())
            .fault("T-1", Fault::FailTimes(2, throttled.clone()))
            .fault("T-3", Fault::FailTimes(1, throttled)),
    );
    let ids: Vec<String> = (1..=4).map(|i| format!("T-{i}")).collect();
    let bodies: Vec<String> = ids.iter().map(|id| order_body(id, "normal")).collect();
    let mut pending: Vec<usize> = (0..4).collect();
    let p = b.pipeline(mailer.clone());
    let mut deliveries = 0;
    while !pending.is_empty() {
        deliveries += 1;
        assert!(deliveries <= 5, "converges within maxReceiveCount");
        let e = event(pending.iter().map(|&i| record(&format!("m{i}"), &bodies[i])).collect());
        let report = p.handle(&e, deadline(30)).await;
        assert_response_invariants(&e, &report);
        let failed: HashSet<String> = failures(&report).into_iter().collect();
        pending.retain(|i| failed.contains(&format!("m{i}")));
    }
    assert_eq!(deliveries, 3);
    for id in &ids {
        assert_eq!(b.mails_for(id), 1, "{id}");
    }
}

#[tokio::test]
async fn permanent_mail_rejection_is_terminal_and_reported() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()).fault(
        "R-1",
        Fault::Fail(BackendError::permanent("MessageRejected: Email address is not verified: r-1@example.com")),
    ));
    let e = event_of(&[("m1", &order_body("R-1", "normal")), ("m2", &order_body("R-2", "normal"))]);
    let report = b.pipeline(mailer.clone()).handle(&e, deadline(30)).await;
    assert_eq!(failures(&report), vec!["m1"]);
    let state = b.ledger.order_state(&OrderId::parse("R-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Rejected);
    assert_eq!(state.last_error.as_deref(), Some("MessageRejected: Email address is not verified: ***@example.com"));
    // Redelivered, it is still reported (on its way to the DLQ) and never re-sent.
    let again = b.pipeline(mailer.clone()).handle(&e, deadline(30)).await;
    assert_eq!(failures(&again), vec!["m1"]);
    assert_eq!(mailer.attempts.load(Ordering::SeqCst), 2, "R-1 once, R-2 once");
}

#[tokio::test]
async fn a_fatal_mailer_error_stops_further_sends_in_the_invocation() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(
        ScriptedMailer::new(b.outbox.clone()).fault("F-1", Fault::Fail(BackendError::fatal("SendingPausedException"))),
    );
    let bodies: Vec<(String, String)> =
        (1..=6).map(|i| (format!("m{i}"), order_body(&format!("F-{i}"), "normal"))).collect();
    let e = event(bodies.iter().map(|(id, b)| record(id, b)).collect());
    let settings = PipelineSettings { concurrency: 1, ..PipelineSettings::default() };
    let p = Pipeline::new(b.ledger.clone(), mailer.clone(), None, settings);
    let report = p.handle(&e, deadline(30)).await;
    assert_response_invariants(&e, &report);
    assert_eq!(mailer.attempts.load(Ordering::SeqCst), 1, "no send after the fatal error");
    assert_eq!(failures(&report).len(), 6, "everything retried later");
    assert!(
        report
            .records
            .iter()
            .all(|r| r.outcome.failure_class() == Some(order_confirmation::error::ErrorClass::Transient))
    );
}

#[tokio::test]
async fn high_priority_orders_are_sent_first() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()));
    let e = event_of(&[
        ("m1", &order_body("N-1", "normal")),
        ("m2", &order_body("H-1", "high")),
        ("m3", &order_body("N-2", "normal")),
        ("m4", &order_body("H-2", "high")),
    ]);
    let settings = PipelineSettings { concurrency: 1, ..PipelineSettings::default() };
    Pipeline::new(b.ledger.clone(), mailer.clone(), None, settings).handle(&e, deadline(30)).await;
    assert_eq!(*mailer.order_of_attempts.lock().unwrap(), vec!["H-1", "H-2", "N-1", "N-2"]);
}

#[tokio::test]
async fn no_send_starts_inside_the_safety_margin_and_the_order_is_released() {
    let b = LocalBackends::new().await;
    // Slow first send, one at a time: the second order's turn comes after the stop point.
    let mailer =
        Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("D-0", Fault::Delay(Duration::from_millis(2500))));
    let e = event_of(&[("m0", &order_body("D-0", "normal")), ("m1", &order_body("D-1", "normal"))]);
    let settings = PipelineSettings { concurrency: 1, ..PipelineSettings::default() };
    let p = Pipeline::new(b.ledger.clone(), mailer.clone(), None, settings);
    // 6 s left: the record step's 5 s and the send's 15 s are each capped to a third (2 s), so
    // sends stop starting 2 s from now.
    let report = p.handle(&e, deadline(6)).await;
    assert!(matches!(report.records[0].outcome, RecordOutcome::Sent { .. }), "a short invocation still sends");
    assert!(matches!(report.records[1].outcome, RecordOutcome::Deferred { .. }));
    assert_eq!(mailer.attempts.load(Ordering::SeqCst), 1, "only D-0 was attempted");
    let state = b.ledger.order_state(&OrderId::parse("D-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Failed, "lease released so the next delivery can claim it");
}

#[tokio::test]
async fn ledger_down_after_the_send_acknowledges_and_counts_the_unrecorded_mail() {
    let b = LocalBackends::new().await;
    let ledger: Arc<dyn Ledger> = Arc::new(ScriptedLedger::new(b.ledger.clone()).record_fault(RecordFault::Always));
    let p = Pipeline::new(ledger, b.outbox.clone(), None, PipelineSettings::default());
    let e = event_of(&[("m1", &order_body("U-1", "normal"))]);
    let report = p.handle(&e, deadline(30)).await;
    assert!(failures(&report).is_empty(), "the mail went out: at least once wins");
    assert!(report.records[0].unrecorded_send);
    assert_eq!(report.counters().values().map(|c| c.get(Counter::UnrecordedSend)).sum::<u64>(), 1);
}

#[tokio::test]
async fn a_failed_record_without_message_id_is_never_an_empty_identifier() {
    let b = LocalBackends::new().await;
    let event = event_file("sqs-no-message-id.json");
    assert!(event.records[1].message_id.is_none());
    let report = b.pipeline(b.outbox.clone()).handle(&event, deadline(30)).await;
    assert_response_invariants(&event, &report);
    assert!(failures(&report).is_empty());
    assert_eq!(report.unidentifiable_failures(), 1, "the caller must fail the invocation instead");
    assert_eq!(b.mails_for("ORD-3001"), 1, "the neighbour is still confirmed, and acknowledged on redelivery");
}

#[tokio::test]
async fn a_slow_send_does_not_fail_its_neighbours() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("S-1", Fault::Delay(Duration::from_millis(300))));
    let e = event((1..=10).map(|i| record(&format!("m{i}"), &order_body(&format!("S-{i}"), "normal"))).collect());
    let report = b.pipeline(mailer.clone() as Arc<dyn Mailer>).handle(&e, deadline(30)).await;
    assert!(failures(&report).is_empty());
    assert_eq!(b.outbox_files().len(), 10);
}

/// The shape of a generated record body.
#[derive(Debug, Clone)]
enum Body {
    Valid(u8, bool),
    Garbage(String),
    MissingEmail(u8),
}

fn body_strategy() -> impl Strategy<Value = Body> {
    prop_oneof![
        (0u8..8, any::<bool>()).prop_map(|(id, high)| Body::Valid(id, high)),
        ".{0,40}".prop_map(Body::Garbage),
        (0u8..8).prop_map(Body::MissingEmail),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For any mix of valid, invalid and repeated orders and transient faults, every record is
    /// acknowledged xor reported with its own id, nothing is mailed twice, and every valid order
    /// is mailed once redelivery has run its course.
    #[test]
    fn batches_keep_every_invariant(bodies in prop::collection::vec(body_strategy(), 1..20), flaky in prop::collection::vec(0u8..8, 0..3)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let b = LocalBackends::new().await;
            let mut mailer = ScriptedMailer::new(b.outbox.clone());
            for id in &flaky {
                mailer = mailer.fault(&format!("Q-{id}"), Fault::FailTimes(1, BackendError::transient("throttled")));
            }
            let p = b.pipeline(Arc::new(mailer));
            let texts: Vec<String> = bodies.iter().map(|body| match body {
                Body::Valid(id, high) => order_body(&format!("Q-{id}"), if *high { "high" } else { "normal" }),
                Body::Garbage(s) => s.clone(),
                Body::MissingEmail(id) => serde_json::json!({"order_id": format!("Z-{id}"), "customer_name": "Z"}).to_string(),
            }).collect();
            let mut pending: Vec<usize> = (0..texts.len()).collect();
            for _ in 0..5 {
                if pending.is_empty() { break; }
                let e = event(pending.iter().map(|&i| record(&format!("m{i}"), &texts[i])).collect());
                let report = p.handle(&e, deadline(30)).await;
                assert_response_invariants(&e, &report);
                let failed: HashSet<String> = failures(&report).into_iter().collect();
                pending.retain(|i| failed.contains(&format!("m{i}")));
            }
            let mut valid_ids: HashSet<String> = HashSet::new();
            for body in &bodies {
                if let Body::Valid(id, _) = body { valid_ids.insert(format!("Q-{id}")); }
            }
            for id in &valid_ids {
                // A Q-id seen first as high and later as normal is a conflict: mailed once anyway.
                assert_eq!(b.mails_for(id), 1, "{} mailed exactly once", id);
            }
            // Whatever is still pending is only what can never succeed: bad input or conflicts.
            for i in pending {
                let is_valid = matches!(bodies[i], Body::Valid(..));
                if is_valid {
                    let e = event(vec![record("probe", &texts[i])]);
                    let r = p.handle(&e, deadline(30)).await;
                    assert!(matches!(r.records[0].outcome, RecordOutcome::Conflict { .. }), "{:?}", r.records[0].outcome);
                }
            }
        });
    }
}

// A fault touches only what it touched: the record step, the time budget, leases held elsewhere.

fn batch_of(prefix: &str, n: usize) -> aws_lambda_events::sqs::SqsEvent {
    event((1..=n).map(|i| record(&format!("m{i}"), &order_body(&format!("{prefix}-{i}"), "normal"))).collect())
}

async fn status_of(ledger: &dyn LedgerOps, order_id: &str) -> Option<Status> {
    ledger.order_state(&OrderId::parse(order_id).unwrap()).await.unwrap().map(|s| s.status)
}

#[tokio::test]
async fn a_ledger_outage_after_the_sends_is_ridden_out_and_every_order_is_recorded() {
    let b = LocalBackends::new().await;
    let ledger =
        Arc::new(ScriptedLedger::new(b.ledger.clone()).record_fault(RecordFault::FailFor(Duration::from_secs(2))));
    let p = Pipeline::new(ledger.clone(), b.outbox.clone(), None, PipelineSettings::default());
    let e = batch_of("R", 5);
    let report = p.handle(&e, deadline(30)).await;
    assert!(failures(&report).is_empty());
    assert!(report.records.iter().all(|r| !r.unrecorded_send), "the outage ended inside the time budget");
    assert!(ledger.record_calls.load(Ordering::SeqCst) > 1, "the record step was retried");
    for i in 1..=5 {
        assert_eq!(status_of(b.ledger.as_ref(), &format!("R-{i}")).await, Some(Status::Sent));
    }
    let again = b.pipeline(b.outbox.clone()).handle(&e, deadline(30)).await;
    assert!(again.records.iter().all(|r| r.outcome == RecordOutcome::AlreadySent), "redelivery mails nothing");
    assert_eq!(b.outbox_files().len(), 5);
}

#[tokio::test]
async fn a_retried_record_whose_first_attempt_committed_counts_as_applied() {
    let b = LocalBackends::new().await;
    let ledger = Arc::new(ScriptedLedger::new(b.ledger.clone()).record_fault(RecordFault::CommitThenFailFirst(1)));
    let p = Pipeline::new(ledger.clone(), b.outbox.clone(), None, PipelineSettings::default());
    let report = p.handle(&batch_of("C", 3), deadline(30)).await;
    assert!(failures(&report).is_empty());
    assert_eq!(ledger.record_calls.load(Ordering::SeqCst), 2, "one lost answer, one retry");
    assert!(report.records.iter().all(|r| !r.unrecorded_send), "no false UnrecordedSend");
}

#[tokio::test]
async fn a_crash_half_way_through_a_batch_leaves_at_most_two_waves_unrecorded() {
    let b = LocalBackends::new().await;
    let mut mailer = ScriptedMailer::new(b.outbox.clone());
    for i in 1..=40 {
        mailer = mailer.fault(&format!("W-{i}"), Fault::Delay(Duration::from_millis(20)));
    }
    let mailer = Arc::new(mailer);
    let concurrency = 4;
    let settings = PipelineSettings { concurrency, ..PipelineSettings::default() };
    let p = Pipeline::new(b.ledger.clone(), mailer.clone(), None, settings);
    let e = batch_of("W", 40);
    // The process dies once 20 sends have started: the batch's future is dropped mid-way.
    tokio::select! {
        _ = p.handle(&e, deadline(30)) => panic!("the batch finished before the crash"),
        () = async { while mailer.attempts.load(Ordering::SeqCst) < 20 { tokio::time::sleep(Duration::from_millis(2)).await } } => {}
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mailed = b.outbox_files().len();
    let mut recorded = 0;
    for i in 1..=40 {
        if status_of(b.ledger.as_ref(), &format!("W-{i}")).await == Some(Status::Sent) {
            recorded += 1;
        }
    }
    assert!(mailed >= 16, "the crash came half way ({mailed} mailed)");
    assert!(
        mailed - recorded <= 2 * concurrency,
        "{mailed} mailed, {recorded} recorded: a crash re-mails at most the wave being recorded and the one filling"
    );
}

#[tokio::test]
async fn a_hung_send_is_cut_off_so_the_batch_is_recorded_before_the_deadline() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("T-2", Fault::Delay(Duration::from_secs(12))));
    let e = batch_of("T", 3);
    let end = deadline(6);
    let report = b.pipeline(mailer).handle(&e, end).await;
    assert!(tokio::time::Instant::now() < end, "the invocation returned before its deadline");
    assert_eq!(failures(&report), vec!["m2"]);
    assert_eq!(status_of(b.ledger.as_ref(), "T-1").await, Some(Status::Sent));
    assert_eq!(status_of(b.ledger.as_ref(), "T-3").await, Some(Status::Sent));
    assert_eq!(
        status_of(b.ledger.as_ref(), "T-2").await,
        Some(Status::Sending),
        "a cut-off send may still reach SES: it stays leased, so whoever takes it over counts a possible duplicate"
    );
    // It comes back once that lease has ended (the invocation's 6 s and the default 60 s of
    // slack), not on the transient schedule's first 15 to 30 s, which would spend a receive on
    // finding the lease still live.
    use order_confirmation::backoff::{BackoffSettings, visibility_for};
    let outcome = &report.records[1].outcome;
    for jitter in [0.0, 0.999] {
        let v = visibility_for(outcome, 1, &BackoffSettings::default(), jitter);
        assert!(v >= Duration::from_secs(60), "{outcome:?} comes back after {v:?}, before its lease ends");
    }
}

#[tokio::test]
async fn an_order_in_flight_elsewhere_comes_back_right_after_the_holders_lease() {
    use order_confirmation::backoff::{BackoffSettings, visibility_for};
    use order_confirmation::ledger::ClaimRequest;
    let b = LocalBackends::new().await;
    let body = order_body("L-1", "normal");
    let order = order_confirmation::decode::decode(&body).unwrap().order;
    let request = ClaimRequest {
        order_id: order.order_id.clone(),
        payload_sha256: order.payload_sha256(),
        priority: order.priority,
        payload: order.canonical_json(),
    };
    // Another invocation holds the order with a 40 s lease (it may have died holding it).
    b.ledger.claim(&[request], Duration::from_secs(40)).await.unwrap();
    let report = b.pipeline(b.outbox.clone()).handle(&event_of(&[("m1", &body)]), deadline(30)).await;
    let outcome = &report.records[0].outcome;
    assert!(matches!(outcome, RecordOutcome::InFlight { .. }), "{outcome:?}");
    let quick =
        BackoffSettings { base: Duration::from_secs(1), cap: Duration::from_secs(4), ..BackoffSettings::default() };
    for settings in [BackoffSettings::default(), quick] {
        for (receive_count, jitter) in [(1, 0.0), (1, 0.999), (4, 0.0), (4, 0.999)] {
            let v = visibility_for(outcome, receive_count, &settings, jitter).as_secs();
            assert!((39..=50).contains(&v), "came back after {v} s; the lease ends in 40 s");
        }
    }
}

#[tokio::test]
async fn a_deferred_order_spends_no_ledger_attempt() {
    let b = LocalBackends::new().await;
    let mailer =
        Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("A-1", Fault::Delay(Duration::from_millis(2500))));
    let e = event_of(&[("m1", &order_body("A-1", "normal")), ("m2", &order_body("A-2", "normal"))]);
    let settings = PipelineSettings { concurrency: 1, ..PipelineSettings::default() };
    let report = Pipeline::new(b.ledger.clone(), mailer, None, settings).handle(&e, deadline(6)).await;
    assert!(matches!(report.records[1].outcome, RecordOutcome::Deferred { .. }));
    let state = b.ledger.order_state(&OrderId::parse("A-2").unwrap()).await.unwrap().unwrap();
    assert_eq!((state.status, state.attempts), (Status::Failed, 0), "released without spending an attempt");
}

#[tokio::test]
async fn a_sent_timestamp_that_is_no_time_is_dropped_and_counted_and_the_order_is_mailed_without_a_panic() {
    let b = LocalBackends::new().await;
    let mut records = Vec::new();
    for (i, ts) in [i64::MIN.to_string(), "abc".into(), i64::MAX.to_string(), "-1".into()].iter().enumerate() {
        let mut r = record(&format!("m{i}"), &order_body(&format!("TS-BAD-{i}"), "normal"));
        r.attributes.insert("SentTimestamp".into(), ts.clone());
        records.push(r);
    }
    let report = b.pipeline(b.outbox.clone()).handle(&event(records), deadline(30)).await;
    assert!(failures(&report).is_empty());
    for r in &report.records {
        assert!(matches!(r.outcome, RecordOutcome::Sent { .. }), "{r:?}");
        assert_eq!(r.time_to_confirm_seconds, None, "no time to confirm from no time: {r:?}");
        let notes: Vec<String> = r.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes, ["order detail SentTimestamp dropped: must be Unix milliseconds, not in the future"]);
    }
    let counted: u64 = report.counters().values().map(|c| c.get(Counter::OrderDetailInvalid)).sum();
    assert_eq!(counted, 4, "each dropped timestamp is counted");
}

#[tokio::test]
async fn a_producer_set_first_sent_cannot_make_the_time_to_confirm_older_than_the_message() {
    let b = LocalBackends::new().await;
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut records = Vec::new();
    for (i, first) in ["1", "abc", &(now_ms + 60_000).to_string()].iter().enumerate() {
        let mut r = record(&format!("m{i}"), &order_body(&format!("FS-{i}"), "normal"));
        r.attributes.insert("SentTimestamp".into(), (now_ms - 2_000).to_string());
        let mut a = aws_lambda_events::sqs::SqsMessageAttribute::default();
        a.string_value = Some((*first).to_owned());
        a.data_type = Some("Number".into());
        r.message_attributes.insert("OrderConfirmationFirstSent".into(), a);
        records.push(r);
    }
    let report = b.pipeline(b.outbox.clone()).handle(&event(records), deadline(30)).await;
    for r in &report.records {
        let ttc = r.time_to_confirm_seconds.expect("mailed, with a time to confirm");
        assert!((1.5..60.0).contains(&ttc), "counted from the message's own SentTimestamp, 2 s ago: {ttc} s");
        assert!(
            r.notes.iter().any(|n| n.to_string().starts_with("order detail OrderConfirmationFirstSent dropped")),
            "{r:?}"
        );
    }
}

/// Claims each order as a holder that then dies: its lease (`lease`) runs out with nothing
/// recorded, so the next claim is a takeover.
async fn held_by_a_dead_holder(ledger: &dyn Ledger, bodies: &[String], lease: Duration) {
    use order_confirmation::ledger::ClaimRequest;
    let requests: Vec<ClaimRequest> = bodies
        .iter()
        .map(|body| {
            let order = order_confirmation::decode::decode(body).unwrap().order;
            ClaimRequest {
                order_id: order.order_id.clone(),
                payload_sha256: order.payload_sha256(),
                priority: order.priority,
                payload: order.canonical_json(),
            }
        })
        .collect();
    ledger.claim(&requests, lease).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
}

/// One batch of `bodies` (message ids m0, m1, ...) through a pipeline on `ledger` whose takeovers
/// wait up to `send_event_wait` for the dead holder's Send event, with 1 s of lease slack.
async fn run_takeovers(
    b: &LocalBackends,
    ledger: Arc<ScriptedLedger>,
    bodies: &[String],
    send_event_wait: Duration,
) -> BatchReport {
    let settings =
        PipelineSettings { lease_slack: Duration::from_secs(1), send_event_wait, ..PipelineSettings::default() };
    let records = bodies.iter().enumerate().map(|(i, body)| record(&format!("m{i}"), body)).collect();
    Pipeline::new(ledger, b.outbox.clone(), None, settings).handle(&event(records), deadline(30)).await
}

#[tokio::test]
async fn a_batch_of_takeovers_waiting_for_send_events_asks_the_ledger_once_per_poll_not_once_per_order() {
    let b = LocalBackends::new().await;
    let bodies: Vec<String> = (0..5).map(|i| order_body(&format!("W-{i}"), "normal")).collect();
    held_by_a_dead_holder(b.ledger.as_ref(), &bodies, Duration::from_millis(100)).await;
    let ledger = Arc::new(ScriptedLedger::new(b.ledger.clone()));
    // No Send event comes: each takeover waits its bound, about 2 s (3 s from its holder's last
    // possible send, 1 s of slack of which had passed), then mails.
    let report = run_takeovers(&b, ledger.clone(), &bodies, Duration::from_secs(3)).await;
    for r in &report.records {
        assert!(matches!(r.outcome, RecordOutcome::Sent { .. }) && r.after_expired_lease, "{r:?}");
    }
    // One poll every 500 ms over about 2 s for the whole batch: about 4 calls; one watch per
    // order would make 5 times that.
    let calls = ledger.sent_earlier_calls.load(Ordering::SeqCst);
    assert!((1..=6).contains(&calls), "{calls} sent_earlier calls for one batch of five takeovers");
}

#[tokio::test]
async fn a_claim_answer_for_fewer_orders_than_asked_mails_none_of_them_and_retries_the_batch() {
    let b = LocalBackends::new().await;
    // A stand-in for a ledger that claims both orders but answers for one: which order that
    // answer is for cannot be known, so none is mailed on it.
    let ledger = Arc::new(ScriptedLedger::new(b.ledger.clone()).claim_answers(1));
    let e = event_of(&[("m1", &order_body("CA-1", "normal")), ("m2", &order_body("CA-2", "normal"))]);
    let report =
        Pipeline::new(ledger, b.outbox.clone(), None, PipelineSettings::default()).handle(&e, deadline(30)).await;
    for r in &report.records {
        assert!(
            matches!(&r.outcome, RecordOutcome::TransientFailure { reason } if reason.contains("1 claims for 2 orders")),
            "{r:?}"
        );
    }
    assert_eq!((b.mails_for("CA-1"), b.mails_for("CA-2")), (0, 0));
}

#[tokio::test]
async fn a_takeover_whose_holders_last_send_is_older_than_the_wait_mails_at_once_without_asking_for_send_events() {
    let b = LocalBackends::new().await;
    let body = order_body("W-old", "normal");
    held_by_a_dead_holder(b.ledger.as_ref(), std::slice::from_ref(&body), Duration::from_millis(100)).await;
    // The holder's lease ended 1.5 s ago with 1 s of slack: its last possible send is 2.5 s old,
    // longer than the 2 s a Send event is given, so there is nothing left to wait for.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ledger = Arc::new(ScriptedLedger::new(b.ledger.clone()));
    let report = run_takeovers(&b, ledger.clone(), std::slice::from_ref(&body), Duration::from_secs(2)).await;
    let r = &report.records[0];
    assert!(matches!(r.outcome, RecordOutcome::Sent { .. }) && r.after_expired_lease, "{r:?}");
    assert_eq!(ledger.sent_earlier_calls.load(Ordering::SeqCst), 0, "no wait, so no look for Send events");
    assert_eq!(b.mails_for("W-old"), 1);
}

#[tokio::test]
async fn an_answer_about_send_events_that_does_not_line_up_with_the_waiting_takeovers_is_not_believed() {
    let b = LocalBackends::new().await;
    let bodies: Vec<String> = (0..2).map(|i| order_body(&format!("WA-{i}"), "normal")).collect();
    held_by_a_dead_holder(b.ledger.as_ref(), &bodies, Duration::from_millis(100)).await;
    // A stand-in for a ledger that answers one mail for two takeovers: which order that mail is of
    // cannot be known, so it is no witness for either, and both mail.
    let ledger = Arc::new(
        ScriptedLedger::new(b.ledger.clone()).sent_earlier_answer(vec![Some("a-mail-of-unknown-order".to_owned())]),
    );
    let report = run_takeovers(&b, ledger.clone(), &bodies, Duration::from_secs(3)).await;
    for r in &report.records {
        assert!(matches!(r.outcome, RecordOutcome::Sent { .. }), "{r:?}");
    }
    assert_eq!((b.mails_for("WA-0"), b.mails_for("WA-1")), (1, 1));
    assert_eq!(ledger.sent_earlier_calls.load(Ordering::SeqCst), 1, "the first answer ends the wait");
}

#[tokio::test]
async fn a_takeover_that_is_deferred_still_counts_the_possible_duplicate_when_it_later_mails() {
    use order_confirmation::rate::{SendGate, SendRateLimiter};
    let b = LocalBackends::new().await;
    let body = order_body("TD-1", "normal");
    held_by_a_dead_holder(b.ledger.as_ref(), std::slice::from_ref(&body), Duration::from_millis(100)).await;
    // The real limiter with its only slot taken: the takeover finds no send slot and is deferred.
    let gate = Arc::new(SendRateLimiter::starting_at(0.001, 0.001, 0.0, 1.0));
    assert!(gate.acquire(order_confirmation::order::Priority::Normal, tokio::time::Instant::now()).await);
    let deferring = Pipeline::new(b.ledger.clone(), b.outbox.clone(), Some(gate), PipelineSettings::default());
    // A short invocation: a normal order waits for a slot until no send may start (1 s here).
    let first = deferring.handle(&event(vec![record("m1", &body)]), deadline(3)).await;
    assert!(matches!(first.records[0].outcome, RecordOutcome::Deferred { .. }), "{:?}", first.records[0]);
    assert_eq!(b.mails_for("TD-1"), 0);

    // The deferred copy comes back: the dead holder may still have mailed it, so this mail is a
    // possible duplicate, as it would have been without the deferral.
    let second = b.pipeline(b.outbox.clone()).handle(&event(vec![record("m2", &body)]), deadline(30)).await;
    assert!(matches!(second.records[0].outcome, RecordOutcome::Sent { .. }), "{:?}", second.records[0]);
    let counted: u64 = second.counters().values().map(|c| c.get(Counter::PossibleDuplicate)).sum();
    assert_eq!(counted, 1, "the mail after a deferred takeover counts as a possible duplicate");
}

/// An event source mapping delivers its whole batch whatever the rate: the batch keeps what its
/// rate sends within three seconds (high priority first) and hands the rest back unclaimed, so
/// their copies can go at once to an instance that can send them.
#[tokio::test]
async fn a_batch_larger_than_its_rate_sends_soon_keeps_high_priority_first_and_hands_the_rest_back_unclaimed() {
    use order_confirmation::rate::SendRateLimiter;
    let b = LocalBackends::new().await;
    // 1 mail/s with one slot in hand: 1 + 3 s x 1 = 4 sends within the horizon.
    let gate = Arc::new(SendRateLimiter::starting_at(1.0, 1.0, 0.0, 1.0));
    let mut records: Vec<_> =
        (1..=8).map(|i| record(&format!("m{i}"), &order_body(&format!("HB-{i}"), "normal"))).collect();
    records.push(record("m9", &order_body("HB-H1", "high")));
    records.push(record("m10", &order_body("HB-H2", "high")));
    let report = Pipeline::new(b.ledger.clone(), b.outbox.clone(), Some(gate), PipelineSettings::default())
        .handle(&event(records), deadline(30))
        .await;
    let handed_back: Vec<&str> = report
        .records
        .iter()
        .filter(|r| matches!(r.outcome, RecordOutcome::Deferred { handed_back: true, .. }))
        .filter_map(|r| r.order_id.as_deref())
        .collect();
    assert_eq!(handed_back, vec!["HB-3", "HB-4", "HB-5", "HB-6", "HB-7", "HB-8"]);
    for r in &report.records[..2].iter().chain(&report.records[8..]).collect::<Vec<_>>() {
        assert!(matches!(r.outcome, RecordOutcome::Sent { .. }), "{r:?}");
    }
    for id in handed_back {
        assert_eq!(status_of(b.ledger.as_ref(), id).await, None, "{id} was never claimed");
        assert_eq!(b.mails_for(id), 0);
    }
    // Without a send rate nothing is handed back.
    let report = b.pipeline(b.outbox.clone()).handle(&batch_of("HB-ALL", 10), deadline(30)).await;
    assert!(report.records.iter().all(|r| matches!(r.outcome, RecordOutcome::Sent { .. })), "{report:?}");
}

/// A rate that grants nothing soon still keeps one order (it waits for a slot, and is deferred if
/// none comes in time): an invocation that kept none would hand its whole batch back and be given
/// it again at once.
#[tokio::test]
async fn a_batch_whose_rate_grants_nothing_soon_still_keeps_one_order() {
    use order_confirmation::rate::{SendGate, SendRateLimiter};
    let b = LocalBackends::new().await;
    let gate = Arc::new(SendRateLimiter::starting_at(0.001, 0.001, 0.0, 1.0));
    assert!(gate.acquire(order_confirmation::order::Priority::Normal, tokio::time::Instant::now()).await);
    let p = Pipeline::new(b.ledger.clone(), b.outbox.clone(), Some(gate), PipelineSettings::default());
    let report = p.handle(&batch_of("K1", 3), deadline(3)).await;
    let handed_back = |r: &&RecordReport| matches!(r.outcome, RecordOutcome::Deferred { handed_back: true, .. });
    assert_eq!(report.records.iter().filter(handed_back).count(), 2, "{report:?}");
    let kept = &report.records[0];
    assert!(matches!(kept.outcome, RecordOutcome::Deferred { handed_back: false, .. }), "{kept:?}");
    assert_eq!(status_of(b.ledger.as_ref(), "K1-1").await, Some(Status::Failed), "claimed, then released");
    // The dashboard tells the two apart: three deferred, two of them handed back.
    let counted = |metric| report.counters().values().map(|c| c.get(metric)).sum::<u64>();
    assert_eq!((counted(Counter::Deferred), counted(Counter::HandedBack)), (3, 2));
}

/// A kept order whose slot does not come within the horizon (and a second), because the rate was
/// cut after the batch kept it, is handed back unmailed and released, not held until the budget
/// runs out: at the end of a backlog that order would be the tail.
#[tokio::test]
async fn a_kept_order_whose_slot_does_not_come_soon_is_handed_back_not_held_to_the_budgets_end() {
    let b = LocalBackends::new().await;
    let report = Pipeline::new(
        b.ledger.clone(),
        b.outbox.clone(),
        Some(Arc::new(CutAfterOneSend::default())),
        PipelineSettings::default(),
    )
    .handle(&batch_of("TB", 4), deadline(60))
    .await;
    assert!(matches!(report.records[0].outcome, RecordOutcome::Sent { .. }), "{report:?}");
    for r in &report.records[1..] {
        assert!(matches!(r.outcome, RecordOutcome::Deferred { handed_back: true, .. }), "{r:?}");
        let id = r.order_id.as_deref().unwrap();
        assert_eq!(b.mails_for(id), 0, "{id}");
        let state = b.ledger.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!((state.status, state.attempts), (Status::Failed, 0), "{id} released without spending an attempt");
    }
}

/// A stand-in send gate whose rate is cut to nothing after one send: it grants the batch four
/// sends within the horizon, the first slot at once, and no other before the caller gives up. It
/// shows what the pipeline does when SES's throttling cuts the rate after a batch kept its orders;
/// the real limiter's cut is tested in `rate`.
#[derive(Default)]
struct CutAfterOneSend {
    granted: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl order_confirmation::rate::SendGate for CutAfterOneSend {
    async fn acquire(&self, _: order_confirmation::order::Priority, give_up_at: tokio::time::Instant) -> bool {
        if !self.granted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep_until(give_up_at).await;
        false
    }

    async fn feedback(&self, _: order_confirmation::order::Priority, _: bool) {}

    async fn sendable_within(&self, _: Duration) -> Option<usize> {
        Some(4)
    }
}
