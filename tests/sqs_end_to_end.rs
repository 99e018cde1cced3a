//! End to end on real SQS semantics: moto's SQS server with redrive policies, the `consume`
//! worker (the event source mapping's behaviour), the Data API emulator over PostgreSQL and the SES
//! emulator behind the fault injector.

use crate::support;

use order_confirmation::backoff::{BackoffSettings, VisibilityBackoff};
use order_confirmation::ledger::{CustomerStatus, LedgerOps, Status};
use order_confirmation::order::OrderId;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use std::collections::HashMap;
use std::time::Duration;
use support::faults::{Action, Rule};
use support::moto::Moto;
use support::services::Services;
use support::*;

fn email_of(order_id: &str) -> String {
    format!("{}@example.com", order_id.to_lowercase())
}

/// The binary, pointed at this test's services and queues (SQS through moto).
fn binary(s: &Services, moto: &Moto, queues: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("AWS_ENDPOINT_URL_SQS", &moto.url)
        .env("QUEUE_URLS", queues.join(","))
        .kill_on_drop(true);
    for (k, v) in s.env() {
        c.env(k, v);
    }
    c
}

/// Runs the `consume` worker as a child process until it has been idle for `idle` seconds.
async fn consume(
    s: &Services,
    moto: &Moto,
    queues: &[&str],
    extra_env: &[(&str, &str)],
    idle: u64,
) -> (serde_json::Value, String) {
    let mut c = binary(s, moto, queues);
    c.args(["consume", "--wait-seconds", "1", "--idle-exit", &idle.to_string()])
        .env("BACKOFF_BASE_SECONDS", "1")
        .env("BACKOFF_CAP_SECONDS", "4")
        .env("DEFERRED_DELAY_SECONDS", "1")
        .env("INVOCATION_TIMEOUT_SECONDS", "20")
        .env("LEASE_SLACK_SECONDS", "1");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(240), c.output()).await.expect("consume finished").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "consume failed: {stderr}");
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary JSON: {e}: {stderr}"));
    (summary, stderr)
}

async fn migrate(s: &Services) {
    s.ledger().await;
}

/// Starts a `consume` worker on `queues` (6 s batches, 1 s of lease slack) and SIGKILLs it as soon
/// as SES has accepted the mail to `address`, whose answer the fault injector holds back: the
/// worker dies between the SES call and the record step, with no chance to record anything.
async fn kill_a_worker_once_ses_accepts(s: &Services, moto: &Moto, queues: &[&str], address: &str) {
    s.ses_proxy.add(Rule::matching(address, Action::Hold(Duration::from_secs(120))).times(1));
    let mut c = binary(s, moto, queues);
    c.args(["consume", "--wait-seconds", "1"])
        .env("INVOCATION_TIMEOUT_SECONDS", "6")
        .env("LEASE_SLACK_SECONDS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut accepted = false;
    for _ in 0..200 {
        if s.mails_to(address).await == 1 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "SES accepted the mail to {address}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_on_two_queues_is_mailed_once_each_and_only_the_invalid_reach_the_dlqs() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let high = moto.queue_pair("orders-high", 5, 30).await;
    let normal = moto.queue_pair("orders-normal", 5, 30).await;

    let mut valid = Vec::new();
    for i in 0..5 {
        let id = format!("H-{i}");
        moto.send(&high.url, &order_body(&id, "high")).await;
        valid.push(id);
    }
    for i in 0..10 {
        let id = format!("N-{i}");
        moto.send(&normal.url, &order_body(&id, "normal")).await;
        valid.push(id);
    }
    // Duplicates: the same message body delivered again (producer retry).
    moto.send(&high.url, &order_body("H-0", "high")).await;
    moto.send(&normal.url, &order_body("N-3", "normal")).await;
    moto.send(&normal.url, &order_body("N-7", "normal")).await;
    let invalid_high = ["{\"order_id\": \"BAD-H1\"", "[1, 2, 3]"];
    let invalid_normal = [
        "",
        "{\"order_id\": \"BAD N2\", \"customer_email\": \"x@example.com\", \"customer_name\": \"X\"}",
        "__import__('os')",
    ];
    for b in invalid_high {
        moto.send(&high.url, b).await;
    }
    for b in invalid_normal {
        moto.send(&normal.url, b).await;
    }

    let (summary, stderr) = consume(&s, &moto, &[&high.url, &normal.url], &[], 4).await;

    for id in &valid {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id} mailed exactly once");
    }
    assert_eq!(s.sent_mails().await.len(), valid.len());
    // Valid (15) and duplicates (3) once each; each invalid message five times (maxReceiveCount).
    assert_eq!(summary["received"], 15 + 3 + 5 * 5, "{summary}");
    assert_eq!(summary["deleted"], 18, "{summary}");

    // `stats --json` agrees exactly with the ledger and the queues.
    let mut c = binary(&s, &moto, &[&high.url, &normal.url]);
    c.args(["stats", "--json"]);
    let out = c.output().await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{}", serde_json::to_string_pretty(&stats).unwrap());
    let p =
        |name: &str| stats["priorities"].as_array().unwrap().iter().find(|p| p["priority"] == name).unwrap().clone();
    assert_eq!(p("high")["by_status"]["sent"], 5);
    assert_eq!(p("normal")["by_status"]["sent"], 10);
    assert_eq!(p("high")["pending"], 0);
    assert_eq!(p("normal")["pending"], 0);
    assert_eq!(p("normal")["sent_last_hour"], 10);
    let queues = stats["queues"].as_array().unwrap();
    assert_eq!(queues[0]["visible"], 0);
    assert_eq!(queues[0]["in_flight"], 0);
    assert_eq!(queues[0]["dlq_visible"], 2, "the two invalid high-priority messages");
    assert_eq!(queues[1]["dlq_visible"], 3, "the three invalid normal messages");
    assert_eq!(queues[1]["dlq_url"], normal.dlq_url.as_str());

    let mut dlq_high = moto.drain_view(&high.dlq_url).await;
    let mut dlq_normal = moto.drain_view(&normal.dlq_url).await;
    dlq_high.sort();
    dlq_normal.sort();
    let mut expect_high: Vec<String> = invalid_high.iter().map(|s| s.to_string()).collect();
    let mut expect_normal: Vec<String> = invalid_normal.iter().map(|s| s.to_string()).collect();
    expect_high.sort();
    expect_normal.sort();
    assert_eq!(dlq_high.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(), expect_high);
    assert_eq!(dlq_normal.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(), expect_normal);
    // Received 5 times from the source queue; this look at the DLQ is the 6th receive.
    assert!(dlq_high.iter().chain(&dlq_normal).all(|(_, n)| *n == 6), "{dlq_high:?} {dlq_normal:?}");
    assert_eq!(moto.depth(&high.url).await, (0, 0), "nothing else remains");
    assert_eq!(moto.depth(&normal.url).await, (0, 0), "nothing else remains");

    // EMF lines from the worker parse as EMF documents.
    let emf: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with("{\"_aws\""))
        .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
        .collect();
    assert!(!emf.is_empty());
    let mut sent_by_priority: HashMap<String, u64> = HashMap::new();
    for doc in &emf {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some());
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "OrderConfirmation");
        for dims in directive["Dimensions"].as_array().unwrap() {
            for d in dims.as_array().unwrap() {
                assert!(doc[d.as_str().unwrap()].is_string(), "dimension {d} has a value");
            }
        }
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number() || doc[name].is_array(), "metric {name} has a value");
            assert!(["Count", "Seconds"].contains(&m["Unit"].as_str().unwrap()));
        }
        if let Some(n) = doc["Sent"].as_u64() {
            *sent_by_priority.entry(doc["priority"].as_str().unwrap().to_owned()).or_default() += n;
        }
    }
    assert_eq!(sent_by_priority.get("high"), Some(&5));
    assert_eq!(sent_by_priority.get("normal"), Some(&10));
    // Each message now in a DLQ was counted once, when it failed its last allowed receive, under
    // its source queue: the count the DLQ alarms read (FailedOnLastReceive, dimension queue).
    let mut last_receive: HashMap<String, u64> = HashMap::new();
    for doc in &emf {
        if let Some(n) = doc["FailedOnLastReceive"].as_u64() {
            *last_receive.entry(doc["queue"].as_str().unwrap_or("-").to_owned()).or_default() += n;
        }
    }
    let name = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(last_receive, HashMap::from([(name(&high.url), 2), (name(&normal.url), 3)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_hard_ses_quota_high_priority_is_mailed_first_and_deferred_normal_orders_spend_no_receives() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let high = moto.queue_pair("q-high", 5, 30).await;
    // Two receives and a message goes to the DLQ: deferral must not spend them.
    let normal = moto.queue_pair("q-normal", 2, 30).await;
    // SES allows 2 mails per second, half the workers' configured rate; anything above is
    // throttled. `consume` receives only what its rate grants within the batch's sending window,
    // so the deferrals come from SES's answers: the limiter learns the quota from the throttles
    // and what gets no slot before the window closes is deferred.
    s.ses_proxy.add(Rule::always(Action::Quota(2.0)));
    for i in 0..6 {
        moto.send(&high.url, &order_body(&format!("QH-{i}"), "high")).await;
    }
    for i in 0..20 {
        moto.send(&normal.url, &order_body(&format!("QN-{i}"), "normal")).await;
    }
    // 4 sends/s with 2 reserved for high; 3 s batches whose sending stops 1 s before the end.
    let env = [
        ("SES_MAX_SEND_RATE", "4"),
        ("HIGH_PRIORITY_RESERVE", "0.5"),
        ("INVOCATION_TIMEOUT_SECONDS", "3"),
        ("SAFETY_MARGIN_SECONDS", "1"),
    ];
    // A normal order's copy comes back after 1 s, doubled per deferral (up to a minute): on a
    // loaded machine an order deferred five or six times is still delayed on the queue when a
    // worker quits after 20 idle seconds. As on Lambda, where the mapping polls on, another worker
    // picks it up: up to four rounds, until every order is in the ledger as sent.
    let ledger = s.ledger().await;
    let mut stderr = String::new();
    for _round in 0..4 {
        stderr += &consume(&s, &moto, &[&high.url, &normal.url], &env, 20).await.1;
        let mut unsent = 0;
        for id in (0..6).map(|i| format!("QH-{i}")).chain((0..20).map(|i| format!("QN-{i}"))) {
            let st = ledger.order_state(&OrderId::parse(&id).unwrap()).await.unwrap();
            unsent += usize::from(st.is_none_or(|st| st.status != Status::Sent));
        }
        if unsent == 0 {
            break;
        }
    }

    for i in 0..6 {
        let id = format!("QH-{i}");
        assert_eq!(s.mails_to(&email_of(&id)).await, 1, "{id}");
    }
    for i in 0..20 {
        let id = format!("QN-{i}");
        assert_eq!(s.mails_to(&email_of(&id)).await, 1, "{id} mailed once, none lost");
        let st = ledger.order_state(&OrderId::parse(&id).unwrap()).await.unwrap().unwrap();
        assert_eq!((st.status, st.attempts), (Status::Sent, 1), "{id}: deferrals spend no ledger attempt");
    }
    assert!(emf_sum(&stderr, "Deferred") > 0.0, "some normal orders were deferred to a later delivery");
    assert_eq!(moto.depth(&high.url).await, (0, 0));
    assert_eq!(moto.depth(&normal.url).await, (0, 0));
    assert!(moto.drain_view(&normal.dlq_url).await.is_empty(), "deferral never sends an order to the DLQ");
}

/// At a small share of the quota a worker that received ten orders could send only a few before
/// its batch's budget stopped new sends, and deferred the rest: the deferred copies came back
/// later (the tail of a backlog) while other workers were idle. It now receives only what its rate
/// grants within a couple of seconds, so the orders wait in the queue, where any worker reaches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_at_a_small_share_receives_only_what_it_can_send_soon_and_defers_nothing() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let normal = moto.queue_pair("small-share", 5, 30).await;
    for i in 0..10 {
        moto.send(&normal.url, &order_body(&format!("SS-{i}"), "normal")).await;
    }
    // 1 mail/s; a 10 s batch stops starting sends after about 3.3 s, so a batch of ten could send
    // about four of them.
    let env = [("SES_MAX_SEND_RATE", "1"), ("INVOCATION_TIMEOUT_SECONDS", "10")];
    let (summary, stderr) = consume(&s, &moto, &[&normal.url], &env, 3).await;
    assert_eq!(summary["requeued"], 0, "no order deferred: {summary}");
    assert_eq!(emf_sum(&stderr, "Deferred"), 0.0);
    assert_eq!(summary["received"], 10, "each order received once: {summary}");
    assert!(summary["batches"].as_u64().unwrap_or(0) >= 4, "small batches: {summary}");
    for i in 0..10 {
        assert_eq!(s.mails_to(&email_of(&format!("SS-{i}"))).await, 1, "SS-{i}");
    }
    assert_eq!(moto.depth(&normal.url).await, (0, 0));
}

/// The sum of one EMF metric over every metric line a worker wrote.
fn emf_sum(stderr: &str, metric: &str) -> f64 {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v.get(metric).and_then(serde_json::Value::as_f64))
        .sum()
}

/// The test plays the event source mapping itself, so it can watch each failed message come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_come_back_after_growing_delays_and_permanent_ones_come_back_at_once() {
    let s = Services::start().await;
    let moto = Moto::start().await;
    let q = moto.queue_pair("backoff", 5, 30).await;
    let pipeline = Pipeline::new(s.ledger().await, s.mailer().await, None, PipelineSettings::default());
    let backoff = VisibilityBackoff::new(
        moto.client.clone(),
        BackoffSettings {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            deferred: Duration::from_secs(1),
            ..BackoffSettings::default()
        },
    );
    s.ses_proxy.add(Rule::matching("tr-1@example.com", Action::Throttle));
    moto.send(&q.url, &order_body("TR-1", "normal")).await;
    moto.send(&q.url, "not json").await;

    let mut last_failed: HashMap<String, std::time::Instant> = HashMap::new();
    let mut gaps: HashMap<String, Vec<Duration>> = HashMap::new();
    let mut immediate_returns = 0;
    for _ in 0..12 {
        let event = moto.receive_event(&q.url, if last_failed.contains_key("not json") { 0 } else { 10 }).await;
        if event.records.is_empty() {
            if last_failed.contains_key("not json") {
                // The permanent one is gone to the DLQ; wait for the transient one.
                last_failed.remove("not json");
            }
            continue;
        }
        let now = std::time::Instant::now();
        for r in &event.records {
            let key = if r.body.as_deref() == Some("not json") { "not json" } else { "TR-1" };
            if let Some(t) = last_failed.get(key) {
                gaps.entry(key.to_owned()).or_default().push(now - *t);
                if key == "not json" {
                    immediate_returns += 1;
                }
            }
        }
        let report = pipeline.handle(&event, deadline(30)).await;
        assert_eq!(report.response().batch_item_failures.len(), event.records.len());
        assert_eq!(backoff.apply(&event, &report, None).await, event.records.len(), "visibility changed for each");
        let done = std::time::Instant::now();
        for r in &event.records {
            let key = if r.body.as_deref() == Some("not json") { "not json" } else { "TR-1" };
            last_failed.insert(key.to_owned(), done);
        }
        if gaps.get("TR-1").is_some_and(|g| g.len() >= 3) {
            break;
        }
    }
    // The permanent failure was visible again at once each time (received without waiting) and
    // reached the DLQ after its five receives.
    assert_eq!(immediate_returns, 4, "receives 2-5 of the bad message needed no wait");
    assert_eq!(moto.drain_view(&q.dlq_url).await.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), vec!["not json"]);
    // The transient one came back after growing delays: [0.5,1), [1,2), [2,4) seconds.
    let g = &gaps["TR-1"];
    assert!(g[0] < g[1] && g[1] < g[2], "delays grow: {g:?}");
}

/// An order queue `<name>` and its `<name>-ses-events` queue, with `order_id` (normal priority)
/// taken by a worker on both that was killed once SES had accepted the mail, before the record
/// step; returns the queues and the accepted mail as the event publisher saw it.
async fn killed_after_ses_accepted(
    s: &Services,
    moto: &Moto,
    name: &str,
    order_id: &str,
) -> (support::moto::QueuePair, support::moto::QueuePair, support::faults::AcceptedSend) {
    let q = moto.queue_pair(name, 5, 30).await;
    let events = moto.queue_pair(&format!("{name}-ses-events"), 5, 30).await;
    let mut witness = s.ses_proxy.witness_sends();
    moto.send(&q.url, &order_body(order_id, "normal")).await;
    kill_a_worker_once_ses_accepts(s, moto, &[&q.url, &events.url], &email_of(order_id)).await;
    let accepted = tokio::time::timeout(Duration::from_secs(5), witness.recv())
        .await
        .expect("the proxy announced the accepted mail")
        .expect("the proxy announces accepted mails");
    (q, events, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_the_ses_call_and_the_record_step_loses_nothing() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let q = moto.queue_pair("kill", 5, 30).await;
    moto.send(&q.url, &order_body("K-1", "normal")).await;
    kill_a_worker_once_ses_accepts(&s, &moto, &[&q.url], "k-1@example.com").await;
    let ledger = s.ledger().await;
    let st = ledger.order_state(&OrderId::parse("K-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Sending, "the dead worker never recorded the send");

    // A fresh worker: the message comes back after its visibility timeout, the lease has expired,
    // and the order is completed. No SES event reaches this ledger (no events queue), so the mail
    // that went out before the kill cannot be known: after waiting what its time budget allows for
    // a Send event, the takeover mails again and counts it as a possible duplicate.
    s.ses_proxy.clear();
    moto.send(&q.url, &order_body("K-2", "normal")).await;
    let (summary, stderr) = consume(&s, &moto, &[&q.url], &[("INVOCATION_TIMEOUT_SECONDS", "6")], 12).await;
    let st = ledger.order_state(&OrderId::parse("K-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Sent);
    assert_eq!(s.mails_to("k-1@example.com").await, 2, "at least once: the duplicate of a lost acknowledgement");
    assert_eq!(s.mails_to("k-2@example.com").await, 1);
    assert!(summary["deleted"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(emf_sum(&stderr, "PossibleDuplicate"), 1.0, "the duplicate is counted");
    // The dead worker's receive asked for its batch's time plus the lease slack: the message came
    // back once the lease it left had ended and was taken over on that receive, spending none on
    // finding the lease still live.
    assert_eq!(emf_sum(&stderr, "InFlight"), 0.0, "{stderr}");
    let k1 = stderr.lines().find(|l| l.contains("record done") && l.contains("K-1")).expect("K-1's record line");
    assert!(k1.contains("receive_count=2"), "the kill cost one receive, not two: {k1}");
    assert_eq!(moto.depth(&q.url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_the_ses_call_and_the_record_step_is_not_mailed_again_once_ses_reports_the_send() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let (q, events, accepted) = killed_after_ses_accepted(&s, &moto, "witness", "KS-1").await;
    let ledger = s.ledger().await;
    let st = ledger.order_state(&OrderId::parse("KS-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Sending, "the dead worker never recorded the send");

    // SES publishes its Send event for the mail, tagged with the order and the dead worker's
    // claim; EventBridge puts it on the events queue.
    moto.send(&events.url, &support::ses_events::send_event_body(&accepted)).await;
    s.ses_proxy.clear();
    // A fresh worker reads the event, then takes the order over when its message comes back: the
    // Send event shows SES accepted the dead worker's mail, so that mail is recorded, none sent.
    let (summary, stderr) =
        consume(&s, &moto, &[&q.url, &events.url], &[("INVOCATION_TIMEOUT_SECONDS", "6")], 12).await;
    let st = ledger.order_state(&OrderId::parse("KS-1").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.ses_message_id.as_deref()), (Status::Sent, Some(accepted.message_id.as_str())));
    assert_eq!(s.mails_to("ks-1@example.com").await, 1, "one mail: the one SES accepted before the kill");
    assert_eq!(emf_sum(&stderr, "SentEarlier"), 1.0, "the prevented duplicate is counted: {summary}");
    assert_eq!(emf_sum(&stderr, "PossibleDuplicate"), 0.0);
    assert_eq!(moto.depth(&q.url).await, (0, 0));
    assert_eq!(moto.depth(&events.url).await, (0, 0));
}

/// A lone worker polls SES's events while it holds an order batch, as Lambda's events mapping does
/// beside the order mappings: a takeover waiting for the previous holder's Send event sees it
/// arrive during the wait and mails nothing. Before, the worker read the events queue only between
/// batches, so the event it was waiting for sat in the queue until the wait ran out and the order
/// was mailed a second time. The event arrives after the idle limit: the batch in hand keeps the
/// events poller from calling the worker idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_worker_applies_the_send_event_its_takeover_is_waiting_for_and_mails_once() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let (q, events, accepted) = killed_after_ses_accepted(&s, &moto, "lone", "LW-1").await;
    s.ses_proxy.clear();

    // The only worker left takes the order over once its message comes back, and waits for the
    // dead worker's Send event; SES publishes it only once that wait has begun.
    let mut back = false;
    for _ in 0..400 {
        if moto.depth(&q.url).await == (1, 0) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the dead worker's message came back");
    let mut c = binary(&s, &moto, &[&q.url, &events.url]);
    c.args(["consume", "--wait-seconds", "1", "--idle-exit", "3"])
        .env("INVOCATION_TIMEOUT_SECONDS", "30")
        .env("LEASE_SLACK_SECONDS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let mut taken = false;
    for _ in 0..400 {
        if moto.depth(&q.url).await == (0, 1) {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "the worker received the order's message");
    tokio::time::sleep(Duration::from_secs(4)).await;
    moto.send(&events.url, &support::ses_events::send_event_body(&accepted)).await;

    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("exits").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "consume failed: {stderr}");
    let st = s.ledger().await.order_state(&OrderId::parse("LW-1").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.ses_message_id.as_deref()), (Status::Sent, Some(accepted.message_id.as_str())));
    assert_eq!(s.mails_to("lw-1@example.com").await, 1, "one mail: the one SES accepted before the kill");
    assert_eq!(emf_sum(&stderr, "SentEarlier"), 1.0, "{stderr}");
    assert_eq!(moto.depth(&q.url).await, (0, 0));
    assert_eq!(moto.depth(&events.url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_worker_finish_the_batch_in_hand_then_exit() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let q = moto.queue_pair("graceful", 5, 30).await;
    moto.send(&q.url, &order_body("G-1", "normal")).await;
    // A slow SES answer keeps the batch in hand while the signal arrives.
    s.ses_proxy.add(Rule::always(Action::Hold(Duration::from_secs(2))));
    let mut c = binary(&s, &moto, &[&q.url]);
    c.args(["consume", "--wait-seconds", "1"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let child = c.spawn().unwrap();
    let pid = child.id().unwrap();
    for _ in 0..200 {
        if s.mails_to("g-1@example.com").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(s.mails_to("g-1@example.com").await, 1, "SES accepted the mail; its answer is held");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("exits").unwrap();
    assert!(out.status.success(), "clean exit after SIGTERM");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["batches"].as_u64(), summary["deleted"].as_u64()), (Some(1), Some(1)), "{summary}");
    let st = s.ledger().await.order_state(&OrderId::parse("G-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.status, Status::Sent, "the batch in hand was recorded before exiting");
    assert_eq!(moto.depth(&q.url).await, (0, 0), "and acknowledged");
}

/// The SES event SES would publish for one mail the emulator accepted, as the events rule puts it
/// into the events queue: an EventBridge event whose `detail` carries the mail's id and tags.
fn ses_event(detail_type: &str, event_type: &str, mail: &serde_json::Value, object: serde_json::Value) -> String {
    let key = match event_type {
        "Send" => "send",
        "Delivery" => "delivery",
        "Bounce" => "bounce",
        "Complaint" => "complaint",
        other => panic!("no sample for {other}"),
    };
    let mut detail = serde_json::json!({"eventType": event_type, "mail": mail});
    detail[key] = object;
    serde_json::json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": detail_type,
        "source": "aws.ses", "account": "123456789012", "time": "2026-11-27T10:00:02Z", "region": "us-east-1",
        "resources": [], "detail": detail})
    .to_string()
}

/// The issue's end-to-end run: orders are mailed through SES, SES's events about those mails come
/// back on the events queue (some bounce, one draws a complaint, a bounce is redelivered and a
/// Delivery arrives after it), the same worker applies them, and `stats` and `status` report them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_mails_bounce_and_stats_reports_them_once_their_ses_events_come_back() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let high = moto.queue_pair("orders-high", 5, 30).await;
    let normal = moto.queue_pair("orders-normal", 5, 30).await;
    let events = moto.queue_pair("orders-ses-events", 5, 30).await;
    for i in 0..2 {
        moto.send(&high.url, &order_body(&format!("H-{i}"), "high")).await;
    }
    for i in 0..8 {
        moto.send(&normal.url, &order_body(&format!("N-{i}"), "normal")).await;
    }
    consume(&s, &moto, &[&high.url, &normal.url], &[], 3).await;
    assert_eq!(s.sent_mails().await.len(), 10);

    // Each accepted mail as SES's events describe it: its SES message id, and the tags the
    // service put on the SendEmail request.
    let requests: Vec<serde_json::Value> =
        s.ses_proxy.requests().iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    let mut mail_of: HashMap<String, serde_json::Value> = HashMap::new();
    for m in s.sent_mails().await {
        let to = m["destination"]["to"][0].as_str().unwrap().to_owned();
        let request = requests.iter().find(|r| r["Destination"]["ToAddresses"][0] == to.as_str()).unwrap();
        let mut tags = serde_json::Map::new();
        tags.insert("ses:configuration-set".into(), serde_json::json!(["order-confirmations"]));
        for t in request["EmailTags"].as_array().unwrap() {
            tags.insert(t["Name"].as_str().unwrap().to_owned(), serde_json::json!([t["Value"]]));
        }
        let order = tags["order_id"][0].as_str().unwrap().to_owned();
        mail_of.insert(
            order,
            serde_json::json!({"timestamp": "2026-11-27T10:00:00.000Z", "source": "orders@example.com",
                "messageId": m["messageId"], "destination": [to], "tags": tags}),
        );
    }
    assert_eq!(mail_of.len(), 10, "every mail carries its order_id tag");
    let bounce = |order: &str| {
        ses_event(
            "Email Bounced",
            "Bounce",
            &mail_of[order],
            serde_json::json!({"bounceType": "Permanent",
            "bounceSubType": "General", "timestamp": "2026-11-27T10:00:01.000Z",
            "bouncedRecipients": [{"emailAddress": email_of(order), "action": "failed", "status": "5.1.1"}]}),
        )
    };
    let delivered = |order: &str| {
        ses_event(
            "Email Delivered",
            "Delivery",
            &mail_of[order],
            serde_json::json!({"timestamp": "2026-11-27T10:00:02.000Z",
            "processingTimeMillis": 2000, "recipients": [email_of(order)], "smtpResponse": "250 ok"}),
        )
    };
    for order in mail_of.keys() {
        moto.send(&events.url, &ses_event("Email Sent", "Send", &mail_of[order], serde_json::json!({}))).await;
    }
    for order in ["N-0", "N-2", "N-3", "N-5", "N-6", "N-7"] {
        moto.send(&events.url, &delivered(order)).await;
    }
    for order in ["N-1", "N-4", "H-0", "N-1"] {
        moto.send(&events.url, &bounce(order)).await; // N-1's bounce twice: a redelivery
    }
    moto.send(&events.url, &delivered("N-1")).await; // late: must not hide the bounce
    moto.send(
        &events.url,
        &ses_event(
            "Email Complaint Received",
            "Complaint",
            &mail_of["N-2"],
            serde_json::json!({"complaintFeedbackType": "abuse", "timestamp": "2026-11-27T10:30:00.000Z",
                "complainedRecipients": [{"emailAddress": email_of("N-2")}]}),
        ),
    )
    .await;
    // Something that is not an SES event: refused at once on each receive, so it reaches the
    // events DLQ after its 5 receives within seconds, not after 5 visibility timeouts.
    let invalid = r#"{"source": "aws.ses", "detail-type": "Email Bounced", "detail": {"eventType": "Bounce"}}"#;
    moto.send(&events.url, invalid).await;
    let (summary, stderr) = consume(&s, &moto, &[&events.url], &[], 3).await;
    assert_eq!(summary["received"], 10 + 6 + 4 + 1 + 1 + 5, "{summary}");
    assert_eq!(summary["deleted"], 10 + 6 + 4 + 1 + 1, "every SES event acknowledged: {summary}");
    assert_eq!(moto.drain_view(&events.dlq_url).await, vec![(invalid.to_owned(), 6)], "only the invalid body");
    assert!(stderr.contains("detail.mail is missing or not an object"), "the rule it broke is logged");
    assert_eq!(s.sent_mails().await.len(), 10, "events never mail");
    assert!(!stderr.contains("@example.com"), "no address in the worker's logs");

    let mut c = binary(&s, &moto, &[&high.url, &normal.url]);
    c.args(["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&c.output().await.unwrap().stdout).unwrap();
    let d = |p: &str| stats["delivery"].as_array().unwrap().iter().find(|x| x["priority"] == p).unwrap().clone();
    let n = |p: &str, state: &str| d(p)["by_state"][state].as_u64().unwrap();
    assert_eq!(
        (n("normal", "delivered"), n("normal", "bounced"), n("normal", "complained"), n("normal", "unknown")),
        (5, 2, 1, 0),
        "{stats}"
    );
    assert_eq!(d("normal")["bounce_rate"].as_f64(), Some(0.25));
    assert_eq!((n("high", "bounced"), n("high", "unknown"), d("high")["bounce_rate"].as_f64()), (1, 1, Some(0.5)));

    let ledger = s.ledger().await;
    for (order, customer) in [
        ("N-1", CustomerStatus::NeedsAttention),
        ("N-2", CustomerStatus::NeedsAttention),
        ("N-0", CustomerStatus::Confirmed),
        ("H-1", CustomerStatus::Confirmed),
    ] {
        let st = ledger.order_state(&OrderId::parse(order).unwrap()).await.unwrap().unwrap();
        assert_eq!(st.customer_status, customer, "{order}: {st:?}");
        let send = st.delivery.send_event.unwrap_or_else(|| panic!("{order}: its Send event"));
        assert_eq!(Some(send.message_id.as_str()), st.ses_message_id.as_deref(), "{order}: the Send event is its mail");
    }
    let bounced_emf: u64 = stderr
        .lines()
        .filter(|l| l.starts_with("{\"_aws\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|doc| doc["Bounced"].as_u64())
        .sum();
    assert!(bounced_emf >= 3, "the Bounced metric counts the bounce events: {bounced_emf}");
}

/// A deferred order's copy waits out its delay on the queue, neither visible nor in flight: at a
/// peak that is where the backlog is, so `stats` counts it apart, as `deferred`.
#[tokio::test]
async fn stats_counts_the_deferred_copies_waiting_out_their_delay() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let normal = moto.queue_pair("d-normal", 5, 30).await;
    for i in 0..3 {
        let body = order_body(&format!("D-{i}"), "normal");
        moto.client.send_message().queue_url(&normal.url).message_body(body).delay_seconds(600).send().await.unwrap();
    }
    moto.send(&normal.url, &order_body("D-9", "normal")).await;

    let mut c = binary(&s, &moto, &[&normal.url]);
    let out = c.args(["stats", "--json"]).output().await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let q = &stats["queues"][0];
    assert_eq!((&q["visible"], &q["in_flight"], &q["deferred"]), (&1.into(), &0.into(), &3.into()), "{stats}");

    let mut c = binary(&s, &moto, &[&normal.url]);
    let table = String::from_utf8(c.arg("stats").output().await.unwrap().stdout).unwrap();
    let header = table.lines().find(|l| l.starts_with("queue")).expect("a queue table");
    let row: Vec<&str> =
        table.lines().find(|l| l.starts_with("d-normal")).expect("the queue's row").split_whitespace().collect();
    let column = header.split_whitespace().position(|h| h == "deferred").expect("a deferred column");
    assert_eq!(row[column], "3", "{table}");
}

/// `--idle-exit` counts idle time only once the worker's own deferred copies are back: a copy
/// delayed longer than the idle limit is still this worker's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_exit_waits_for_the_workers_own_deferred_copies_to_come_back() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let normal = moto.queue_pair("ie-normal", 5, 30).await;
    // SES throttles the order's first send, every SDK attempt of it: the order is deferred and its
    // copy delayed 3 to 6 s (DEFERRED_DELAY_SECONDS 6, with jitter), longer than the idle limit.
    s.ses_proxy.add(Rule::matching(&email_of("IE-1"), Action::Throttle).times(3));
    moto.send(&normal.url, &order_body("IE-1", "normal")).await;
    let (summary, stderr) = consume(&s, &moto, &[&normal.url], &[("DEFERRED_DELAY_SECONDS", "6")], 1).await;
    assert_eq!(summary["requeued"], 1, "the order was deferred once: {summary}\n{stderr}");
    assert_eq!(s.mails_to(&email_of("IE-1")).await, 1, "the worker stayed for its copy and mailed it: {stderr}");
    assert_eq!(moto.depth(&normal.url).await, (0, 0));
}

/// `consume --batch-size` receives as Lambda's event source mapping delivers: a whole batch gathered
/// within the window, whatever the rate (at 50 mails/s the rate-sized receive would take ten at a
/// time), and the rest as the next batch. The soak's Lambda topology is built on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_mapping_batch_size_gathers_whole_batches_within_its_window() {
    let s = Services::start().await;
    migrate(&s).await;
    let moto = Moto::start().await;
    let normal = moto.queue_pair("orders-normal", 5, 30).await;
    let ids: Vec<String> = (0..30).map(|i| format!("MAP-{i}")).collect();
    for id in &ids {
        moto.send(&normal.url, &order_body(id, "normal")).await;
    }

    let mut c = binary(&s, &moto, &[&normal.url]);
    c.args([
        "consume",
        "--wait-seconds",
        "1",
        "--idle-exit",
        "3",
        "--batch-size",
        "25",
        "--batching-window-seconds",
        "1",
    ])
    .env("SES_MAX_SEND_RATE", "50")
    .env("INVOCATION_TIMEOUT_SECONDS", "20")
    .env("LEASE_SLACK_SECONDS", "1");
    let out = tokio::time::timeout(Duration::from_secs(120), c.output()).await.expect("consume finished").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "consume failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");

    assert_eq!(summary["batches"], 2, "a batch of 25 and one of the 5 left: {summary}");
    assert_eq!(summary["received"], 30, "{summary}");
    assert_eq!(summary["deleted"], 30, "{summary}");
    assert!(stderr.contains("summary=25 records: 25 sent"), "the first batch held 25 orders: {stderr}");
    for id in &ids {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id} mailed exactly once");
    }
}

/// A batch hands back what its rate cannot send soon to the queue at once, not when the batch
/// ends: while it is still sending what it kept (here one slow send), the copies are already there
/// for another instance, and the original messages are acknowledged when the batch ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_hands_back_what_its_rate_cannot_send_soon_before_it_sends_what_it_kept() {
    use order_confirmation::batch::RecordOutcome;
    use order_confirmation::rate::SendRateLimiter;
    use order_confirmation::service::{BatchAnswer, BatchKind, run_batch};
    use std::sync::Arc;
    let s = Services::start().await;
    let moto = Moto::start().await;
    let q = moto.queue_pair("early-hand-back", 5, 60).await;
    for i in 1..=4 {
        moto.send(&q.url, &order_body(&format!("EH-{i}"), "normal")).await;
    }
    // One slot in hand and next to no refill: the batch keeps one order and hands three back.
    let gate = Arc::new(SendRateLimiter::starting_at(0.001, 0.001, 0.0, 1.0));
    let ledger = s.ledger().await;
    let pipeline = Arc::new(Pipeline::new(ledger.clone(), s.mailer().await, Some(gate), PipelineSettings::default()));
    // Every send takes 6 s at SES, so the batch is still running when the copies are looked for.
    s.ses_proxy.add(Rule::matching("@example.com", Action::Delay(Duration::from_secs(6))));
    let event = moto.receive_event(&q.url, 1).await;
    assert_eq!(event.records.len(), 4);
    let backoff = VisibilityBackoff::new(moto.client.clone(), BackoffSettings::default());
    let batch = tokio::spawn({
        let (pipeline, ledger, url) = (pipeline.clone(), ledger.clone(), q.url.clone());
        async move {
            let ops: &dyn LedgerOps = ledger.as_ref();
            run_batch(&pipeline, ops, BatchKind::Orders, &event, deadline(60), Some(&backoff), Some(&url)).await
        }
    });
    let mut copies = Vec::new();
    while copies.len() < 3 && !batch.is_finished() {
        copies.extend(moto.receive_event(&q.url, 1).await.records.into_iter().filter_map(|r| r.body));
    }
    assert!(!batch.is_finished(), "the copies came only when the batch ended");
    assert_eq!(copies.len(), 3, "{copies:?}");
    let answer = batch.await.unwrap();
    assert_eq!(answer.requeued(), 3, "each handed-back record is acknowledged");
    let order_id = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap()["order_id"].clone();
    let BatchAnswer::Orders(report) = answer else { panic!("an orders batch") };
    let sent: Vec<_> = report.records.iter().filter(|r| matches!(r.outcome, RecordOutcome::Sent { .. })).collect();
    assert_eq!(sent.len(), 1, "{report:?}");
    let kept = sent[0].order_id.clone().unwrap();
    assert!(copies.iter().all(|c| order_id(c) != kept.as_str()), "the kept order is not handed back too");
    // The four originals are still in flight (the mapping deletes them) and the three copies are
    // with this test: none was put back a second time when the batch ended.
    assert_eq!(moto.depth(&q.url).await, (0, 7));
}
