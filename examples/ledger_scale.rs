//! The ledger scale benchmark (`make bench-ledger`, BENCHMARKS.md "Ledger at scale"): fills a
//! throw-away PostgreSQL with N rows of history through the project's schema (migrated by the
//! Data API ledger itself), then times `stats` (and its delivery table), `status`, `reconcile` and a batch of 10 orders
//! through rds-data-local, the way the operator function and the consumer call them.
//!
//! The history is a year of orders, the newest first: 99.9 % `sent` (payloads older than
//! `PAYLOAD_RETENTION_DAYS` already removed, as retention leaves them), 0.1 % `rejected` or
//! `abandoned` (half of those parked), and 5 `failed` orders updated just now (not yet stuck).
//! The history is then vacuumed and frozen, and the statistics' hourly summary brought up to date,
//! as in a live database with the scheduled reconcile running.
//!
//!   scripts/with-postgres cargo run --example ledger_scale -- 1000 2000000
//!
//! Prints one Markdown table row per size: the median of 15 runs of each command, in ms.

use aws_config::BehaviorVersion;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use order_confirmation::ledger::LedgerOps;
use order_confirmation::ledger::data_api::{DataApiLedger, DataApiTarget};
use order_confirmation::mailer::outbox::OutboxMailer;
use order_confirmation::order::OrderId;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use order_confirmation::reconcile::{ReconcileSettings, reconcile};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 15;

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("sizes are row counts")).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 2_000_000] } else { sizes };
    let base = std::env::var("DATABASE_URL").expect("run under scripts/with-postgres (DATABASE_URL)");
    println!(
        "| rows | fill (s) | stats (ms) | delivery stats (ms) | status (ms) | reconcile (ms) | batch of 10 (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        run(&base, n).await;
    }
}

async fn run(base: &str, n: u64) {
    let (admin, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    let name = format!("scale_{n}");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop db");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create db");
    let url = format!("{}/{name}", base.rsplit_once('/').expect("URL ends with /db").0);
    let server = rds_data_local::spawn(rds_data_local::Config::new(url.clone())).await.expect("rds-data-local");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(server.endpoint_url())
        .load()
        .await;
    let target = DataApiTarget {
        cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:orders".into(),
        secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf".into(),
        database: name.clone(),
    };
    let ledger = Arc::new(DataApiLedger::new(order_confirmation::aws::rds_data_client(&sdk), target));
    ledger.migrate().await.expect("migrate");

    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    let started = Instant::now();
    db.batch_execute(&fill_sql(n)).await.expect("fill");
    // A year of history is all-visible and frozen in a live database (autovacuum saw to it long
    // ago), so index-only scans never visit the table for it: VACUUM FREEZE gives that state.
    db.batch_execute("VACUUM (FREEZE, ANALYZE) order_confirmations").await.expect("vacuum");
    // The scheduled reconcile has kept the statistics' hourly summary up to date.
    while ledger.summarize_sends().await.expect("summarize") {}
    let fill = started.elapsed();

    let dir = tempfile::tempdir().expect("temp dir");
    let mailer = Arc::new(OutboxMailer::new(dir.path().join("outbox"), "orders@example.com").expect("outbox"));
    let pipeline = Pipeline::new(ledger.clone(), mailer, None, PipelineSettings::default());
    let settings = ReconcileSettings::default();
    let one = OrderId::parse(&format!("H-{}", n / 2)).expect("order id");

    let stats = median(|_| async { ledger.stats().await.expect("stats") }).await;
    // `stats` also prints the delivery table: the last 24 hours of sends by delivery state.
    let delivery = median(|_| async { ledger.delivery_stats().await.expect("delivery stats") }).await;
    let status = median(|_| async { assert!(ledger.order_state(&one).await.expect("status").is_some()) }).await;
    let rec = median(|_| async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        reconcile(&pipeline, ledger.as_ref(), &settings, deadline).await.expect("reconcile")
    })
    .await;
    let batch = median(|i| {
        let event = batch_event(n, i);
        let pipeline = &pipeline;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let report = pipeline.handle(&event, deadline).await;
            assert!(report.records.iter().all(|r| r.outcome.is_success()), "the batch is confirmed");
        }
    })
    .await;
    println!("| {n} | {:.1} | {stats:.1} | {delivery:.1} | {status:.1} | {rec:.1} | {batch:.1} |", fill.as_secs_f64());
    drop(server);
}

/// Median wall time of [`RUNS`] runs after two warm-up runs, in ms.
async fn median<F, Fut, T>(mut f: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 2 {
        let started = Instant::now();
        f(i).await;
        if i >= 2 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn batch_event(n: u64, run: usize) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = (0..10)
        .map(|k| {
            let id = format!("NEW-{n}-{run}-{k}");
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m-{id}"));
            m.receipt_handle = Some(format!("rh-{id}"));
            m.body = Some(
                serde_json::json!({
                    "order_id": id,
                    "customer_email": format!("{}@example.com", id.to_lowercase()),
                    "customer_name": format!("Customer {id}"),
                    "priority": if k == 0 { "high" } else { "normal" },
                })
                .to_string(),
            );
            m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
            m.event_source = Some("aws:sqs".into());
            m
        })
        .collect();
    event
}

/// A year of history, `n` rows, row `i` first seen `i` steps ago (newest first), through the
/// project's schema; then the statistics PostgreSQL's planner uses.
fn fill_sql(n: u64) -> String {
    format!(
        "INSERT INTO order_confirmations (order_id, payload_sha256, priority, payload, status, attempts, \
             ses_message_id, last_error, first_seen_at, updated_at, sent_at, parked_at, parked_note, payload_removed_at)
         SELECT 'H-' || i, md5(i::text), CASE WHEN i % 10 = 0 THEN 'high' ELSE 'normal' END,
             CASE WHEN t < now() - interval '30 days' AND st = 'sent' THEN '{{}}'::jsonb
                  ELSE jsonb_build_object('order_id', 'H-' || i, 'customer_email', 'h-' || i || '@example.com',
                       'customer_name', 'Customer H-' || i, 'priority', 'normal') END,
             st, 1, CASE WHEN st = 'sent' THEN 'ses-' || i END,
             CASE WHEN st <> 'sent' THEN 'history' END,
             t, t + interval '3 seconds', CASE WHEN st = 'sent' THEN t + interval '2 seconds' END,
             CASE WHEN st = 'abandoned' AND i % 4000 = 1000 THEN t END,
             CASE WHEN st = 'abandoned' AND i % 4000 = 1000 THEN 'bench' END,
             CASE WHEN t < now() - interval '30 days' AND st = 'sent' THEN t + interval '30 days' END
         FROM (SELECT i, now() - (interval '365 days') * i / {n} AS t,
                      CASE WHEN i % 2000 = 0 THEN 'rejected' WHEN i % 2000 = 1000 THEN 'abandoned' ELSE 'sent' END AS st
               FROM generate_series(1, {n}) AS i) AS h;
         INSERT INTO order_confirmations (order_id, payload_sha256, priority, payload, status, attempts, last_error,
             first_seen_at, updated_at)
         SELECT 'F-' || i, md5(i::text), 'normal',
             jsonb_build_object('order_id', 'F-' || i, 'customer_email', 'f-' || i || '@example.com',
                 'customer_name', 'Customer F-' || i, 'priority', 'normal'),
             'failed', 1, 'throttled', now() - interval '1 minute', now()
         FROM generate_series(1, 5) AS i"
    )
}
