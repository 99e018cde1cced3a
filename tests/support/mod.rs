//! Shared test harness: event builders, local backends in temporary directories, the real local
//! services (`services`, `faults`, `moto`), and the few hand-written fakes that inject faults the
//! real backends cannot produce on demand.
#![allow(dead_code)]

pub mod faults;
pub mod moto;
pub mod services;
pub mod ses_events;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use order_confirmation::error::BackendError;
use order_confirmation::ledger::sqlite::SqliteLedger;
use order_confirmation::ledger::{Claim, ClaimRequest, Ledger, LedgerOps, Recording};
use order_confirmation::mailer::Mailer;
use order_confirmation::mailer::outbox::OutboxMailer;
use order_confirmation::order::Order;
use order_confirmation::pipeline::{Pipeline, PipelineSettings};
use order_confirmation::render::Mail;
use order_confirmation::ses_event::MailTags;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ARN: &str = "arn:aws:sqs:us-east-1:123456789012:order-confirmation-normal";

/// One SQS record as Lambda delivers it.
pub fn record(message_id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(message_id.to_owned()).filter(|s| !s.is_empty());
    m.receipt_handle = Some(format!("rh-{message_id}"));
    m.body = Some(body.to_owned());
    m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    m.event_source = Some("aws:sqs".into());
    m.event_source_arn = Some(ARN.into());
    m.aws_region = Some("us-east-1".into());
    m
}

/// One of the committed event files in `events/`.
pub fn event_file(name: &str) -> SqsEvent {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not an SQS event: {e}", path.display()))
}

pub fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

/// A valid order body.
pub fn order_body(order_id: &str, priority: &str) -> String {
    serde_json::json!({
        "order_id": order_id,
        "customer_email": format!("{}@example.com", order_id.to_lowercase()),
        "customer_name": format!("Customer {order_id}"),
        "priority": priority,
    })
    .to_string()
}

/// SQLite ledger and outbox in a fresh temporary directory.
pub struct LocalBackends {
    pub dir: tempfile::TempDir,
    pub ledger: Arc<SqliteLedger>,
    pub outbox: Arc<OutboxMailer>,
}

impl LocalBackends {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).expect("open ledger"));
        ledger.migrate().await.expect("migrate");
        let outbox = Arc::new(OutboxMailer::new(dir.path().join("outbox"), "orders@example.com").expect("outbox"));
        Self { dir, ledger, outbox }
    }

    /// Files in the outbox whose name mentions `order_id`.
    pub fn mails_for(&self, order_id: &str) -> usize {
        self.outbox_files().iter().filter(|n| n.contains(&format!("-{order_id}-"))).count()
    }

    pub fn outbox_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.outbox.dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn pipeline(&self, mailer: Arc<dyn Mailer>) -> Pipeline {
        Pipeline::new(self.ledger.clone(), mailer, None, PipelineSettings::default())
    }
}

pub fn deadline(secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(secs)
}

/// What the scripted mailer does for one order id.
#[derive(Debug, Clone)]
pub enum Fault {
    Panic,
    Fail(BackendError),
    /// Fail the first `n` attempts, then deliver.
    FailTimes(usize, BackendError),
    Delay(Duration),
}

/// Delivers through an inner mailer unless a fault is scripted for the order; counts attempts.
pub struct ScriptedMailer {
    inner: Arc<dyn Mailer>,
    faults: Mutex<HashMap<String, Fault>>,
    pub attempts: AtomicUsize,
    pub order_of_attempts: Mutex<Vec<String>>,
}

impl ScriptedMailer {
    pub fn new(inner: Arc<dyn Mailer>) -> Self {
        Self {
            inner,
            faults: Mutex::new(HashMap::new()),
            attempts: AtomicUsize::new(0),
            order_of_attempts: Mutex::new(Vec::new()),
        }
    }

    pub fn fault(self, order_id: &str, fault: Fault) -> Self {
        self.faults.lock().unwrap().insert(order_id.to_owned(), fault);
        self
    }

    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }
}

#[async_trait::async_trait]
impl Mailer for ScriptedMailer {
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.order_of_attempts.lock().unwrap().push(order.order_id.to_string());
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            match faults.get_mut(order.order_id.as_str()) {
                Some(Fault::FailTimes(n, e)) if *n > 0 => {
                    *n -= 1;
                    Some(Fault::Fail(e.clone()))
                }
                Some(Fault::FailTimes(..)) => None,
                other => other.cloned(),
            }
        };
        match fault {
            Some(Fault::Panic) => panic!("scripted panic for {}", order.order_id),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                self.inner.send(order, mail, tags).await
            }
            Some(Fault::FailTimes(..)) | None => self.inner.send(order, mail, tags).await,
        }
    }
}

/// How a [`ScriptedLedger`]'s record step misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum RecordFault {
    /// Every record call fails (the ledger stays unreachable).
    Always,
    /// The first `n` record calls fail without touching the ledger.
    FailFirst(usize),
    /// The first `n` record calls reach the ledger and commit, but the answer is lost.
    CommitThenFailFirst(usize),
    /// Every record call fails until this long after the ledger was built (an outage).
    FailFor(Duration),
}

/// A real ledger with scripted trouble: a round-trip time on every claim and record (the Data API
/// over the network), a record step that fails as scripted and, when scripted, answers a real
/// ledger never gives (not one per order or takeover asked about): a claim answer cut short, a
/// fixed answer to `sent_earlier`. Only the hot
/// path: operations go to the real ledger directly. Counts the claim, record and sent_earlier calls.
pub struct ScriptedLedger {
    pub inner: Arc<dyn Ledger>,
    fault: Option<RecordFault>,
    claim_answers: Option<usize>,
    sent_earlier_answer: Option<Vec<Option<String>>>,
    latency: Duration,
    started: std::time::Instant,
    pub claim_calls: AtomicUsize,
    pub record_calls: AtomicUsize,
    pub sent_earlier_calls: AtomicUsize,
}

impl ScriptedLedger {
    pub fn new(inner: Arc<dyn Ledger>) -> Self {
        Self {
            inner,
            fault: None,
            claim_answers: None,
            sent_earlier_answer: None,
            latency: Duration::ZERO,
            started: std::time::Instant::now(),
            claim_calls: AtomicUsize::new(0),
            record_calls: AtomicUsize::new(0),
            sent_earlier_calls: AtomicUsize::new(0),
        }
    }

    pub fn record_fault(self, fault: RecordFault) -> Self {
        Self { fault: Some(fault), ..self }
    }

    pub fn latency(self, latency: Duration) -> Self {
        Self { latency, ..self }
    }

    /// Every claim call claims all its orders but answers for only the first `n`.
    pub fn claim_answers(self, n: usize) -> Self {
        Self { claim_answers: Some(n), ..self }
    }

    /// Every `sent_earlier` call answers `answer`, whatever it asked about.
    pub fn sent_earlier_answer(self, answer: Vec<Option<String>>) -> Self {
        Self { sent_earlier_answer: Some(answer), ..self }
    }
}

#[async_trait::async_trait]
impl Ledger for ScriptedLedger {
    async fn claim(&self, orders: &[ClaimRequest], lease: Duration) -> Result<Vec<Claim>, BackendError> {
        self.claim_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let mut claims = self.inner.claim(orders, lease).await?;
        claims.truncate(self.claim_answers.unwrap_or(claims.len()));
        Ok(claims)
    }
    async fn record(
        &self,
        recordings: &[Recording],
    ) -> Result<Vec<order_confirmation::ledger::Recorded>, BackendError> {
        let call = self.record_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let lost = || Err(BackendError::transient("connection reset by peer"));
        match self.fault {
            Some(RecordFault::Always) => lost(),
            Some(RecordFault::FailFirst(n)) if call < n => lost(),
            Some(RecordFault::CommitThenFailFirst(n)) if call < n => {
                self.inner.record(recordings).await?;
                lost()
            }
            Some(RecordFault::FailFor(d)) if self.started.elapsed() < d => lost(),
            _ => self.inner.record(recordings).await,
        }
    }
    async fn sent_earlier(
        &self,
        claims: &[(order_confirmation::order::OrderId, uuid::Uuid)],
    ) -> Result<Vec<Option<String>>, BackendError> {
        self.sent_earlier_calls.fetch_add(1, Ordering::SeqCst);
        match &self.sent_earlier_answer {
            Some(answer) => Ok(answer.clone()),
            None => self.inner.sent_earlier(claims).await,
        }
    }
}

/// The order ids an SES events batch's records are tagged with, in record order.
pub fn tagged_orders(batch: &serde_json::Value) -> Vec<String> {
    let records = batch["Records"].as_array().map(Vec::as_slice).unwrap_or_default();
    records
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r["body"].as_str()?).ok())
        .filter_map(|body| body["detail"]["mail"]["tags"]["order_id"][0].as_str().map(str::to_owned))
        .collect()
}

/// An SES events batch as SES would send it for the mails a run recorded: each record's message id
/// becomes `recorded(order_id)` of the order its tag names (a sample's own id would be a second
/// mail, docs/design.md, "Duplicates counted from SES's events"). An order without one keeps the
/// sample's id (its event is counted unknown).
pub fn for_recorded_mails(
    mut batch: serde_json::Value,
    mut recorded: impl FnMut(&str) -> Option<String>,
) -> serde_json::Value {
    for record in batch["Records"].as_array_mut().into_iter().flatten() {
        let mut body: serde_json::Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        let Some(order_id) = body["detail"]["mail"]["tags"]["order_id"][0].as_str() else { continue };
        if let Some(id) = recorded(order_id) {
            body["detail"]["mail"]["messageId"] = id.into();
        }
        record["body"] = body.to_string().into();
    }
    batch
}
