//! The production backends (Data API ledger, SES v2 mailer) through the real AWS SDK clients over
//! HTTP, against rds-data-local in front of PostgreSQL and aws-ses-v2-local behind a fault
//! injector.

use crate::support;

use aws_lambda_events::sqs::SqsEvent;
use order_confirmation::batch::{BatchReport, Counter, RecordOutcome};
use order_confirmation::error::BackendError;
use order_confirmation::ledger::{Ledger, LedgerOps, Status};
use order_confirmation::mailer::Mailer;
use order_confirmation::order::{Order, OrderId};
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use order_confirmation::render::Mail;
use order_confirmation::ses_event::{EventType, MailTags};
use std::sync::Arc;
use std::time::Duration;
use support::faults::{Action, Rule};
use support::services::Services;
use support::*;

fn failures(report: &BatchReport) -> Vec<String> {
    report.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
}

async fn pipeline(s: &Services) -> Pipeline {
    Pipeline::new(s.ledger().await, s.mailer().await, None, PipelineSettings::default())
}

fn sample_event() -> SqsEvent {
    event_file("sqs-batch.json")
}

fn email_of(order_id: &str) -> String {
    format!("{}@example.com", order_id.to_lowercase())
}

#[tokio::test]
async fn sample_batch_is_mailed_through_ses_and_recorded_in_the_data_api_ledger() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    let report = p.handle(&sample_event(), deadline(30)).await;
    assert_eq!(failures(&report), vec!["b9b3c0b5-3a30-4d43-9c7a-0d6a3f5f2a11", "c3f4e5d6-1111-4a2b-9c3d-4e5f60718293"]);
    let mails = s.sent_mails().await;
    assert_eq!(mails.len(), 4);
    let jane = mails.iter().find(|m| m["destination"]["to"][0] == "jane.doe@example.com").expect("mail to Jane");
    assert_eq!(jane["from"], support::services::SENDER);
    assert_eq!(jane["subject"], "Your order ORD-1001 is confirmed");
    let text = jane["body"]["text"].as_str().unwrap();
    assert!(text.starts_with("Hi Jane Doe,") && text.contains("  - 2 x Coffee mug (€12.50 each)"), "{text}");
    let html = jane["body"]["html"].as_str().unwrap();
    assert!(html.contains(">Coffee mug</td>") && html.contains(">€42.50</td>"), "{html}");
    // ORD-1002 carries locale ja-JP: Japanese words, and yen without decimals as CLDR writes them.
    let kenji = mails.iter().find(|m| m["destination"]["to"][0] == "kenji@example.jp").unwrap();
    assert_eq!(kenji["subject"], "ご注文 ORD-1002 を承りました");
    assert!(kenji["body"]["text"].as_str().unwrap().contains("合計: ￥129\n"), "{kenji}");
    let ana = mails.iter().find(|m| m["destination"]["to"][0] == "ana@example.pt").unwrap();
    assert!(ana["body"]["html"].as_str().unwrap().contains("Ana &lt;b&gt;Silva&lt;&#x2f;b&gt;"));

    // What the SDK sent: the priority, order id and claim token tags (each in SES's tag alphabet,
    // none personal) and the configuration set.
    let request = s.ses_proxy.requests().into_iter().find(|r| r.contains("ORD-1002")).unwrap();
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    let tags = request["EmailTags"].as_array().unwrap();
    let tag = |name: &str| tags.iter().find(|t| t["Name"] == name).map(|t| t["Value"].as_str().unwrap().to_owned());
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert_eq!(tag("priority").as_deref(), Some("high"));
    assert_eq!(tag("order_id").as_deref(), Some("ORD-1002"));
    let token = tag("claim_token").expect("claim_token tag");
    assert!(uuid::Uuid::try_parse(&token).is_ok(), "{token}");
    for t in tags {
        let value = t["Value"].as_str().unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{value}");
    }
    assert_eq!(request["ConfigurationSetName"], "order-confirmations");
    assert_eq!(request["Destination"]["ToAddresses"], serde_json::json!(["kenji@example.jp"]));

    // The ledger holds the SES message id of each mail.
    let ledger = s.ledger().await;
    for m in &mails {
        let subject = m["subject"].as_str().unwrap();
        // Every subject names the order, in whichever language.
        let order_id = subject.split_whitespace().find(|w| w.starts_with("ORD-")).unwrap();
        let state = ledger.order_state(&OrderId::parse(order_id).unwrap()).await.unwrap().unwrap();
        assert_eq!(state.status, Status::Sent);
        assert_eq!(state.ses_message_id.as_deref(), m["messageId"].as_str());
    }

    // A second delivery of the same batch sends nothing and reports the same failures.
    let again = p.handle(&sample_event(), deadline(30)).await;
    assert_eq!(failures(&again), failures(&report));
    assert_eq!(s.sent_mails().await.len(), 4);
}

#[tokio::test]
async fn a_batch_that_fits_one_wave_costs_exactly_two_data_api_requests() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    let wave = PipelineSettings::default().concurrency;
    let e = event((0..wave).map(|i| record(&format!("m{i}"), &order_body(&format!("B-{i:03}"), "normal"))).collect());
    s.reset_data_api_stats().await;
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty());
    let stats = s.data_api_stats().await;
    assert_eq!(stats["ExecuteStatement"], 2, "one claim and one record: {stats}");
    assert_eq!(stats["BatchExecuteStatement"], 0);
    assert_eq!(stats["BeginTransaction"], 0);
    assert_eq!(s.sent_mails().await.len(), wave);
}

#[tokio::test]
async fn a_batch_of_100_orders_costs_one_claim_and_one_record_per_wave() {
    let s = Services::start().await;
    // Waves closed by count only (the one-second close would add waves on a slow machine).
    let settings = PipelineSettings { wave_interval: Duration::from_secs(300), ..PipelineSettings::default() };
    let p = Pipeline::new(s.ledger().await, s.mailer().await, None, settings.clone());
    let e = event((0..100).map(|i| record(&format!("m{i}"), &order_body(&format!("B-{i:03}"), "normal"))).collect());
    s.reset_data_api_stats().await;
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty());
    let stats = s.data_api_stats().await;
    let waves = 100_usize.div_ceil(settings.concurrency);
    assert_eq!(stats["ExecuteStatement"], 1 + waves, "one claim and {waves} records: {stats}");
    assert_eq!(s.sent_mails().await.len(), 100);
}

#[tokio::test]
async fn throttled_ses_defers_only_the_affected_records_and_the_next_delivery_mails_each_once() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    // Always throttled, whatever the SDK retries: the record must fail, not hang.
    s.ses_proxy.add(Rule::matching("t-2@example.com", Action::Throttle));
    s.ses_proxy.add(Rule::matching("t-4@example.com", Action::Throttle));
    let e = event((1..=5).map(|i| record(&format!("m{i}"), &order_body(&format!("T-{i}"), "normal"))).collect());
    let report = p.handle(&e, deadline(60)).await;
    assert_eq!(failures(&report), vec!["m2", "m4"]);
    assert!(
        matches!(&report.records[1].outcome, RecordOutcome::Deferred { reason, .. } if reason.contains("TooManyRequestsException")),
        "{:?}",
        report.records[1].outcome
    );
    let ledger = s.ledger().await;
    let state = ledger.order_state(&OrderId::parse("T-2").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Failed, "retryable");
    assert_eq!(state.attempts, 0, "a throttled order spends no ledger attempt");
    let (faulted, _) = s.ses_proxy.counts();
    assert!(faulted > 2, "the SDK retried the throttled calls itself ({faulted} faulted)");

    s.ses_proxy.clear();
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty());
    for i in 1..=5 {
        assert_eq!(s.mails_to(&email_of(&format!("T-{i}"))).await, 1, "T-{i} mailed exactly once");
    }
}

#[tokio::test]
async fn a_throttle_the_sdk_rides_out_needs_no_redelivery() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    s.ses_proxy.add(Rule::matching("r-1@example.com", Action::Throttle).times(1));
    s.ses_proxy.add(Rule::matching("r-2@example.com", Action::ServerError).times(1));
    let e = event_of(&[("m1", "R-1"), ("m2", "R-2")]);
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty(), "{:?}", report.records);
    assert_eq!(s.sent_mails().await.len(), 2);
}

#[tokio::test]
async fn a_throttle_under_a_send_rate_limit_cuts_the_rate_and_the_order_still_goes_out_in_the_same_batch() {
    let s = Services::start().await;
    let gate = Arc::new(order_confirmation::rate::SendRateLimiter::new(10.0, 10.0, 0.2));
    let p = Pipeline::new(
        s.ledger().await,
        s.rate_limited_mailer().await,
        Some(gate.clone() as Arc<dyn order_confirmation::rate::SendGate>),
        PipelineSettings::default(),
    );
    s.ses_proxy.add(Rule::matching("g-1@example.com", Action::Throttle).times(1));
    let e = event_of(&[("m1", "G-1")]);
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty(), "sent in this batch, not deferred: {:?}", report.records);
    assert_eq!(s.mails_to("g-1@example.com").await, 1);
    // The SDK did not ride the throttle out unseen: the limiter got SES's answer and cut its rate
    // (to 6), then paced the second attempt itself, whose acceptance climbs part of the way back
    // (8.5). An SDK retry would have reported one accepted send: the rate would still be 10.
    assert!(gate.rate().await < 10.0, "the limiter saw the throttle: rate {}", gate.rate().await);
}

fn event_of(pairs: &[(&str, &str)]) -> SqsEvent {
    event(pairs.iter().map(|(m, id)| record(m, &order_body(id, "normal"))).collect())
}

#[tokio::test]
async fn message_rejected_marks_the_order_rejected_with_its_reason_and_reports_it() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    s.ses_proxy.add(Rule::matching(
        "x-1@example.com",
        Action::Reject("Email address is not verified. The following identities failed the check in region US-EAST-1: x-1@example.com".into()),
    ));
    let e = event_of(&[("m1", "X-1"), ("m2", "X-2")]);
    let report = p.handle(&e, deadline(30)).await;
    assert_eq!(failures(&report), vec!["m1"]);
    let state = s.ledger().await.order_state(&OrderId::parse("X-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Rejected);
    let reason = state.last_error.unwrap();
    assert!(reason.starts_with("SendEmail: MessageRejected: Email address is not verified"), "{reason}");
    assert!(!reason.contains("x-1@"), "the address is redacted: {reason}");
    assert_eq!(s.mails_to("x-2@example.com").await, 1);
}

#[tokio::test]
async fn sending_paused_stops_all_further_sends_in_the_invocation() {
    let s = Services::start().await;
    let p = Pipeline::new(
        s.ledger().await,
        s.mailer().await,
        None,
        PipelineSettings { concurrency: 1, ..PipelineSettings::default() },
    );
    s.ses_proxy.add(Rule::always(Action::SendingPaused).times(1));
    let e = event((1..=5).map(|i| record(&format!("m{i}"), &order_body(&format!("P-{i}"), "normal"))).collect());
    let report = p.handle(&e, deadline(30)).await;
    assert_eq!(failures(&report).len(), 5, "the rest fail as transient");
    assert_eq!(s.ses_proxy.requests().len(), 1, "no SES call after SendingPaused");
    assert!(s.sent_mails().await.is_empty());
    let report = p.handle(&e, deadline(30)).await;
    assert!(failures(&report).is_empty(), "sending resumed: all mailed on redelivery");
    assert_eq!(s.sent_mails().await.len(), 5);
}

#[tokio::test]
async fn a_database_resuming_for_a_second_is_ridden_out_by_the_sdk() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    // The Data API client makes 6 attempts with jittered backoff: each wait is uniform in
    // [0, min(0.5 s x 2^n, 5 s)], so all five waits together can be short. They sum to less than
    // 2.5 s about 2.5 % of the time (this test once failed that way with a 2.5 s window), and to
    // less than 1.2 s about 0.1 % of the time (before counting the requests themselves). Longer
    // outages are the pipeline's to ride out (the 20 s outage test) or the queue's (the next test).
    s.data_api_faults(serde_json::json!({"resuming_for_ms": 1200})).await;
    let e = event_of(&[("m1", "W-1"), ("m2", "W-2")]);
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty(), "{:?}", report.records);
    assert_eq!(s.sent_mails().await.len(), 2);
    let stats = s.data_api_stats().await;
    assert!(stats["ExecuteStatement"].as_u64().unwrap() > 2, "the SDK retried: {stats}");
}

#[tokio::test]
async fn a_database_that_stays_down_fails_the_batch_cleanly_as_transient_and_marks_nothing_sent() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    s.data_api_faults(serde_json::json!({"resuming_for_ms": 60_000})).await;
    let e = event_of(&[("m1", "Y-1"), ("m2", "Y-2")]);
    let report = p.handle(&e, deadline(60)).await;
    assert_eq!(failures(&report), vec!["m1", "m2"]);
    assert!(report.records.iter().all(
        |r| matches!(&r.outcome, RecordOutcome::TransientFailure { reason } if reason.contains("DatabaseResumingException"))
    ));
    assert!(s.sent_mails().await.is_empty(), "nothing is sent without a claim");
    s.data_api_faults(serde_json::json!({"resuming_for_ms": 0})).await;
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty());
    assert_eq!(s.sent_mails().await.len(), 2);
}

#[tokio::test]
async fn two_concurrent_invocations_on_overlapping_batches_never_mail_an_order_twice() {
    let s = Services::start().await;
    let a = Arc::new(pipeline(&s).await);
    let b = Arc::new(pipeline(&s).await);
    // Slow SES so the two invocations overlap while holding their leases.
    s.ses_proxy.add(Rule::always(Action::Delay(Duration::from_millis(150))));
    let first = event((0..30).map(|i| record(&format!("a{i}"), &order_body(&format!("C-{i}"), "normal"))).collect());
    let second = event((15..45).map(|i| record(&format!("b{i}"), &order_body(&format!("C-{i}"), "normal"))).collect());
    let (ra, rb) = tokio::join!(a.handle(&first, deadline(60)), b.handle(&second, deadline(60)));
    let mut pending: Vec<String> = failures(&ra).into_iter().chain(failures(&rb)).collect();
    // What was in flight elsewhere comes back on redelivery and is acknowledged, not re-mailed.
    let mut rounds = 0;
    while !pending.is_empty() && rounds < 5 {
        rounds += 1;
        let e = event(
            pending
                .iter()
                .map(|m| {
                    let i: usize = m[1..].parse().unwrap();
                    record(m, &order_body(&format!("C-{i}"), "normal"))
                })
                .collect(),
        );
        pending = failures(&a.handle(&e, deadline(60)).await);
    }
    assert!(pending.is_empty());
    for i in 0..45 {
        assert_eq!(s.mails_to(&email_of(&format!("C-{i}"))).await, 1, "C-{i}");
    }
}

#[tokio::test]
async fn the_binary_runs_on_the_production_backends_through_the_standard_endpoint_variables() {
    let s = Services::start().await;
    // tokio's Command, so the in-process emulators keep serving while the child runs.
    let run = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
        c.current_dir(env!("CARGO_MANIFEST_DIR")).args(args).env_remove("AWS_LAMBDA_RUNTIME_API");
        for (k, v) in s.env() {
            c.env(k, v);
        }
        async move { c.output().await.expect("run binary") }
    };
    let out = run(&["migrate"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["invoke", "events/sqs-batch.json"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("b9b3c0b5-3a30-4d43-9c7a-0d6a3f5f2a11"), "{stdout}");
    assert_eq!(s.sent_mails().await.len(), 4);
    let out = run(&["status", "ORD-1002", "--json"]).await;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "sent");
    assert!(state["ses_message_id"].as_str().is_some_and(|id| !id.is_empty()));
    let out = run(&["stats", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let normal = stats["priorities"].as_array().unwrap().iter().find(|p| p["priority"] == "normal").unwrap().clone();
    assert_eq!(normal["by_status"]["sent"], 2);
    assert!(normal["time_to_send_seconds"]["p50"].is_number());
    let out = run(&["config"]).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("\"LEDGER\": \"data-api\"") && !printed.contains(SECRET_ARN_TAIL), "{printed}");
    assert!(printed.contains("\"DB_SECRET_ARN\": \"****"), "masked: {printed}");
}

const SECRET_ARN_TAIL: &str = "secret:orders-db";

/// Mails through the real SES client; on the first send it starts a Data API outage (the
/// emulator answers DatabaseResumingException for `outage`), right after the batch was claimed.
struct OutageAfterClaim {
    inner: Arc<dyn Mailer>,
    data_api_faults: String,
    outage: Duration,
    started: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Mailer for OutageAfterClaim {
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError> {
        if !self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let body = serde_json::json!({ "resuming_for_ms": self.outage.as_millis() as u64 }).to_string();
            let (status, _) = support::services::http_request("POST", &self.data_api_faults, Some(body)).await.unwrap();
            assert!(status < 300);
        }
        self.inner.send(order, mail, tags).await
    }
}

#[tokio::test]
async fn a_20_second_data_api_outage_right_after_the_claim_leaves_every_order_mailed_exactly_once() {
    let s = Services::start().await;
    let mailer = Arc::new(OutageAfterClaim {
        inner: s.mailer().await,
        data_api_faults: format!("{}/_faults", s.data_api_url()),
        outage: Duration::from_secs(20),
        started: Default::default(),
    });
    let p = Pipeline::new(s.ledger().await, mailer, None, PipelineSettings::default());
    let e = event((1..=5).map(|i| record(&format!("m{i}"), &order_body(&format!("O-{i}"), "normal"))).collect());
    let report = p.handle(&e, deadline(60)).await;
    assert!(failures(&report).is_empty(), "the record step rode out the outage: {:?}", report.records);
    let ledger = s.ledger().await;
    for i in 1..=5 {
        let state = ledger.order_state(&OrderId::parse(&format!("O-{i}")).unwrap()).await.unwrap().unwrap();
        assert_eq!(state.status, Status::Sent, "O-{i} recorded");
    }
    // The redelivery (or reconcile) finds every order sent and mails nothing more.
    let again = p.handle(&e, deadline(60)).await;
    assert!(failures(&again).is_empty());
    for i in 1..=5 {
        assert_eq!(s.mails_to(&email_of(&format!("O-{i}"))).await, 1, "O-{i} mailed exactly once");
    }
}

/// An order about as large as the message contract lets a payload be: 100 items whose names are
/// 200 four-byte characters, a long name and fulfillment center. Its canonical payload is about
/// 86 KB, over the Data API's 64 KB row limit.
fn large_order_body(order_id: &str) -> String {
    let items: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"name": format!("{:03}{}", i, "🎁".repeat(197)), "quantity": 1, "price": "1.00"}))
        .collect();
    serde_json::json!({
        "order_id": order_id,
        "customer_email": format!("{}@example.com", order_id.to_lowercase()),
        "customer_name": format!("Customer {order_id} {}", "🌟".repeat(150)),
        "items": items,
        "total": "100.00",
        "currency": "EUR",
        "fulfillment": {"center": "🏭".repeat(100)},
    })
    .to_string()
}

fn claim_request(body: &str) -> order_confirmation::ledger::ClaimRequest {
    let order = order_confirmation::decode::decode(body).expect("valid order").order;
    order_confirmation::ledger::ClaimRequest {
        order_id: order.order_id.clone(),
        payload_sha256: order.payload_sha256(),
        priority: order.priority,
        payload: order.canonical_json(),
    }
}

#[tokio::test]
async fn reconcile_re_sends_15_stuck_orders_of_87_kb_each() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    let ledger = s.ledger().await;
    // Claimed with a lease that ends at once and never recorded: invocations that died.
    let requests: Vec<_> = (0..15).map(|i| claim_request(&large_order_body(&format!("BIG-{i:02}")))).collect();
    assert!(requests.iter().all(|r| r.payload.len() > 80_000), "{}", requests[0].payload.len());
    let claims = ledger.claim(&requests, Duration::ZERO).await.expect("claim");
    assert!(claims.iter().all(|c| matches!(c, order_confirmation::ledger::Claim::Claimed { .. })), "{claims:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;

    let settings = order_confirmation::reconcile::ReconcileSettings {
        failed_for: Duration::ZERO,
        max_attempts: 10,
        batch_limit: 100,
        grace: Duration::ZERO,
        ..Default::default()
    };
    let report = order_confirmation::reconcile::reconcile(&p, ledger.as_ref(), &settings, deadline(120))
        .await
        .expect("reconcile runs");
    assert_eq!((report.found, report.resent, report.still_failing), (15, 15, 0));
    assert_eq!(report.unconfirmed.count, 0);
    for i in 0..15 {
        let id = format!("BIG-{i:02}");
        assert_eq!(s.mails_to(&email_of(&id)).await, 1, "{id}");
        let state = ledger.order_state(&OrderId::parse(&id).unwrap()).await.unwrap().unwrap();
        assert_eq!(state.status, Status::Sent, "{id}");
    }
    // Re-sent from the whole stored payload: every item reached the mail.
    let mail = s.sent_mails().await.into_iter().find(|m| m["destination"]["to"][0] == email_of("BIG-07")).unwrap();
    let text = mail["body"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("099{}", "🎁".repeat(197))), "the last item is in the mail");
}

#[tokio::test]
async fn a_50_order_batch_of_large_orders_is_mailed_in_full_with_small_neighbours() {
    let s = Services::start().await;
    let p = pipeline(&s).await;
    let mut records: Vec<_> =
        (0..50).map(|i| record(&format!("L{i}"), &large_order_body(&format!("LARGE-{i:02}")))).collect();
    records.insert(10, record("s1", &order_body("SMALL-1", "high")));
    records.push(record("s2", &order_body("SMALL-2", "normal")));
    let e = event(records);
    let total: usize = e.records.iter().map(|r| claim_request(r.body.as_deref().unwrap()).payload.len()).sum();
    assert!(total > 4 * 1024 * 1024, "the payloads alone are over the Data API's 4 MiB request limit: {total}");
    let report = p.handle(&e, deadline(120)).await;
    assert!(failures(&report).is_empty(), "{:?}", report.records.iter().map(|r| r.outcome.name()).collect::<Vec<_>>());
    assert_eq!(s.sent_mails().await.len(), 52);
    for id in (0..50).map(|i| format!("LARGE-{i:02}")).chain(["SMALL-1".into(), "SMALL-2".into()]) {
        assert_eq!(s.mails_to(&email_of(&id)).await, 1, "{id}");
    }
}

#[tokio::test]
async fn a_large_order_released_for_retry_comes_back_with_its_whole_payload() {
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let request = claim_request(&large_order_body("BIG-R"));
    let order_confirmation::ledger::Claim::Claimed { token, .. } =
        ledger.claim(std::slice::from_ref(&request), Duration::from_secs(60)).await.unwrap()[0]
    else {
        panic!("not claimed")
    };
    let rejected = order_confirmation::ledger::Recording {
        order_id: request.order_id.clone(),
        token,
        outcome: order_confirmation::ledger::Outcome::Rejected { reason: "MessageRejected: test".into() },
        takeover: false,
    };
    assert_eq!(ledger.record(&[rejected]).await.unwrap(), vec![order_confirmation::ledger::Recorded::APPLIED]);
    let released = ledger.release(&request.order_id).await.expect("release").expect("was rejected");
    let stored: serde_json::Value = serde_json::from_str(&released.payload).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&request.payload).unwrap();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn a_claim_request_that_fails_fails_only_the_orders_it_carried() {
    let s = Services::start().await;
    let proxy = support::faults::FaultProxy::start(&s.data_api_url()).await;
    // Two orders per claim request: three requests for six orders.
    let limits = order_confirmation::ledger::data_api::Limits { rows_per_request: 2, ..Default::default() };
    let ledger = s.ledger_at(proxy.url(), limits).await;
    let p = Pipeline::new(ledger, s.mailer().await, None, PipelineSettings::default());
    // The request carrying PART-B-1 is refused for good (not retried by the SDK).
    proxy.add(Rule::matching("PART-B-1", Action::Reject("refused for this test".into())));
    let ids = ["PART-A-1", "PART-A-2", "PART-B-1", "PART-B-2", "PART-C-1", "PART-C-2"];
    let e = event(ids.iter().map(|id| record(&format!("m-{id}"), &order_body(id, "normal"))).collect());
    let report = p.handle(&e, deadline(60)).await;
    assert_eq!(failures(&report), vec!["m-PART-B-1", "m-PART-B-2"]);
    assert!(
        matches!(&report.records[2].outcome, RecordOutcome::TransientFailure { reason } if reason.starts_with("claim failed")),
        "{:?}",
        report.records[2].outcome
    );
    for id in ["PART-A-1", "PART-A-2", "PART-C-1", "PART-C-2"] {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id}");
    }
    // Redelivered once the fault is gone: the two come through, nothing is mailed twice.
    proxy.clear();
    let again = p.handle(&e, deadline(60)).await;
    assert!(failures(&again).is_empty(), "{:?}", failures(&again));
    for id in ids {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id}");
    }
}

#[tokio::test]
async fn read_only_commands_on_a_database_without_the_ledger_schema_say_to_run_migrate() {
    let s = Services::start().await;
    for args in [&["status", "ORD-1"][..], &["stats"][..]] {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
        c.current_dir(env!("CARGO_MANIFEST_DIR")).args(args).env_remove("AWS_LAMBDA_RUNTIME_API");
        for (k, v) in s.env() {
            c.env(k, v);
        }
        let out = c.output().await.expect("run binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no ledger in database {}; check DB_NAME or run migrate", s.database)),
            "{args:?}: {stderr}"
        );
    }
}

/// A pipeline whose takeovers wait for the previous holder's Send event: a lease slack of 1 s and
/// a wait bound of `wait`.
async fn witnessing_pipeline(s: &Services, wait: Duration) -> Pipeline {
    let settings =
        PipelineSettings { lease_slack: Duration::from_secs(1), send_event_wait: wait, ..PipelineSettings::default() };
    Pipeline::new(s.ledger().await, s.mailer().await, None, settings)
}

/// SES accepts `order_id`'s mail, and the invocation sending it dies before the answer arrives
/// (it is dropped mid-send, between SES and the record step). Returns what SES accepted, once the
/// order's lease has run out.
async fn killed_after_ses_accepted(
    s: &Services,
    witness: &mut tokio::sync::mpsc::UnboundedReceiver<support::faults::AcceptedSend>,
    e: &SqsEvent,
    order_id: &str,
) -> support::faults::AcceptedSend {
    s.ses_proxy.add(Rule::matching(&email_of(order_id), Action::Hold(Duration::from_secs(60))).times(1));
    let dying = witnessing_pipeline(s, Duration::from_secs(10)).await;
    let e2 = e.clone();
    let worker = tokio::spawn(async move { dying.handle(&e2, deadline(3)).await });
    let accepted = tokio::time::timeout(Duration::from_secs(10), witness.recv())
        .await
        .expect("SES accepted the mail in time")
        .expect("the proxy announces accepted mails");
    worker.abort(); // the kill: nothing after SES's acceptance runs
    let _ = worker.await;
    let ledger = s.ledger().await;
    let id = OrderId::parse(order_id).unwrap();
    let st = ledger.order_state(&id).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Sending, "the dead invocation never recorded the send");
    // Until the lease (3 s of invocation + 1 s of slack) runs out, a redelivery is in flight.
    let until = st.lease_until.expect("leased");
    let left = until - time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(100)).await;
    accepted
}

#[tokio::test]
async fn a_takeover_after_a_kill_between_ses_and_the_record_step_mails_nothing_once_the_send_event_arrived() {
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let mut witness = s.ses_proxy.witness_sends();
    let e = event(vec![record("m-kw-1", &order_body("KW-1", "normal"))]);
    let accepted = killed_after_ses_accepted(&s, &mut witness, &e, "KW-1").await;
    assert_eq!(accepted.tag("order_id"), Some("KW-1"), "the mail names its order");
    assert!(accepted.tag("claim_token").is_some(), "and the claim that sent it");
    // SES's Send event reaches the ledger through the events path.
    support::ses_events::deliver_send_event(ledger.as_ref(), &accepted).await;

    // The redelivery takes the order over: the Send event shows SES accepted the dead holder's
    // mail, so that mail is recorded and nothing is sent.
    let report = witnessing_pipeline(&s, Duration::from_secs(10)).await.handle(&e, deadline(30)).await;
    assert_eq!(
        report.records[0].outcome,
        RecordOutcome::SentEarlier { provider_message_id: accepted.message_id.clone() }
    );
    assert!(failures(&report).is_empty());
    assert_eq!(s.mails_to(&email_of("KW-1")).await, 1, "one mail: the one SES accepted before the kill");
    let st = ledger.order_state(&OrderId::parse("KW-1").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.ses_message_id.as_deref()), (Status::Sent, Some(accepted.message_id.as_str())));
    let counters: Vec<_> = report.counters().into_values().collect();
    let c = &counters[0];
    assert_eq!((c.get(Counter::SentEarlier), c.get(Counter::PossibleDuplicate), c.get(Counter::Sent)), (1, 0, 0));
    // The takeover recorded the earlier mail, so no mail of this order is left unrecorded.
    assert!(!report.records[0].unrecorded_send, "{:?}", report.records[0]);
    assert_eq!(c.get(Counter::UnrecordedSend), 0);
}

#[tokio::test]
async fn a_takeover_mails_nothing_when_only_the_delivery_event_of_the_dead_holders_mail_arrived() {
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let mut witness = s.ses_proxy.witness_sends();
    let e = event(vec![record("m-kw-5", &order_body("KW-5", "normal"))]);
    let accepted = killed_after_ses_accepted(&s, &mut witness, &e, "KW-5").await;
    // SES lost the Send event (it publishes best effort); the mail's Delivery event arrives.
    let applied = support::ses_events::deliver_event(ledger.as_ref(), &accepted, EventType::Delivery).await;
    assert_eq!(applied.summary(), "1 event: 1 delivered");

    let report = witnessing_pipeline(&s, Duration::from_secs(10)).await.handle(&e, deadline(30)).await;
    assert_eq!(
        report.records[0].outcome,
        RecordOutcome::SentEarlier { provider_message_id: accepted.message_id.clone() }
    );
    assert_eq!(s.mails_to(&email_of("KW-5")).await, 1, "the Delivery event prevented the second mail");
    let st = ledger.order_state(&OrderId::parse("KW-5").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.ses_message_id.as_deref()), (Status::Sent, Some(accepted.message_id.as_str())));
    assert_eq!(st.delivery.state, Some(order_confirmation::ses_event::DeliveryState::Delivered));
    assert!(st.delivery.duplicate_message_ids.is_empty());
}

#[tokio::test]
async fn a_takeover_waits_for_a_send_event_still_on_its_way_and_then_mails_nothing() {
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let mut witness = s.ses_proxy.witness_sends();
    let e = event(vec![record("m-kw-2", &order_body("KW-2", "high"))]);
    let accepted = killed_after_ses_accepted(&s, &mut witness, &e, "KW-2").await;

    // The Send event arrives 1.5 s after the takeover began: within its wait (10 s from the
    // holder's last possible send, 1 s of slack of which had passed).
    let late = {
        let ledger = ledger.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            support::ses_events::deliver_send_event(ledger.as_ref(), &accepted).await;
        })
    };
    let started = std::time::Instant::now();
    let report = witnessing_pipeline(&s, Duration::from_secs(10)).await.handle(&e, deadline(30)).await;
    late.await.unwrap();
    assert_eq!(report.records[0].outcome, RecordOutcome::SentEarlier { provider_message_id: accepted.message_id });
    assert!(started.elapsed() >= Duration::from_millis(1500), "it waited for the event");
    assert_eq!(s.mails_to(&email_of("KW-2")).await, 1);
}

#[tokio::test]
async fn a_takeover_whose_send_event_never_comes_waits_only_its_bound_then_mails_and_counts_the_duplicate() {
    let s = Services::start().await;
    let mut witness = s.ses_proxy.witness_sends();
    let e = event(vec![record("m-kw-3", &order_body("KW-3", "normal"))]);
    let dead = killed_after_ses_accepted(&s, &mut witness, &e, "KW-3").await;

    // No Send event (SES publishes best effort): after 3 s (a 4 s bound, 1 s of slack already
    // passed) the takeover mails, and counts the possible duplicate.
    let started = std::time::Instant::now();
    let report = witnessing_pipeline(&s, Duration::from_secs(4)).await.handle(&e, deadline(30)).await;
    let took = started.elapsed();
    assert!(matches!(report.records[0].outcome, RecordOutcome::Sent { .. }), "{:?}", report.records[0].outcome);
    assert!(took >= Duration::from_millis(2500) && took < Duration::from_secs(8), "waited about 3 s: {took:?}");
    assert_eq!(s.mails_to(&email_of("KW-3")).await, 2, "at least once: the duplicate the event would have prevented");
    let counters: Vec<_> = report.counters().into_values().collect();
    assert_eq!((counters[0].get(Counter::PossibleDuplicate), counters[0].get(Counter::SentEarlier)), (1, 0));

    // The events come late after all: the takeover's mail's Send, then the dead holder's Delivery.
    // SES accepted two mails for KW-3: counted once, as the extra mail's first event arrives.
    let ledger = s.ledger().await;
    let takeover = witness.recv().await.expect("the takeover's mail was accepted");
    let own = support::ses_events::deliver_event(ledger.as_ref(), &takeover, EventType::Send).await;
    assert!(!own.records[0].duplicate_mail, "the recorded mail's own event");
    let first = support::ses_events::deliver_event(ledger.as_ref(), &dead, EventType::Delivery).await;
    assert!(first.records[0].duplicate_mail, "{}", first.summary());
    let priority = Some(order_confirmation::order::Priority::Normal);
    assert_eq!(first.counters().get(&(Counter::DuplicateMailed, priority)), Some(&1), "the EMF count");
    for event_type in [EventType::Delivery, EventType::Send] {
        let again = support::ses_events::deliver_event(ledger.as_ref(), &dead, event_type).await;
        assert!(!again.records[0].duplicate_mail, "redelivered or another event of the same mail: not again");
        assert_eq!(again.counters().get(&(Counter::DuplicateMailed, priority)), None);
    }
    let st = ledger.order_state(&OrderId::parse("KW-3").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.delivery.duplicate_message_ids, vec![dead.message_id.clone()]);
    let normal = ledger.delivery_stats().await.unwrap().into_iter().find(|p| p.priority.as_str() == "normal").unwrap();
    assert_eq!(normal.duplicates, 1);
}

#[tokio::test]
async fn reconcile_records_a_stuck_order_from_its_send_event_instead_of_re_sending_it() {
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let mut witness = s.ses_proxy.witness_sends();
    // The order's message is gone (say it reached the DLQ): only reconciliation can finish it.
    let e = event(vec![record("m-kw-4", &order_body("KW-4", "normal"))]);
    let accepted = killed_after_ses_accepted(&s, &mut witness, &e, "KW-4").await;
    support::ses_events::deliver_send_event(ledger.as_ref(), &accepted).await;

    let settings = order_confirmation::reconcile::ReconcileSettings {
        failed_for: Duration::ZERO,
        grace: Duration::ZERO,
        ..Default::default()
    };
    let p = witnessing_pipeline(&s, Duration::from_secs(10)).await;
    let report = order_confirmation::reconcile::reconcile(&p, ledger.as_ref(), &settings, deadline(30)).await.unwrap();
    assert_eq!((report.found, report.resent, report.sent_earlier, report.still_failing), (1, 0, 1, 0));
    assert_eq!(report.unconfirmed.count, 0, "confirmed: SES accepted its mail");
    assert_eq!(s.mails_to(&email_of("KW-4")).await, 1);
    let st = ledger.order_state(&OrderId::parse("KW-4").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.ses_message_id), (Status::Sent, Some(accepted.message_id)));
}
