//! Reconciliation: stuck and long-failed orders are re-sent from their stored payload through the
//! normal path, the attempt bound marks orders abandoned, and the alarm numbers are right.

use crate::support;

use order_confirmation::error::BackendError;
use order_confirmation::ledger::{Ledger, LedgerOps, Status};
use order_confirmation::order::OrderId;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use order_confirmation::reconcile::{ReconcileSettings, reconcile};
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn settings() -> ReconcileSettings {
    ReconcileSettings {
        failed_for: Duration::ZERO,
        max_attempts: 3,
        batch_limit: 100,
        grace: Duration::ZERO,
        ..ReconcileSettings::default()
    }
}

#[tokio::test]
async fn failed_orders_are_re_sent_from_the_stored_payload_and_confirmed() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(
        ScriptedMailer::new(b.outbox.clone()).fault("RC-1", Fault::Fail(BackendError::transient("throttled"))),
    );
    let p = b.pipeline(mailer.clone());
    let e = event(vec![record("m1", &order_body("RC-1", "high")), record("m2", &order_body("RC-2", "normal"))]);
    p.handle(&e, deadline(30)).await;
    assert_eq!(b.ledger.order_state(&OrderId::parse("RC-1").unwrap()).await.unwrap().unwrap().status, Status::Failed);

    // The SQS message is gone (say it reached the DLQ); reconciliation still confirms the order.
    mailer.clear();
    let report = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap();
    assert_eq!((report.found, report.resent, report.abandoned, report.still_failing), (1, 1, 0, 0));
    assert_eq!(report.unconfirmed.count, 0);
    let st = b.ledger.order_state(&OrderId::parse("RC-1").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.attempts), (Status::Sent, 2));
    assert_eq!(b.mails_for("RC-1"), 1);
    assert_eq!(b.mails_for("RC-2"), 1, "the confirmed neighbour is left alone");
    let mail = std::fs::read_to_string(
        b.outbox.dir().join(b.outbox_files().into_iter().find(|f| f.contains("RC-1")).unwrap()),
    )
    .unwrap();
    assert!(mail.contains("To: \"Customer RC-1\" <rc-1@example.com>"), "re-sent from the stored payload: {mail}");
}

#[tokio::test]
async fn an_order_stuck_in_sending_past_its_lease_is_completed() {
    let b = LocalBackends::new().await;
    let mailer = Arc::new(ScriptedMailer::new(b.outbox.clone()));
    let p = Pipeline::new(b.ledger.clone(), mailer.clone(), None, PipelineSettings::default());
    // Claimed with a lease that expires at once, and never recorded: an invocation that died.
    let order = order_confirmation::decode::decode(&order_body("ST-1", "normal")).unwrap().order;
    let claim = b
        .ledger
        .claim(
            &[order_confirmation::ledger::ClaimRequest {
                order_id: OrderId::parse("ST-1").unwrap(),
                payload_sha256: order.payload_sha256(),
                priority: order.priority,
                payload: order.canonical_json(),
            }],
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(matches!(claim[0], order_confirmation::ledger::Claim::Claimed { .. }));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap();
    assert_eq!((report.found, report.resent), (1, 1));
    let batch = report.batch.unwrap();
    assert_eq!(
        batch.counters().values().map(|c| c.get(order_confirmation::batch::Counter::PossibleDuplicate)).sum::<u64>(),
        1,
        "taken over from a dead holder"
    );
    assert_eq!(b.ledger.order_state(&OrderId::parse("ST-1").unwrap()).await.unwrap().unwrap().status, Status::Sent);
}

#[tokio::test]
async fn orders_past_the_attempt_bound_are_abandoned_and_stay_unconfirmed_for_the_alarm() {
    let b = LocalBackends::new().await;
    let mailer =
        Arc::new(ScriptedMailer::new(b.outbox.clone()).fault("AB-1", Fault::Fail(BackendError::transient("SES down"))));
    let p = b.pipeline(mailer.clone());
    let e = event(vec![record("m1", &order_body("AB-1", "high"))]);
    p.handle(&e, deadline(30)).await; // attempt 1
    let r = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap(); // attempt 2
    assert_eq!((r.resent, r.still_failing, r.abandoned), (0, 1, 0));
    let r = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap(); // attempt 3
    assert_eq!((r.still_failing, r.abandoned), (1, 0));
    let r = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap(); // bound reached
    assert_eq!((r.found, r.resent, r.abandoned), (1, 0, 1));
    assert_eq!(r.unconfirmed.count, 1, "abandoned orders still count as unconfirmed: a person must act");
    assert!(r.unconfirmed.oldest_seconds >= 0.0);
    let st = b.ledger.order_state(&OrderId::parse("AB-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Abandoned);
    let last_error = st.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.starts_with("reconciliation gave up after 3 attempts; needs a person; last error: "),
        "{last_error}"
    );
    assert!(last_error.contains("SES down"), "the cause stays beside the verdict: {last_error}");
    assert_eq!(mailer.attempts.load(std::sync::atomic::Ordering::SeqCst), 3);
    let r = reconcile(&p, b.ledger.as_ref(), &settings(), deadline(30)).await.unwrap();
    assert_eq!(r.found, 0, "abandoned orders are not retried again");
}

#[test]
fn the_retry_command_re_sends_an_abandoned_order_once_its_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let bin = env!("CARGO_BIN_EXE_order-confirmation");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("LEDGER", format!("sqlite:{}", db.display()))
            .env("MAILER", format!("outbox:{}", dir.path().join("o").display()))
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .output()
            .unwrap()
    };
    let out = run(&["invoke", "events/sqs-batch.json"]);
    assert!(out.status.success());
    // Make ORD-1001 abandoned, as reconciliation would after its attempt bound: never recorded
    // sent, no mail of it known (a retry that finds one records it instead of mailing again).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE order_confirmations SET status = 'abandoned', last_error = 'gave up', ses_message_id = NULL, \
         sent_at = NULL WHERE order_id = 'ORD-1001'",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM ses_mails WHERE order_id = 'ORD-1001'", []).unwrap();
    let out = run(&["retry", "ORD-1001"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (outcome["outcome"]["outcome"].as_str(), outcome["sent"].as_bool()),
        (Some("sent"), Some(true)),
        "{outcome}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("released ORD-1001 for retry"));
    let status: String =
        conn.query_row("SELECT status FROM order_confirmations WHERE order_id = 'ORD-1001'", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "sent");
    let mails = std::fs::read_dir(dir.path().join("o"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-ORD-1001-"))
        .count();
    assert_eq!(mails, 2, "mailed again on purpose: the operator asked for it");

    let out = run(&["retry", "ORD-1002"]);
    assert_eq!(out.status.code(), Some(3), "a sent order is not retried");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not abandoned or rejected"));
}

#[test]
fn the_reconcile_command_prints_its_report_and_the_alarm_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_order-confirmation");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("LEDGER", format!("sqlite:{}", dir.path().join("l.db").display()))
            .env("MAILER", format!("outbox:{}", dir.path().join("o").display()))
            .env("UNCONFIRMED_GRACE_SECONDS", "0")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .output()
            .unwrap()
    };
    run(&["invoke", "events/sqs-batch.json"]);
    let out = run(&["reconcile"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["found"], 0);
    assert_eq!(report["unconfirmed"]["count"], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let emf: serde_json::Value = stderr
        .lines()
        .filter(|l| l.contains("UnconfirmedOrders"))
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("an EMF line with UnconfirmedOrders");
    assert_eq!(emf["UnconfirmedOrders"], 0.0);
    assert_eq!(emf["OldestUnconfirmedSeconds"], 0.0);
}

#[test]
fn the_status_view_shows_state_without_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["invoke", "events/sqs-batch.json"])
        .env("LEDGER", format!("sqlite:{}", db.display()))
        .env("MAILER", format!("outbox:{}", dir.path().join("o").display()))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .unwrap();
    assert!(out.status.success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM order_confirmation_status WHERE order_id = 'ORD-1002'").unwrap();
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    assert!(!columns.iter().any(|c| c == "payload"), "{columns:?}");
    let customer_status: String = stmt.query_row([], |r| r.get("customer_status")).unwrap();
    assert_eq!(customer_status, "confirmed");
    let row: String = conn
        .query_row(
            "SELECT group_concat(order_id || status || customer_status) FROM order_confirmation_status",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!row.contains("@"), "no address anywhere in the view");
}

#[tokio::test]
async fn each_reconcile_run_applies_retention_in_a_bounded_number_of_steps() {
    let b = LocalBackends::new().await;
    let p = b.pipeline(Arc::new(ScriptedMailer::new(b.outbox.clone())));
    let records: Vec<_> =
        (1..=5).map(|i| record(&format!("m{i}"), &order_body(&format!("RET-{i}"), "normal"))).collect();
    p.handle(&event(records), deadline(30)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retention = order_confirmation::reconcile::Retention {
        payload_after: Duration::ZERO,
        delete_after: Duration::from_secs(3600),
        step_limit: 2,
        steps: 2,
    };
    let settings = ReconcileSettings { retention, ..settings() };

    let first = reconcile(&p, b.ledger.as_ref(), &settings, deadline(30)).await.unwrap();
    assert_eq!(first.retained.payloads_removed, 4, "two steps of two; the fifth waits for the next run");
    let second = reconcile(&p, b.ledger.as_ref(), &settings, deadline(30)).await.unwrap();
    assert_eq!(second.retained.payloads_removed, 1);
    for i in 1..=5 {
        let st = b.ledger.order_state(&OrderId::parse(&format!("RET-{i}")).unwrap()).await.unwrap().unwrap();
        assert!(st.payload_removed_at.is_some() && st.status == Status::Sent, "RET-{i}: {st:?}");
    }
    assert_eq!(second.retained.rows_deleted, 0, "the horizon is an hour away");
}
