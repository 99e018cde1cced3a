//! CPU cost per record: decode + render alone, and the whole pipeline with in-process backends
//! (SQLite ledger in a temporary directory, a mailer that accepts without I/O), for batch sizes
//! 1, 10 and 100. Results and the machine are recorded in BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use aws_lambda_events::sqs::SqsEvent;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use order_confirmation::error::BackendError;
use order_confirmation::ledger::LedgerOps;
use order_confirmation::ledger::sqlite::SqliteLedger;
use order_confirmation::mailer::Mailer;
use order_confirmation::order::Order;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use order_confirmation::render::{Mail, MailSettings, StatusUrlTemplate, render};
use order_confirmation::ses_event::MailTags;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::ScriptedLedger;

fn body(id: u64) -> String {
    serde_json::json!({
        "order_id": format!("BENCH-{id}"),
        "customer_email": format!("customer{id}@example.com"),
        "customer_name": "Jane Q. Customer",
        "priority": if id.is_multiple_of(5) { "high" } else { "normal" },
        "total": "42.50", "currency": "EUR", "locale": "de-DE",
        "items": [{"name": "Coffee mug", "quantity": 2, "price": "12.50"}, {"name": "Beans", "quantity": 1, "price": "17.50"}],
        "fulfillment": {"center": "DC-Rotterdam", "estimated_delivery": "2026-12-02"}
    })
    .to_string()
}

/// Accepts every mail without I/O, so the pipeline's own cost is what is measured.
struct NullMailer;

#[async_trait::async_trait]
impl Mailer for NullMailer {
    async fn send(&self, order: &Order, _mail: &Mail, _tags: &MailTags) -> Result<String, BackendError> {
        Ok(order.order_id.to_string())
    }
}

fn decode_render(c: &mut Criterion) {
    let text = body(1);
    let mut g = c.benchmark_group("per_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| order_confirmation::decode::decode(black_box(&text)).unwrap()));
    let order = order_confirmation::decode::decode(&text).unwrap().order;
    // The whole mail: German words, CLDR amounts and date, and the status link.
    let settings =
        MailSettings { status_url: Some(StatusUrlTemplate::parse("https://shop.example/orders/{order_id}").unwrap()) };
    g.bench_function("render", |b| b.iter(|| render(black_box(&order), &settings).unwrap()));
    g.bench_function("decode_and_render", |b| {
        b.iter(|| render(&order_confirmation::decode::decode(black_box(&text)).unwrap().order, &settings).unwrap())
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("bench.db")).unwrap());
    rt.block_on(ledger.migrate()).unwrap();
    let p = Pipeline::new(ledger, Arc::new(NullMailer), None, PipelineSettings::default());
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group("pipeline_sqlite");
    g.measurement_time(Duration::from_secs(8));
    for size in [1u64, 10, 100] {
        g.throughput(Throughput::Elements(size));
        g.bench_function(format!("batch_{size}"), |b| {
            b.iter_batched(
                || event_of(&next, size),
                |e| rt.block_on(p.handle(&e, tokio::time::Instant::now() + Duration::from_secs(60))),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Adds a fixed round-trip time to every send, like SES over the network.
struct SlowMailer(Duration);

#[async_trait::async_trait]
impl Mailer for SlowMailer {
    async fn send(&self, order: &Order, _mail: &Mail, _tags: &MailTags) -> Result<String, BackendError> {
        tokio::time::sleep(self.0).await;
        Ok(order.order_id.to_string())
    }
}

/// The latency floor: with 20 ms per round trip, a batch costs claim + one SES round
/// (sends run in parallel) + record = 60 ms when the concurrency covers the batch.
fn latency_floor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteLedger::open(dir.path().join("floor.db")).unwrap());
    rt.block_on(sqlite.migrate()).unwrap();
    let rtt = Duration::from_millis(20);
    let next = AtomicU64::new(1_000_000_000);
    let mut g = c.benchmark_group("latency_floor_20ms_rtt");
    g.sample_size(20);
    for (size, concurrency) in [(10u64, 16usize), (100, 16), (100, 100)] {
        let ledger = Arc::new(ScriptedLedger::new(sqlite.clone()).latency(rtt));
        let p = Pipeline::new(
            ledger.clone(),
            Arc::new(SlowMailer(rtt)),
            None,
            PipelineSettings { concurrency, ..PipelineSettings::default() },
        );
        g.throughput(Throughput::Elements(size));
        g.bench_function(format!("batch_{size}_concurrency_{concurrency}"), |b| {
            b.iter_batched(
                || event_of(&next, size),
                |e| rt.block_on(p.handle(&e, tokio::time::Instant::now() + Duration::from_secs(60))),
                BatchSize::SmallInput,
            )
        });
        // One claim per batch, so records per claim is the record waves per batch.
        let (claims, records) =
            (ledger.claim_calls.load(Ordering::Relaxed), ledger.record_calls.load(Ordering::Relaxed));
        println!(
            "batch_{size}_concurrency_{concurrency}: {:.2} ledger calls per batch (1 claim, {:.2} record waves)",
            (claims + records) as f64 / claims as f64,
            records as f64 / claims as f64
        );
    }
    g.finish();
}

fn event_of(next: &AtomicU64, size: u64) -> SqsEvent {
    support::event(
        (0..size)
            .map(|_| {
                let id = next.fetch_add(1, Ordering::Relaxed);
                support::record(&format!("m-{id}"), &body(id))
            })
            .collect(),
    )
}

criterion_group!(benches, decode_render, pipeline, latency_floor);
criterion_main!(benches);
