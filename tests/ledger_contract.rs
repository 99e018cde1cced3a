//! The ledger contract (docs/design.md, "The ledger"), one suite run against every implementation.

use crate::support;

use order_confirmation::ledger::{
    Claim, ClaimRequest, CustomerStatus, DeliveryBucket, EventMatch, Ledger, LedgerOps, Outcome, Recorded, Recording,
    Status,
};
use order_confirmation::order::{OrderId, Priority};
use order_confirmation::ses_event::{DeliveryEvent, DeliveryState, Effect, EventType, SesMessageId};
use std::sync::Arc;
use std::time::Duration;

pub fn req(id: &str, sha: &str, priority: Priority) -> ClaimRequest {
    ClaimRequest {
        order_id: OrderId::parse(id).unwrap(),
        payload_sha256: sha.to_owned(),
        priority,
        payload: format!("{{\"order_id\":\"{id}\"}}"),
    }
}

fn token(c: &Claim) -> uuid::Uuid {
    match c {
        Claim::Claimed { token, .. } => *token,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn rec(id: &str, token: uuid::Uuid, outcome: Outcome) -> Recording {
    Recording { order_id: OrderId::parse(id).unwrap(), token, outcome, takeover: false }
}

const LEASE: Duration = Duration::from_secs(60);

/// Whether each recording was applied, for the cases about fencing rather than extra mails.
trait Applied {
    fn applied(&self) -> Vec<bool>;
}

impl Applied for Vec<Recorded> {
    fn applied(&self) -> Vec<bool> {
        self.iter().map(|r| r.applied).collect()
    }
}

pub async fn new_order_is_claimed_then_sent_then_acknowledged(l: Arc<dyn LedgerOps>) {
    let c = l.claim(&[req("A1", "h1", Priority::High)], LEASE).await.unwrap();
    let t = token(&c[0]);
    let state = l.order_state(&OrderId::parse("A1").unwrap()).await.unwrap().unwrap();
    assert_eq!((state.status, state.attempts), (Status::Sending, 1));
    assert!(state.lease_until.is_some());
    let applied = l.record(&[rec("A1", t, Outcome::Sent { message_id: "m-1".into() })]).await.unwrap();
    assert_eq!(applied.applied(), vec![true]);
    let state = l.order_state(&OrderId::parse("A1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Sent);
    assert_eq!(state.ses_message_id.as_deref(), Some("m-1"));
    assert!(state.sent_at.is_some() && state.lease_until.is_none());
    let again = l.claim(&[req("A1", "h1", Priority::High)], LEASE).await.unwrap();
    assert_eq!(again, vec![Claim::AlreadySent]);
}

pub async fn live_lease_is_in_flight_and_expired_lease_is_taken_over(l: Arc<dyn LedgerOps>) {
    let first = l.claim(&[req("B1", "h", Priority::Normal)], LEASE).await.unwrap();
    token(&first[0]);
    match l.claim(&[req("B1", "h", Priority::Normal)], LEASE).await.unwrap()[..] {
        [Claim::InFlight { lease_remaining }] => assert!(
            lease_remaining > LEASE - Duration::from_secs(5) && lease_remaining <= LEASE,
            "the claim says when the holder's lease ends: {lease_remaining:?}"
        ),
        ref other => panic!("expected InFlight, got {other:?}"),
    }

    let short = l.claim(&[req("B2", "h", Priority::Normal)], Duration::ZERO).await.unwrap();
    let stale = token(&short[0]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer = token(&l.claim(&[req("B2", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    assert_ne!(stale, newer);
    let state = l.order_state(&OrderId::parse("B2").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.attempts, 2);
}

pub async fn stale_claim_token_cannot_overwrite_a_newer_claim(l: Arc<dyn LedgerOps>) {
    let stale = token(&l.claim(&[req("C1", "h", Priority::Normal)], Duration::ZERO).await.unwrap()[0]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer = token(&l.claim(&[req("C1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let applied = l.record(&[rec("C1", stale, Outcome::Failed { error: "late".into() })]).await.unwrap();
    assert_eq!(applied.applied(), vec![false], "the stale invocation's write is fenced off");
    let state = l.order_state(&OrderId::parse("C1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Sending, "the newer claim still holds the row");
    assert_eq!(
        l.record(&[rec("C1", newer, Outcome::Sent { message_id: "m".into() })]).await.unwrap().applied(),
        vec![true]
    );
    let applied = l.record(&[rec("C1", stale, Outcome::Sent { message_id: "stale".into() })]).await.unwrap();
    assert_eq!(applied.applied(), vec![false]);
    let state = l.order_state(&OrderId::parse("C1").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.ses_message_id.as_deref(), Some("m"));
}

pub async fn different_payload_for_a_known_order_is_a_conflict(l: Arc<dyn LedgerOps>) {
    token(&l.claim(&[req("D1", "h1", Priority::Normal)], LEASE).await.unwrap()[0]);
    assert_eq!(l.claim(&[req("D1", "h2", Priority::Normal)], LEASE).await.unwrap(), vec![Claim::Conflict]);
}

pub async fn failed_and_released_orders_are_claimable_again_at_once(l: Arc<dyn LedgerOps>) {
    let c = l.claim(&[req("E1", "h", Priority::Normal), req("E2", "h", Priority::High)], LEASE).await.unwrap();
    let (t1, t2) = (token(&c[0]), token(&c[1]));
    let applied = l
        .record(&[
            rec("E1", t1, Outcome::Failed { error: "throttled".into() }),
            rec("E2", t2, Outcome::Deferred { reason: "deferred".into() }),
        ])
        .await
        .unwrap();
    assert_eq!(applied.applied(), vec![true, true]);
    let state = l.order_state(&OrderId::parse("E1").unwrap()).await.unwrap().unwrap();
    assert_eq!((state.status, state.last_error.as_deref()), (Status::Failed, Some("throttled")));
    let again = l.claim(&[req("E1", "h", Priority::Normal), req("E2", "h", Priority::High)], LEASE).await.unwrap();
    token(&again[0]);
    token(&again[1]);
}

pub async fn rejected_orders_stay_terminal_with_their_reason(l: Arc<dyn LedgerOps>) {
    let t = token(&l.claim(&[req("F1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    l.record(&[rec("F1", t, Outcome::Rejected { reason: "MessageRejected: bad address".into() })]).await.unwrap();
    let again = l.claim(&[req("F1", "h", Priority::Normal)], LEASE).await.unwrap();
    assert_eq!(
        again,
        vec![Claim::Terminal { status: Status::Rejected, reason: "MessageRejected: bad address".into() }]
    );
}

pub async fn batch_results_come_back_in_input_order(l: Arc<dyn LedgerOps>) {
    token(&l.claim(&[req("G2", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let ids: Vec<String> = (0..50).map(|i| format!("G{i:03}")).collect();
    let mut reqs: Vec<ClaimRequest> = ids.iter().map(|id| req(id, "h", Priority::Normal)).collect();
    reqs.insert(7, req("G2", "h", Priority::Normal));
    let claims = l.claim(&reqs, LEASE).await.unwrap();
    assert_eq!(claims.len(), 51);
    assert!(matches!(claims[7], Claim::InFlight { .. }), "{:?}", claims[7]);
    let recs: Vec<Recording> = reqs
        .iter()
        .zip(&claims)
        .filter_map(|(r, c)| match c {
            Claim::Claimed { token, .. } => Some(Recording {
                order_id: r.order_id.clone(),
                token: *token,
                outcome: Outcome::Sent { message_id: format!("m-{}", r.order_id) },
                takeover: false,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(l.record(&recs).await.unwrap().applied(), vec![true; 50]);
    let s = l.order_state(&OrderId::parse("G042").unwrap()).await.unwrap().unwrap();
    assert_eq!(s.ses_message_id.as_deref(), Some("m-G042"));
}

pub async fn stats_count_by_priority_and_status(l: Arc<dyn LedgerOps>) {
    let c = l
        .claim(
            &[req("H1", "h", Priority::High), req("H2", "h", Priority::High), req("N1", "h", Priority::Normal)],
            LEASE,
        )
        .await
        .unwrap();
    l.record(&[rec("H1", token(&c[0]), Outcome::Sent { message_id: "m".into() })]).await.unwrap();
    let s = l.stats().await.unwrap();
    let high = s.priorities.iter().find(|p| p.priority == Priority::High).unwrap();
    let normal = s.priorities.iter().find(|p| p.priority == Priority::Normal).unwrap();
    assert_eq!(
        (high.by_status[&Status::Sent], high.by_status[&Status::Sending], high.pending, high.sent_last_hour),
        (1, 1, 1, 1)
    );
    assert_eq!((normal.by_status[&Status::Sending], normal.pending, normal.sent_last_hour), (1, 1, 0));
    assert!(high.oldest_unsent_age_seconds.is_some());
    assert!(high.time_to_send_seconds.p50.is_some());
    assert!(normal.time_to_send_seconds.p50.is_none());
    assert_eq!(high.by_status.len(), Status::ALL.len());
}

/// Direct access to a ledger's database, to move sends into the past.
pub enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    /// Makes `id` sent `ago` before now, first seen `ttc` before that.
    async fn sent_ago(&self, id: &str, ago: Duration, ttc: Duration) {
        let (ago_ms, seen_ms) = (ago.as_millis() as i64, (ago + ttc).as_millis() as i64);
        self.execute(&match self {
            Db::Sqlite(_) => {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
                format!(
                    "UPDATE order_confirmations SET sent_at = {}, first_seen_at = {} WHERE order_id = '{id}'",
                    now - ago_ms,
                    now - seen_ms
                )
            }
            Db::Postgres(_) => format!(
                "UPDATE order_confirmations SET sent_at = now() - interval '{ago_ms} milliseconds', \
                 first_seen_at = now() - interval '{seen_ms} milliseconds' WHERE order_id = '{id}'"
            ),
        })
        .await;
    }

    async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap(),
            Db::Postgres(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute(sql).await.unwrap();
            }
        }
    }
}

impl Db {
    /// `order_confirmation_status.customer_status` of one order: what the status page reads.
    async fn view_customer_status(&self, id: &str) -> String {
        let sql = "SELECT customer_status FROM order_confirmation_status WHERE order_id = $1";
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql.replace("$1", "?1"), [id], |r| r.get(0))
                .unwrap(),
            Db::Postgres(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.query_one(sql, &[&id]).await.unwrap().get(0)
            }
        }
    }
}

/// The status page's view and `status` (the ledger's Rust rule) say the same `customer_status`
/// for every kind of order: the rule is written in SQL for the view and in Rust for `status`.
pub async fn the_status_view_and_status_say_the_same_customer_status(l: Arc<dyn LedgerOps>, db: Db) {
    let mut ids: Vec<String> = ["V-SENT", "V-SENDING", "V-FAILED", "V-REJECTED"].map(String::from).to_vec();
    let reqs: Vec<_> = ids.iter().map(|id| req(id, "h", Priority::Normal)).collect();
    let tokens: Vec<_> = l.claim(&reqs, LEASE).await.unwrap().iter().map(token).collect();
    let outcomes = [
        Some(Outcome::Sent { message_id: "m-V-SENT".into() }),
        None,
        Some(Outcome::Failed { error: "timeout".into() }),
        Some(Outcome::Rejected { reason: "MessageRejected".into() }),
    ];
    let recs: Vec<_> =
        ids.iter().zip(tokens).zip(outcomes).filter_map(|((id, t), o)| o.map(|o| rec(id.as_str(), t, o))).collect();
    assert!(l.record(&recs).await.unwrap().iter().all(|a| a.applied));
    for d in DeliveryState::ALL {
        let id = format!("V-{}", d.as_str().to_uppercase().replace('_', "-"));
        sent(&l, &[&id], Priority::Normal).await;
        l.apply_delivery_events(&[ev(Some(&id), &format!("m-{id}"), state(d), 1)]).await.unwrap();
        ids.push(id);
    }
    let mut seen = std::collections::BTreeSet::new();
    for id in &ids {
        let rust = l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap().customer_status;
        assert_eq!(db.view_customer_status(id).await, rust.as_str(), "{id}");
        seen.insert(rust);
    }
    assert_eq!(seen.len(), 3, "confirmed, processing and needs_attention all occur: {seen:?}");
}

/// The statistics over 24 hours read the hourly summary of the sends once reconcile has made it,
/// and say the same as the sends themselves: the same counts and the same percentiles (times to
/// confirm truncated to three significant digits of milliseconds).
pub async fn stats_say_the_same_from_the_hourly_summary_as_from_the_sends(l: Arc<dyn LedgerOps>, db: Db) {
    // (order, sent this many minutes ago, time to confirm in ms)
    let sends = [("T1", 30, 250), ("T2", 120, 1_500), ("T3", 300, 2_000), ("T4", 1_410, 12_345), ("T5", 1_500, 60_000)];
    let reqs: Vec<_> = sends.iter().map(|(id, ..)| req(id, "h", Priority::High)).collect();
    let claims = l.claim(&reqs, LEASE).await.unwrap();
    let recordings: Vec<_> = sends
        .iter()
        .zip(&claims)
        .map(|((id, ..), c)| rec(id, token(c), Outcome::Sent { message_id: "m".into() }))
        .collect();
    l.record(&recordings).await.unwrap();
    for (id, minutes, ttc_ms) in sends {
        db.sent_ago(id, Duration::from_secs(minutes * 60), Duration::from_millis(ttc_ms)).await;
    }

    let before = l.stats().await.unwrap();
    let high = before.priorities.iter().find(|p| p.priority == Priority::High).unwrap();
    assert_eq!((high.by_status[&Status::Sent], high.sent_last_hour), (4, 1), "T5 was sent 25 hours ago");
    let p = &high.time_to_send_seconds;
    assert_eq!(
        (p.p50, p.p95, p.p99),
        (Some(1.5), Some(12.3), Some(12.3)),
        "nearest rank over 0.25, 1.5, 2 and 12.345 s, the last kept as 12.3 s"
    );

    let mut hours = 0;
    while l.summarize_sends().await.unwrap() {
        hours += 1;
        assert!(hours <= 24, "at most the whole hours of one day are summarized");
    }
    assert!(hours >= 21, "the whole hours of the last day that are over are summarized: {hours}");
    assert!(!l.summarize_sends().await.unwrap(), "an hour is summarized once");
    assert_eq!(l.stats().await.unwrap(), before, "the summary says what the sends said");

    // T3 (sent 5 hours ago) is counted from its hour's summary now, not from its row.
    db.execute("DELETE FROM order_confirmations WHERE order_id = 'T3'").await;
    assert_eq!(l.stats().await.unwrap(), before, "stats read the summary of T3's hour");
}

pub async fn unknown_order_has_no_state(l: Arc<dyn LedgerOps>) {
    assert!(l.order_state(&OrderId::parse("nope").unwrap()).await.unwrap().is_none());
}

pub async fn expired_leases_and_old_failures_are_stuck_and_can_be_abandoned(l: Arc<dyn LedgerOps>) {
    let c = l
        .claim(
            &[req("S1", "h", Priority::Normal), req("S2", "h", Priority::High), req("S3", "h", Priority::Normal)],
            LEASE,
        )
        .await
        .unwrap();
    l.record(&[
        rec("S2", token(&c[1]), Outcome::Failed { error: "throttled".into() }),
        rec("S3", token(&c[2]), Outcome::Sent { message_id: "m".into() }),
    ])
    .await
    .unwrap();
    l.claim(&[req("S4", "h", Priority::Normal)], Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    // S1 holds a live lease, S3 is sent: neither is stuck. S4's lease expired; S2 failed.
    let stuck = l.stuck(Duration::ZERO, 10).await.unwrap();
    let ids: Vec<&str> = stuck.iter().map(|s| s.order_id.as_str()).collect();
    assert_eq!(ids, vec!["S2", "S4"]);
    let payload: serde_json::Value = serde_json::from_str(&stuck[0].payload).unwrap();
    assert_eq!(payload, serde_json::json!({"order_id": "S2"}), "the stored payload, to re-send from");
    assert!(
        l.stuck(Duration::from_secs(3600), 10).await.unwrap().iter().all(|s| s.order_id.as_str() != "S2"),
        "failed too recently"
    );

    // Taking over S4's expired lease is flagged with how long ago that lease ended: the dead
    // holder may have mailed it.
    let again = l.claim(&[req("S4", "h", Priority::Normal)], LEASE).await.unwrap();
    match &again[0] {
        Claim::Claimed { takeover: Some(t), .. } => {
            assert!(t.lease_ended_ago < Duration::from_secs(30), "S4's lease ended moments ago: {t:?}")
        }
        other => panic!("expected a takeover, got {other:?}"),
    }
    let fresh = l.claim(&[req("S5", "h", Priority::Normal)], LEASE).await.unwrap();
    assert!(matches!(fresh[0], Claim::Claimed { takeover: None, .. }));

    let n = l
        .abandon(&[OrderId::parse("S2").unwrap(), OrderId::parse("S1").unwrap()], "gave up after 10 attempts")
        .await
        .unwrap();
    assert_eq!(n, 1, "only S2: S1 is leased");
    let state = l.order_state(&OrderId::parse("S2").unwrap()).await.unwrap().unwrap();
    // The verdict, with the cause it replaced kept beside it for the person who must act.
    assert_eq!(
        (state.status, state.last_error.as_deref()),
        (Status::Abandoned, Some("gave up after 10 attempts; last error: throttled"))
    );
    assert!(
        matches!(&l.claim(&[req("S2", "h", Priority::High)], LEASE).await.unwrap()[0], Claim::Terminal { status, .. } if *status == Status::Abandoned)
    );

    let u = l.unconfirmed(Duration::ZERO).await.unwrap();
    assert_eq!(u.count, 4, "S1, S2 (abandoned), S4, S5; S3 is sent");
    assert!(u.oldest_seconds > 0.0);
    assert_eq!(l.unconfirmed(Duration::from_secs(3600)).await.unwrap().count, 0);
}

pub async fn only_abandoned_or_rejected_orders_are_released_for_retry(l: Arc<dyn LedgerOps>) {
    let c = l.claim(&[req("RL1", "h", Priority::High), req("RL2", "h", Priority::Normal)], LEASE).await.unwrap();
    l.record(&[
        rec("RL1", token(&c[0]), Outcome::Rejected { reason: "MessageRejected: bad address".into() }),
        rec("RL2", token(&c[1]), Outcome::Sent { message_id: "m".into() }),
    ])
    .await
    .unwrap();
    assert!(l.release(&OrderId::parse("RL2").unwrap()).await.unwrap().is_none(), "a sent order is never released");
    assert!(l.release(&OrderId::parse("nope").unwrap()).await.unwrap().is_none());
    let released = l.release(&OrderId::parse("RL1").unwrap()).await.unwrap().expect("released");
    assert_eq!((released.order_id.as_str(), released.status, released.attempts), ("RL1", Status::Failed, 0));
    let payload: serde_json::Value = serde_json::from_str(&released.payload).unwrap();
    assert_eq!(payload, serde_json::json!({"order_id": "RL1"}));
    let st = l.order_state(&OrderId::parse("RL1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.last_error.as_deref(), Some("released for retry (was rejected: MessageRejected: bad address)"));
    assert!(matches!(l.claim(&[req("RL1", "h", Priority::High)], LEASE).await.unwrap()[0], Claim::Claimed { .. }));
}

pub async fn a_retried_record_counts_as_applied_and_changes_nothing(l: Arc<dyn LedgerOps>) {
    let t = token(&l.claim(&[req("RR1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let sent = [rec("RR1", t, Outcome::Sent { message_id: "m-1".into() })];
    assert_eq!(l.record(&sent).await.unwrap().applied(), vec![true]);
    let first = l.order_state(&OrderId::parse("RR1").unwrap()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(l.record(&sent).await.unwrap().applied(), vec![true], "the retry of a committed record is applied");
    let again = l.order_state(&OrderId::parse("RR1").unwrap()).await.unwrap().unwrap();
    assert_eq!((again.status, again.sent_at, again.attempts), (Status::Sent, first.sent_at, 1));

    // Fencing still holds: once a newer claim took the order over, the old token applies nothing.
    let stale = token(&l.claim(&[req("RR2", "h", Priority::Normal)], Duration::ZERO).await.unwrap()[0]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer = token(&l.claim(&[req("RR2", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let failed = |t| [rec("RR2", t, Outcome::Failed { error: "timeout".into() })];
    assert_eq!(l.record(&failed(newer)).await.unwrap().applied(), vec![true]);
    assert_eq!(l.record(&failed(stale)).await.unwrap().applied(), vec![false]);
}

pub async fn a_released_claim_gives_its_attempt_back_once(l: Arc<dyn LedgerOps>) {
    let t = token(&l.claim(&[req("RA1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let released = [rec("RA1", t, Outcome::Deferred { reason: "not sent: no send slot".into() })];
    assert_eq!(l.record(&released).await.unwrap().applied(), vec![true]);
    assert_eq!(l.record(&released).await.unwrap().applied(), vec![true], "a retried release");
    let st = l.order_state(&OrderId::parse("RA1").unwrap()).await.unwrap().unwrap();
    assert_eq!((st.status, st.attempts), (Status::Failed, 0), "a deferral is not an attempt");
    let t = token(&l.claim(&[req("RA1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    l.record(&[rec("RA1", t, Outcome::Failed { error: "timeout".into() })]).await.unwrap();
    let st = l.order_state(&OrderId::parse("RA1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.attempts, 1, "a failed send is");
}

pub async fn a_parked_abandoned_order_no_longer_counts_as_unconfirmed_until_retried(l: Arc<dyn LedgerOps>) {
    let c = l.claim(&[req("P1", "h", Priority::High), req("P2", "h", Priority::Normal)], LEASE).await.unwrap();
    l.record(&[
        rec("P1", token(&c[0]), Outcome::Failed { error: "timeout".into() }),
        rec("P2", token(&c[1]), Outcome::Failed { error: "timeout".into() }),
    ])
    .await
    .unwrap();
    let p1 = OrderId::parse("P1").unwrap();
    assert!(l.park(&p1, "OPS-1").await.unwrap().is_none(), "a failed order is automation's, not parked");
    l.abandon(&[p1.clone(), OrderId::parse("P2").unwrap()], "gave up").await.unwrap();
    assert_eq!(l.unconfirmed(Duration::ZERO).await.unwrap().count, 2);

    let parked = l.park(&p1, "OPS-1 (alice)").await.unwrap().expect("an abandoned order is parked");
    assert_eq!((parked.status, parked.parked_note.as_deref()), (Status::Abandoned, Some("OPS-1 (alice)")));
    assert!(parked.parked_at.is_some());
    assert_eq!(l.unconfirmed(Duration::ZERO).await.unwrap().count, 1, "only P2, which nobody has looked at");
    assert!(
        matches!(&l.claim(&[req("P1", "h", Priority::High)], LEASE).await.unwrap()[0], Claim::Terminal { status, .. } if *status == Status::Abandoned),
        "parking does not release it"
    );
    assert!(l.park(&OrderId::parse("nope").unwrap(), "OPS-1").await.unwrap().is_none());

    // A retry clears the mark: if the order fails for good again, it counts again.
    l.release(&p1).await.unwrap().expect("released");
    let st = l.order_state(&p1).await.unwrap().unwrap();
    assert_eq!((st.parked_at, st.parked_note), (None, None));
    assert_eq!(l.unconfirmed(Duration::ZERO).await.unwrap().count, 2);
}

pub async fn retention_removes_old_payloads_in_bounded_steps_and_deletes_finished_rows_past_the_horizon(
    l: Arc<dyn LedgerOps>,
) {
    let ids = ["RT1", "RT2", "RT3", "RT4"];
    let reqs: Vec<_> = ids.iter().map(|id| req(id, "h", Priority::Normal)).collect();
    let tokens: Vec<_> = l.claim(&reqs, LEASE).await.unwrap().iter().map(token).collect();
    let outcomes = [
        Outcome::Sent { message_id: "m-1".into() },
        Outcome::Sent { message_id: "m-2".into() },
        Outcome::Rejected { reason: "address refused".into() },
        Outcome::Failed { error: "throttled".into() },
    ];
    let recordings: Vec<_> = ids.iter().zip(tokens).zip(outcomes).map(|((id, t), o)| rec(id, t, o)).collect();
    assert_eq!(l.record(&recordings).await.unwrap().applied(), vec![true; 4]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let state = |id: &str| {
        let l = Arc::clone(&l);
        let id = OrderId::parse(id).unwrap();
        async move { l.order_state(&id).await.unwrap() }
    };

    // Payloads of confirmed orders go, at most `limit` per step; the horizon (an hour) is not reached.
    let hour = Duration::from_secs(3600);
    let step = l.retain(Duration::ZERO, hour, 1).await.unwrap();
    assert_eq!((step.payloads_removed, step.rows_deleted), (1, 0), "one step touches at most `limit` rows");
    assert_eq!(l.retain(Duration::ZERO, hour, 1).await.unwrap().payloads_removed, 1);
    assert_eq!(l.retain(Duration::ZERO, hour, 1).await.unwrap().payloads_removed, 0, "nothing left to remove");
    for id in ["RT1", "RT2"] {
        let st = state(id).await.unwrap();
        assert!(st.payload_removed_at.is_some(), "{id}: payload removed");
        assert_eq!(st.status, Status::Sent, "{id}: what `status` shows is kept");
        assert!(st.sent_at.is_some() && st.ses_message_id.is_some(), "{id}");
    }
    // A redelivery of a confirmed order is still recognised without its payload.
    assert_eq!(l.claim(&[req("RT1", "h", Priority::Normal)], LEASE).await.unwrap(), vec![Claim::AlreadySent]);
    let stats = l.stats().await.unwrap();
    let normal = stats.priorities.iter().find(|p| p.priority == Priority::Normal).unwrap();
    assert_eq!(normal.by_status[&Status::Sent], 2, "the statistics still count them");
    // Unfinished or refused orders keep their payload: a person may still retry them.
    assert_eq!(state("RT3").await.unwrap().payload_removed_at, None);
    assert_eq!(state("RT4").await.unwrap().payload_removed_at, None);
    let retried = l.release(&OrderId::parse("RT3").unwrap()).await.unwrap().expect("rejected order released");
    let payload: serde_json::Value = serde_json::from_str(&retried.payload).unwrap();
    assert_eq!(payload, serde_json::json!({"order_id": "RT3"}));
    let bad = l.claim(&[req("RT3", "h", Priority::Normal)], LEASE).await.unwrap();
    l.record(&[rec("RT3", token(&bad[0]), Outcome::Rejected { reason: "refused again".into() })]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Past the horizon, finished rows are deleted, a bounded number per step; unfinished ones stay.
    assert_eq!(l.retain(Duration::ZERO, Duration::ZERO, 2).await.unwrap().rows_deleted, 2);
    assert_eq!(l.retain(Duration::ZERO, Duration::ZERO, 2).await.unwrap().rows_deleted, 1);
    assert_eq!(l.retain(Duration::ZERO, Duration::ZERO, 2).await.unwrap().rows_deleted, 0);
    for id in ["RT1", "RT2", "RT3"] {
        assert_eq!(state(id).await, None, "{id}: deleted past the horizon");
    }
    assert_eq!(state("RT4").await.unwrap().status, Status::Failed, "a failed order is never deleted");
}

pub async fn a_takeover_says_how_long_ago_the_holders_lease_ended(l: Arc<dyn LedgerOps>) {
    let first = l.claim(&[req("TK1", "h", Priority::Normal)], Duration::from_millis(200)).await.unwrap();
    assert!(matches!(first[0], Claim::Claimed { takeover: None, .. }), "{first:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = l.claim(&[req("TK1", "h", Priority::Normal)], LEASE).await.unwrap();
    let Claim::Claimed { takeover: Some(t), .. } = &again[0] else { panic!("expected a takeover, got {again:?}") };
    assert!(
        t.lease_ended_ago >= Duration::from_millis(400) && t.lease_ended_ago < Duration::from_secs(10),
        "the lease ended about 500 ms before the takeover: {t:?}"
    );
    // Claiming a failed order again is a retry, not a takeover: nobody may be sending it.
    let token = token(&again[0]);
    l.record(&[rec("TK1", token, Outcome::Failed { error: "timeout".into() })]).await.unwrap();
    let retry = l.claim(&[req("TK1", "h", Priority::Normal)], LEASE).await.unwrap();
    assert!(matches!(retry[0], Claim::Claimed { takeover: None, .. }), "{retry:?}");
}

pub async fn a_takeover_that_fails_or_is_deferred_stays_a_takeover_for_the_next_claim(l: Arc<dyn LedgerOps>) {
    let id = || OrderId::parse("TK2").unwrap();
    let first = l.claim(&[req("TK2", "h", Priority::Normal)], Duration::from_millis(200)).await.unwrap();
    token(&first[0]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The holder died; the takeover is deferred, then the next takeover fails: the dead holder
    // may have mailed the order all along, so every claim after it is a takeover.
    for outcome in
        [Outcome::Deferred { reason: "not sent: no send slot".into() }, Outcome::Failed { error: "5xx".into() }]
    {
        let claim = l.claim(&[req("TK2", "h", Priority::Normal)], LEASE).await.unwrap();
        assert!(matches!(claim[0], Claim::Claimed { takeover: Some(_), .. }), "{outcome:?}: {claim:?}");
        let attempts = l.order_state(&id()).await.unwrap().unwrap().attempts;
        let recording = Recording { takeover: true, ..rec("TK2", token(&claim[0]), outcome.clone()) };
        // Recorded twice, as a retried record call would: the second changes nothing.
        assert_eq!(l.record(std::slice::from_ref(&recording)).await.unwrap().applied(), vec![true]);
        assert_eq!(l.record(&[recording]).await.unwrap().applied(), vec![true]);
        let st = l.order_state(&id()).await.unwrap().unwrap();
        assert_eq!(st.status, Status::Sending, "{outcome:?}: still unresolved, not failed");
        assert!(st.lease_until.is_some_and(|u| u <= time::OffsetDateTime::now_utc()), "{outcome:?}: nobody holds it");
        let given_back = i64::from(outcome.gives_back_attempt());
        assert_eq!(st.attempts, attempts - given_back, "{outcome:?}: a deferral gives its attempt back, once");
    }
    let last = l.claim(&[req("TK2", "h", Priority::Normal)], LEASE).await.unwrap();
    assert!(matches!(last[0], Claim::Claimed { takeover: Some(_), .. }), "{last:?}");
    l.record(&[Recording { takeover: true, ..rec("TK2", token(&last[0]), Outcome::Sent { message_id: "m".into() }) }])
        .await
        .unwrap();
    assert_eq!(l.order_state(&id()).await.unwrap().unwrap().status, Status::Sent);
}

/// An SES event for the contract cases: `order` is the `order_id` tag (None: an untagged mail),
/// `at` seconds after a fixed time.
fn ev(order: Option<&str>, message_id: &str, effect: Effect, at: i64) -> DeliveryEvent {
    DeliveryEvent {
        event_type: match effect {
            Effect::Send => EventType::Send,
            Effect::State(DeliveryState::Delivered) => EventType::Delivery,
            Effect::State(DeliveryState::Delayed) => EventType::DeliveryDelay,
            Effect::State(DeliveryState::Complained) => EventType::Complaint,
            Effect::State(DeliveryState::Rejected) => EventType::Reject,
            Effect::State(DeliveryState::RenderingFailed) => EventType::RenderingFailure,
            Effect::State(_) => EventType::Bounce,
        },
        message_id: SesMessageId::parse(message_id).unwrap(),
        order_id: order.map(|o| OrderId::parse(o).unwrap()),
        claim_token: Some(uuid::Uuid::from_u128(at as u128)),
        occurred_at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + at).unwrap(),
        effect,
        detail: format!("detail at {at}"),
        ignored: Vec::new(),
    }
}

fn state(s: DeliveryState) -> Effect {
    Effect::State(s)
}

/// Claims and records each order as sent with message id `m-<order>`.
async fn sent(l: &Arc<dyn LedgerOps>, ids: &[&str], priority: Priority) {
    let reqs: Vec<_> = ids.iter().map(|id| req(id, "h", priority)).collect();
    let tokens: Vec<_> = l.claim(&reqs, LEASE).await.unwrap().iter().map(token).collect();
    let recs: Vec<_> =
        ids.iter().zip(tokens).map(|(id, t)| rec(id, t, Outcome::Sent { message_id: format!("m-{id}") })).collect();
    assert!(l.record(&recs).await.unwrap().iter().all(|a| a.applied));
}

async fn delivery_of(l: &Arc<dyn LedgerOps>, id: &str) -> (Option<DeliveryState>, CustomerStatus) {
    let s = l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap();
    (s.delivery.state, s.customer_status)
}

pub async fn a_late_delivery_never_overwrites_a_bounce_and_nothing_overwrites_a_complaint(l: Arc<dyn LedgerOps>) {
    sent(&l, &["E1"], Priority::Normal).await;
    l.apply_delivery_events(&[ev(Some("E1"), "m-E1", state(DeliveryState::Delivered), 1)]).await.unwrap();
    assert_eq!(delivery_of(&l, "E1").await, (Some(DeliveryState::Delivered), CustomerStatus::Confirmed));
    l.apply_delivery_events(&[ev(Some("E1"), "m-E1", state(DeliveryState::Bounced), 2)]).await.unwrap();
    assert_eq!(delivery_of(&l, "E1").await, (Some(DeliveryState::Bounced), CustomerStatus::NeedsAttention));
    let st = l.order_state(&OrderId::parse("E1").unwrap()).await.unwrap().unwrap();
    assert_eq!(st.delivery.detail.as_deref(), Some("detail at 2"));
    assert_eq!(st.delivery.at.map(|t| t.unix_timestamp()), Some(1_800_000_002));
    assert_eq!((st.status, st.ses_message_id.as_deref()), (Status::Sent, Some("m-E1")), "send state untouched");
    l.apply_delivery_events(&[ev(Some("E1"), "m-E1", state(DeliveryState::Delivered), 3)]).await.unwrap();
    assert_eq!(delivery_of(&l, "E1").await.0, Some(DeliveryState::Bounced), "the late delivery is fenced off");
    l.apply_delivery_events(&[ev(Some("E1"), "m-E1", state(DeliveryState::Complained), 4)]).await.unwrap();
    for late in [DeliveryState::Bounced, DeliveryState::Delivered, DeliveryState::Delayed, DeliveryState::SoftBounced] {
        l.apply_delivery_events(&[ev(Some("E1"), "m-E1", state(late), 5)]).await.unwrap();
    }
    assert_eq!(delivery_of(&l, "E1").await, (Some(DeliveryState::Complained), CustomerStatus::NeedsAttention));
}

pub async fn redelivered_and_out_of_order_events_converge_on_the_same_state(l: Arc<dyn LedgerOps>) {
    sent(&l, &["E2", "E3", "E4"], Priority::High).await;
    let timeline = |id: &'static str| {
        [
            ev(Some(id), &format!("m-{id}"), state(DeliveryState::Delayed), 1),
            ev(Some(id), &format!("m-{id}"), state(DeliveryState::Delivered), 2),
            ev(Some(id), &format!("m-{id}"), state(DeliveryState::Bounced), 3),
        ]
    };
    // E2: one event per call, in order. E3: the reverse order in one call, with each event twice.
    // E4: in order, then the whole timeline redelivered.
    for e in timeline("E2") {
        l.apply_delivery_events(&[e]).await.unwrap();
    }
    let mut reversed: Vec<_> = timeline("E3").into_iter().rev().collect();
    reversed.extend(reversed.clone());
    let matches = l.apply_delivery_events(&reversed).await.unwrap();
    assert_eq!(matches.len(), 6);
    assert!(
        matches.iter().all(
            |m| matches!(m, EventMatch::Order { order_id, priority: Priority::High, duplicate: false } if order_id.as_str() == "E3")
        )
    );
    l.apply_delivery_events(&timeline("E4")).await.unwrap();
    l.apply_delivery_events(&timeline("E4")).await.unwrap();
    let mut details = Vec::new();
    for id in ["E2", "E3", "E4"] {
        let st = l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!(st.delivery.state, Some(DeliveryState::Bounced), "{id}");
        details.push((st.delivery.detail, st.delivery.at));
    }
    assert!(details.iter().all(|d| *d == details[0]), "the same bounce is kept whatever the order: {details:?}");
}

pub async fn of_two_events_of_equal_rank_or_time_the_first_applied_stays(l: Arc<dyn LedgerOps>) {
    // Unrecorded, so every mail's events may set the state; two Send events stamped alike.
    token(&l.claim(&[req("EQ1", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let mut first = ev(Some("EQ1"), "m-eq", state(DeliveryState::Bounced), 1);
    first.detail = "first".into();
    let mut second = ev(Some("EQ1"), "m-eq", state(DeliveryState::Bounced), 2);
    second.detail = "second".into();
    l.apply_delivery_events(&[first]).await.unwrap();
    l.apply_delivery_events(&[second]).await.unwrap();
    l.apply_delivery_events(&[ev(Some("EQ1"), "m-eq", Effect::Send, 5)]).await.unwrap();
    l.apply_delivery_events(&[ev(Some("EQ1"), "m-eq-2", Effect::Send, 5)]).await.unwrap();
    let st = state_of(&l, "EQ1").await;
    assert_eq!(st.delivery.detail.as_deref(), Some("first"), "an equal rank does not replace the state");
    assert_eq!(
        st.delivery.send_event.map(|s| s.message_id).as_deref(),
        Some("m-eq"),
        "an equally late Send event does not replace the kept one"
    );
}

pub async fn events_for_unknown_orders_are_counted_and_do_not_disturb_the_batch(l: Arc<dyn LedgerOps>) {
    sent(&l, &["E5"], Priority::Normal).await;
    let matches = l
        .apply_delivery_events(&[
            ev(Some("NOPE-1"), "m-nope", state(DeliveryState::Bounced), 1),
            ev(None, "m-never-stored", state(DeliveryState::Delivered), 1),
            ev(Some("E5"), "m-E5", state(DeliveryState::Delivered), 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        matches,
        vec![
            EventMatch::Unknown,
            EventMatch::Unknown,
            EventMatch::Order { order_id: OrderId::parse("E5").unwrap(), priority: Priority::Normal, duplicate: false }
        ]
    );
    assert!(l.order_state(&OrderId::parse("NOPE-1").unwrap()).await.unwrap().is_none(), "no row is created");
    assert_eq!(delivery_of(&l, "E5").await.0, Some(DeliveryState::Delivered));
}

pub async fn an_untagged_event_finds_its_order_by_the_stored_ses_message_id(l: Arc<dyn LedgerOps>) {
    sent(&l, &["E6"], Priority::High).await;
    let matches = l.apply_delivery_events(&[ev(None, "m-E6", state(DeliveryState::Complained), 1)]).await.unwrap();
    assert!(matches!(&matches[..], [EventMatch::Order { order_id, .. }] if order_id.as_str() == "E6"));
    assert_eq!(delivery_of(&l, "E6").await, (Some(DeliveryState::Complained), CustomerStatus::NeedsAttention));
}

pub async fn the_send_event_is_kept_with_its_claim_token_and_the_latest_one_wins(l: Arc<dyn LedgerOps>) {
    // Claimed but never recorded: the process died after SES accepted the mail.
    let t = token(&l.claim(&[req("E7", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    let before = l.order_state(&OrderId::parse("E7").unwrap()).await.unwrap().unwrap();
    let mut first = ev(Some("E7"), "ses-first", Effect::Send, 10);
    first.claim_token = Some(t);
    let older = ev(Some("E7"), "ses-older", Effect::Send, 5);
    l.apply_delivery_events(&[first.clone(), older]).await.unwrap();
    l.apply_delivery_events(&[first]).await.unwrap();
    let st = l.order_state(&OrderId::parse("E7").unwrap()).await.unwrap().unwrap();
    let send = st.delivery.send_event.clone().expect("the Send event is recorded");
    assert_eq!((send.message_id.as_str(), send.claim_token), ("ses-first", Some(t)));
    assert_eq!(send.at.unix_timestamp(), 1_800_000_010);
    assert_eq!(st.delivery.state, None, "a Send event is not a delivery state");
    assert_eq!(
        (st.status, st.attempts, st.updated_at),
        (Status::Sending, 1, before.updated_at),
        "the claim is untouched"
    );
    assert_eq!(st.customer_status, CustomerStatus::Processing);
    l.apply_delivery_events(&[ev(Some("E7"), "ses-second", Effect::Send, 20)]).await.unwrap();
    let st = l.order_state(&OrderId::parse("E7").unwrap()).await.unwrap().unwrap();
    assert_eq!(
        st.delivery.send_event.unwrap().message_id,
        "ses-second",
        "a later Send event (a second mail) replaces it"
    );
}

pub async fn a_claim_and_a_takeover_find_the_send_event_of_an_earlier_claims_mail(l: Arc<dyn LedgerOps>) {
    let id = OrderId::parse("W1").unwrap();
    // Claimed with a lease that ends at once and never recorded: the holder died after SES
    // accepted its mail.
    let dead = token(&l.claim(&[req("W1", "h", Priority::Normal)], Duration::ZERO).await.unwrap()[0]);
    let other = uuid::Uuid::new_v4();
    assert_eq!(l.sent_earlier(&[(id.clone(), other)]).await.unwrap(), vec![None], "no event yet");
    let mut send = ev(Some("W1"), "ses-w1", Effect::Send, 1);
    send.claim_token = Some(dead);
    l.apply_delivery_events(&[send]).await.unwrap();
    // What a waiting takeover asks: the event is for a mail of another claim.
    let unknown = OrderId::parse("W-none").unwrap();
    assert_eq!(
        l.sent_earlier(&[(id.clone(), other), (unknown, other), (id.clone(), dead)]).await.unwrap(),
        vec![Some("ses-w1".to_owned()), None, None],
        "in input order; an order the ledger does not hold, and the holder's own mail, are not earlier mails"
    );
    // What the claim that takes the order over finds without asking.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = l.claim(&[req("W1", "h", Priority::Normal)], LEASE).await.unwrap();
    match &again[0] {
        Claim::Claimed { takeover: Some(_), sent_earlier, .. } => assert_eq!(sent_earlier.as_deref(), Some("ses-w1")),
        other => panic!("expected a takeover, got {other:?}"),
    }
    let fresh = l.claim(&[req("W2", "h", Priority::Normal)], LEASE).await.unwrap();
    assert!(matches!(&fresh[0], Claim::Claimed { sent_earlier: None, .. }), "{fresh:?}");
}

pub async fn delivery_stats_count_each_state_per_priority_and_the_bounce_rate(l: Arc<dyn LedgerOps>) {
    sent(&l, &["F1", "F2", "F3", "F4"], Priority::Normal).await;
    sent(&l, &["F5"], Priority::High).await;
    l.claim(&[req("F6", "h", Priority::Normal)], LEASE).await.unwrap(); // not sent: not counted
    l.apply_delivery_events(&[
        ev(Some("F1"), "m-F1", state(DeliveryState::Delivered), 1),
        ev(Some("F2"), "m-F2", state(DeliveryState::Bounced), 1),
        ev(Some("F3"), "m-F3", state(DeliveryState::Complained), 1),
        ev(Some("F5"), "m-F5", state(DeliveryState::Delivered), 1),
        ev(Some("F6"), "m-F6", Effect::Send, 1),
    ])
    .await
    .unwrap();
    let stats = l.delivery_stats().await.unwrap();
    let normal = stats.iter().find(|p| p.priority == Priority::Normal).unwrap();
    assert_eq!(normal.sent, 4);
    let n = |s: DeliveryBucket| normal.by_state[&s];
    let bucket = DeliveryBucket::State;
    assert_eq!(
        (
            n(bucket(DeliveryState::Delivered)),
            n(bucket(DeliveryState::Bounced)),
            n(bucket(DeliveryState::Complained)),
            n(DeliveryBucket::Unknown),
            n(bucket(DeliveryState::Delayed))
        ),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(normal.bounce_rate, Some(0.25));
    let high = stats.iter().find(|p| p.priority == Priority::High).unwrap();
    assert_eq!(
        (high.sent, high.by_state[&DeliveryBucket::State(DeliveryState::Delivered)], high.bounce_rate),
        (1, 1, Some(0.0))
    );
}

pub async fn retention_keeps_the_payload_of_an_order_sent_within_the_retention_period(l: Arc<dyn LedgerOps>) {
    sent(&l, &["RK1", "RK2"], Priority::Normal).await;
    let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(86_400));
    let step = l.retain(hour, day, 100).await.unwrap();
    assert_eq!((step.payloads_removed, step.rows_deleted), (0, 0), "sent just now: inside both periods");
    for id in ["RK1", "RK2"] {
        let st = l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!((st.status, st.payload_removed_at), (Status::Sent, None), "{id} keeps its payload");
    }
}

/// Whether `m` placed its event on `id`, and whether it reported a duplicate mail.
fn placed(m: &EventMatch) -> Option<(&str, bool)> {
    match m {
        EventMatch::Order { order_id, duplicate, .. } => Some((order_id.as_str(), *duplicate)),
        _ => None,
    }
}

async fn state_of(l: &Arc<dyn LedgerOps>, id: &str) -> order_confirmation::ledger::OrderState {
    l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap()
}

async fn duplicates_in_stats(l: &Arc<dyn LedgerOps>, priority: Priority) -> u64 {
    l.delivery_stats().await.unwrap().iter().find(|p| p.priority == priority).unwrap().duplicates
}

pub async fn a_second_mail_of_a_sent_order_is_recorded_and_reported_once_however_often_its_events_come(
    l: Arc<dyn LedgerOps>,
) {
    sent(&l, &["DM1"], Priority::High).await;
    // The order's own mail: its Send and Delivery, each delivered twice, are no duplicate.
    let own = [ev(Some("DM1"), "m-DM1", Effect::Send, 1), ev(Some("DM1"), "m-DM1", state(DeliveryState::Delivered), 2)];
    for _ in 0..2 {
        let m = l.apply_delivery_events(&own).await.unwrap();
        assert_eq!(m.iter().map(placed).collect::<Vec<_>>(), vec![Some(("DM1", false)); 2]);
    }
    // A second mail SES accepted: its first event reports it, once, whichever batch redelivers it.
    let extra_send = ev(Some("DM1"), "m-DM1-extra", Effect::Send, 3);
    let extra_bounce = ev(Some("DM1"), "m-DM1-extra", state(DeliveryState::Bounced), 4);
    let m = l.apply_delivery_events(&[extra_send.clone(), extra_bounce.clone(), extra_send.clone()]).await.unwrap();
    assert_eq!(
        m.iter().map(placed).collect::<Vec<_>>(),
        vec![Some(("DM1", true)), Some(("DM1", false)), Some(("DM1", false))]
    );
    let m = l.apply_delivery_events(&[extra_bounce, extra_send]).await.unwrap();
    assert_eq!(m.iter().map(placed).collect::<Vec<_>>(), vec![Some(("DM1", false)); 2], "redelivered: not again");
    let st = state_of(&l, "DM1").await;
    assert_eq!(st.delivery.duplicate_message_ids, vec!["m-DM1-extra".to_owned()]);
    assert_eq!(st.ses_message_id.as_deref(), Some("m-DM1"), "the order's mail stays the recorded one");
    assert_eq!(
        (st.delivery.state, st.customer_status),
        (Some(DeliveryState::Delivered), CustomerStatus::Confirmed),
        "the extra mail's bounce says nothing about the order's own mail"
    );
    assert_eq!(
        (duplicates_in_stats(&l, Priority::High).await, duplicates_in_stats(&l, Priority::Normal).await),
        (1, 0)
    );
    // A third mail is one more.
    let m =
        l.apply_delivery_events(&[ev(Some("DM1"), "m-DM1-third", state(DeliveryState::Delivered), 5)]).await.unwrap();
    assert_eq!(placed(&m[0]), Some(("DM1", true)));
    assert_eq!(state_of(&l, "DM1").await.delivery.duplicate_message_ids.len(), 2);
    assert_eq!(duplicates_in_stats(&l, Priority::High).await, 2);
}

pub async fn two_mails_of_an_unrecorded_order_are_one_duplicate_whatever_order_their_events_come_in(
    l: Arc<dyn LedgerOps>,
) {
    // Claimed, never recorded: the holder died; SES accepted its mail and a takeover's.
    token(&l.claim(&[req("DM2", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    // The first mail's Delivery arrives before its Send; then the second mail's Delivery and Send,
    // in one batch with a redelivery of the first's Send.
    let m = l.apply_delivery_events(&[ev(Some("DM2"), "m-a", state(DeliveryState::Delivered), 2)]).await.unwrap();
    assert_eq!(placed(&m[0]), Some(("DM2", false)), "one mail is no duplicate");
    let m = l
        .apply_delivery_events(&[
            ev(Some("DM2"), "m-a", Effect::Send, 1),
            ev(Some("DM2"), "m-b", state(DeliveryState::Delivered), 4),
            ev(Some("DM2"), "m-b", Effect::Send, 3),
        ])
        .await
        .unwrap();
    assert_eq!(
        m.iter().map(placed).collect::<Vec<_>>(),
        vec![Some(("DM2", false)), Some(("DM2", true)), Some(("DM2", false))]
    );
    assert_eq!(state_of(&l, "DM2").await.delivery.duplicate_message_ids, vec!["m-b".to_owned()]);
    assert_eq!(duplicates_in_stats(&l, Priority::Normal).await, 1, "counted by when it was seen, sent or not");
}

pub async fn a_lost_send_event_leaves_the_delivery_as_the_witness_and_the_duplicate_is_still_counted(
    l: Arc<dyn LedgerOps>,
) {
    let id = OrderId::parse("DM3").unwrap();
    let dead = token(&l.claim(&[req("DM3", "h", Priority::Normal)], Duration::ZERO).await.unwrap()[0]);
    // SES lost the dead holder's Send event; its Delivery arrives.
    let mut delivery = ev(Some("DM3"), "m-dead", state(DeliveryState::Delivered), 2);
    delivery.claim_token = Some(dead);
    l.apply_delivery_events(&[delivery]).await.unwrap();
    let other = uuid::Uuid::new_v4();
    assert_eq!(
        l.sent_earlier(&[(id.clone(), other), (id.clone(), dead)]).await.unwrap(),
        vec![Some("m-dead".to_owned()), None],
        "any event of another claim's mail is the witness; the holder's own mail is not an earlier one"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = l.claim(&[req("DM3", "h", Priority::Normal)], LEASE).await.unwrap();
    let Claim::Claimed { token: t, sent_earlier, .. } = &again[0] else { panic!("expected a takeover: {again:?}") };
    assert_eq!(sent_earlier.as_deref(), Some("m-dead"), "the claim finds it too");

    // Had the takeover mailed anyway (its wait ended first), its own mail is the recorded one
    // and the dead holder's the extra: counted by the record step, which finds the dead holder's
    // mail already known; the takeover's mail's events, its Send lost as well, count nothing more.
    let recorded = l.record(&[rec("DM3", *t, Outcome::Sent { message_id: "m-new".into() })]).await.unwrap();
    assert_eq!(recorded, vec![Recorded { applied: true, extra_mail: true }]);
    let m = l.apply_delivery_events(&[ev(Some("DM3"), "m-new", state(DeliveryState::Delivered), 5)]).await.unwrap();
    assert_eq!(placed(&m[0]), Some(("DM3", false)));
    assert_eq!(state_of(&l, "DM3").await.delivery.duplicate_message_ids, vec!["m-dead".to_owned()]);
    assert_eq!(duplicates_in_stats(&l, Priority::Normal).await, 1);
}

/// The record step counts the extra mail no event will: one mail's event arrived while the order
/// was unrecorded, and the mail recorded later never has an event (all lost). Counted once,
/// however often the record is retried and whatever events come later.
pub async fn a_recorded_mail_after_another_mails_event_is_one_extra_mail_even_with_no_event_of_its_own(
    l: Arc<dyn LedgerOps>,
) {
    let dead = token(&l.claim(&[req("DM4", "h", Priority::High)], Duration::ZERO).await.unwrap()[0]);
    let mut early = ev(Some("DM4"), "m-early", state(DeliveryState::Delivered), 1);
    early.claim_token = Some(dead);
    let m = l.apply_delivery_events(&[early.clone()]).await.unwrap();
    assert_eq!(placed(&m[0]), Some(("DM4", false)), "the first mail seen is no extra");
    assert_eq!(duplicates_in_stats(&l, Priority::High).await, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = token(&l.claim(&[req("DM4", "h", Priority::High)], LEASE).await.unwrap()[0]);
    let sent = [rec("DM4", t, Outcome::Sent { message_id: "m-recorded".into() })];
    assert_eq!(duplicates_in_stats(&l, Priority::High).await, 0);
    assert_eq!(l.record(&sent).await.unwrap(), vec![Recorded { applied: true, extra_mail: true }]);
    assert_eq!(duplicates_in_stats(&l, Priority::High).await, 1, "two mails known: one extra, counted at the record");
    assert_eq!(l.record(&sent).await.unwrap(), vec![Recorded::APPLIED], "a retried record counts nothing more");
    let later = [
        early,
        ev(Some("DM4"), "m-recorded", Effect::Send, 2),
        ev(Some("DM4"), "m-recorded", state(DeliveryState::Delivered), 3),
    ];
    let m = l.apply_delivery_events(&later).await.unwrap();
    assert_eq!(m.iter().map(placed).collect::<Vec<_>>(), vec![Some(("DM4", false)); 3], "known mails: not again");
    let st = state_of(&l, "DM4").await;
    assert_eq!(st.delivery.duplicate_message_ids, vec!["m-early".to_owned()]);
    assert_eq!(duplicates_in_stats(&l, Priority::High).await, 1);
}

/// Two invocations apply the first events of two different mails of one order at the same
/// instant (the events mapping runs two). `hold` keeps them both in flight until each has begun
/// (on PostgreSQL: holds the order's row, so both statements start from the same snapshot, where
/// the other mail is missing); exactly one of them counts the extra mail.
pub async fn two_invocations_applying_two_mails_of_one_order_at_once_count_one_extra_mail<H, F>(
    l: Arc<dyn LedgerOps>,
    hold: H,
) where
    H: Fn(&'static str) -> F,
    F: std::future::Future<Output = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>>,
{
    sent(&l, &["DM5"], Priority::Normal).await;
    token(&l.claim(&[req("DM6", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    for (order, first, second) in [("DM5", "m-DM5-x", "m-DM5-y"), ("DM6", "m-DM6-a", "m-DM6-b")] {
        let release = hold(order).await;
        let (l1, l2) = (l.clone(), l.clone());
        let one = tokio::spawn(async move {
            l1.apply_delivery_events(&[ev(Some(order), first, state(DeliveryState::Delivered), 1)]).await.unwrap()
        });
        let two = tokio::spawn(async move {
            l2.apply_delivery_events(&[ev(Some(order), second, state(DeliveryState::Delivered), 1)]).await.unwrap()
        });
        release().await;
        let reported = [one.await.unwrap(), two.await.unwrap()]
            .iter()
            .filter(|m| placed(&m[0]).is_some_and(|(_, duplicate)| duplicate))
            .count();
        let st = state_of(&l, order).await;
        match order {
            // A sent order: both mails are extra beside its recorded one.
            "DM5" => assert_eq!((reported, st.delivery.duplicate_message_ids.len()), (2, 2), "{order}"),
            _ => assert_eq!((reported, st.delivery.duplicate_message_ids.len()), (1, 1), "{order}"),
        }
    }
    assert_eq!(duplicates_in_stats(&l, Priority::Normal).await, 3);
}

pub async fn a_bounce_tagged_with_one_order_but_carrying_anothers_message_id_marks_neither(l: Arc<dyn LedgerOps>) {
    sent(&l, &["P1", "P7"], Priority::Normal).await;
    let m = l.apply_delivery_events(&[ev(Some("P7"), "m-P1", state(DeliveryState::Bounced), 1)]).await.unwrap();
    assert!(!matches!(m[0], EventMatch::Order { .. }), "a contradiction is applied to no order: {m:?}");
    for id in ["P1", "P7"] {
        let st = l.order_state(&OrderId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!((st.delivery.state, st.customer_status), (None, CustomerStatus::Confirmed), "{id}");
    }
}

pub async fn a_send_event_tagged_with_one_order_but_carrying_anothers_message_id_is_no_witness(l: Arc<dyn LedgerOps>) {
    sent(&l, &["M2"], Priority::Normal).await;
    let dead = token(&l.claim(&[req("M1", "h", Priority::Normal)], Duration::ZERO).await.unwrap()[0]);
    let mut send = ev(Some("M1"), "m-M2", Effect::Send, 1);
    send.claim_token = Some(dead);
    l.apply_delivery_events(&[send]).await.unwrap();
    let m1 = OrderId::parse("M1").unwrap();
    assert_eq!(l.sent_earlier(&[(m1.clone(), uuid::Uuid::new_v4())]).await.unwrap(), vec![None]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = l.claim(&[req("M1", "h", Priority::Normal)], LEASE).await.unwrap();
    assert!(
        matches!(&again[0], Claim::Claimed { sent_earlier: None, .. }),
        "M1 must be mailed: the event names M2's mail: {again:?}"
    );
}

pub async fn an_untagged_event_for_a_message_id_two_rows_share_is_applied_to_neither_and_fails_nothing(
    l: Arc<dyn LedgerOps>,
) {
    // Two rows sharing one message id (left by an earlier version's contradicting Send event).
    let reqs = [req("S1", "h", Priority::Normal), req("S2", "h", Priority::Normal)];
    let tokens: Vec<_> = l.claim(&reqs, LEASE).await.unwrap().iter().map(token).collect();
    let shared = || Outcome::Sent { message_id: "m-shared".into() };
    l.record(&[rec("S1", tokens[0], shared()), rec("S2", tokens[1], shared())]).await.unwrap();
    sent(&l, &["S3"], Priority::Normal).await;
    let m = l
        .apply_delivery_events(&[
            ev(None, "m-shared", state(DeliveryState::Bounced), 1),
            ev(Some("S3"), "m-S3", state(DeliveryState::Delivered), 1),
        ])
        .await
        .expect("the batch is applied, not failed");
    assert_eq!(m.len(), 2);
    assert!(!matches!(m[0], EventMatch::Order { .. }), "{m:?}");
    assert_eq!(delivery_of(&l, "S3").await.0, Some(DeliveryState::Delivered), "the rest of the batch is applied");
    for id in ["S1", "S2"] {
        assert_eq!(delivery_of(&l, id).await.0, None, "{id}: not an arbitrary row");
    }
}

pub async fn a_message_id_maps_to_at_most_one_order(l: Arc<dyn LedgerOps>) {
    token(&l.claim(&[req("Q1", "h", Priority::Normal), req("Q2", "h", Priority::Normal)], LEASE).await.unwrap()[0]);
    // One new message id tagged with two orders in one batch, then again in another: the first
    // keeps it; every other claim on it is a contradiction.
    let m = l
        .apply_delivery_events(&[
            ev(Some("Q1"), "m-q", Effect::Send, 1),
            ev(Some("Q2"), "m-q", Effect::Send, 1),
            ev(None, "m-q", state(DeliveryState::Delivered), 2),
        ])
        .await
        .unwrap();
    assert_eq!(
        m,
        vec![
            EventMatch::Order { order_id: OrderId::parse("Q1").unwrap(), priority: Priority::Normal, duplicate: false },
            EventMatch::Contradiction,
            EventMatch::Order { order_id: OrderId::parse("Q1").unwrap(), priority: Priority::Normal, duplicate: false },
        ]
    );
    let m = l.apply_delivery_events(&[ev(Some("Q2"), "m-q", state(DeliveryState::Bounced), 3)]).await.unwrap();
    assert_eq!(m, vec![EventMatch::Contradiction]);
    assert_eq!(delivery_of(&l, "Q2").await.0, None);
    assert_eq!(state_of(&l, "Q2").await.delivery.send_event, None);
    assert_eq!(state_of(&l, "Q1").await.delivery.send_event.map(|s| s.message_id).as_deref(), Some("m-q"));
    // Tagged with an order the ledger does not hold: unknown, as before.
    let m = l.apply_delivery_events(&[ev(Some("Q-none"), "m-q", Effect::Send, 4)]).await.unwrap();
    assert_eq!(m, vec![EventMatch::Unknown]);
}

pub async fn migrate_is_idempotent(l: Arc<dyn LedgerOps>) {
    l.migrate().await.unwrap();
    l.migrate().await.unwrap();
}

/// Generates one `#[tokio::test]` per contract case for a backend constructor.
#[macro_export]
macro_rules! ledger_contract_tests {
    ($make:path) => {
        $crate::ledger_contract_tests!(@each $make;
            new_order_is_claimed_then_sent_then_acknowledged,
            live_lease_is_in_flight_and_expired_lease_is_taken_over,
            stale_claim_token_cannot_overwrite_a_newer_claim,
            different_payload_for_a_known_order_is_a_conflict,
            failed_and_released_orders_are_claimable_again_at_once,
            rejected_orders_stay_terminal_with_their_reason,
            batch_results_come_back_in_input_order,
            stats_count_by_priority_and_status,
            unknown_order_has_no_state,
            expired_leases_and_old_failures_are_stuck_and_can_be_abandoned,
            only_abandoned_or_rejected_orders_are_released_for_retry,
            a_retried_record_counts_as_applied_and_changes_nothing,
            a_released_claim_gives_its_attempt_back_once,
            a_parked_abandoned_order_no_longer_counts_as_unconfirmed_until_retried,
            retention_removes_old_payloads_in_bounded_steps_and_deletes_finished_rows_past_the_horizon,
            a_takeover_says_how_long_ago_the_holders_lease_ended,
            a_takeover_that_fails_or_is_deferred_stays_a_takeover_for_the_next_claim,
            a_late_delivery_never_overwrites_a_bounce_and_nothing_overwrites_a_complaint,
            redelivered_and_out_of_order_events_converge_on_the_same_state,
            events_for_unknown_orders_are_counted_and_do_not_disturb_the_batch,
            an_untagged_event_finds_its_order_by_the_stored_ses_message_id,
            the_send_event_is_kept_with_its_claim_token_and_the_latest_one_wins,
            a_claim_and_a_takeover_find_the_send_event_of_an_earlier_claims_mail,
            delivery_stats_count_each_state_per_priority_and_the_bounce_rate,
            retention_keeps_the_payload_of_an_order_sent_within_the_retention_period,
            of_two_events_of_equal_rank_or_time_the_first_applied_stays,
            a_second_mail_of_a_sent_order_is_recorded_and_reported_once_however_often_its_events_come,
            two_mails_of_an_unrecorded_order_are_one_duplicate_whatever_order_their_events_come_in,
            a_lost_send_event_leaves_the_delivery_as_the_witness_and_the_duplicate_is_still_counted,
            a_recorded_mail_after_another_mails_event_is_one_extra_mail_even_with_no_event_of_its_own,
            a_bounce_tagged_with_one_order_but_carrying_anothers_message_id_marks_neither,
            a_send_event_tagged_with_one_order_but_carrying_anothers_message_id_is_no_witness,
            an_untagged_event_for_a_message_id_two_rows_share_is_applied_to_neither_and_fails_nothing,
            a_message_id_maps_to_at_most_one_order,
            migrate_is_idempotent);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, ledger) = $make().await;
                super::$case(ledger).await;
            }
        )*
    };
}

mod sqlite {
    use super::*;

    async fn make() -> (support::LocalBackends, Arc<dyn LedgerOps>) {
        let b = support::LocalBackends::new().await;
        let l: Arc<dyn LedgerOps> = b.ledger.clone();
        (b, l)
    }

    ledger_contract_tests!(make);

    /// SQLite applies one transaction at a time: the two invocations cannot meet, nothing to hold.
    #[tokio::test]
    async fn two_invocations_applying_two_mails_of_one_order_at_once_count_one_extra_mail() {
        let (_guard, l) = make().await;
        super::two_invocations_applying_two_mails_of_one_order_at_once_count_one_extra_mail(l, |_| async {
            let release: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send> =
                Box::new(|| Box::pin(async {}));
            release
        })
        .await;
    }

    #[tokio::test]
    async fn stats_say_the_same_from_the_hourly_summary_as_from_the_sends() {
        let b = support::LocalBackends::new().await;
        let db = Db::Sqlite(b.dir.path().join("ledger.db"));
        super::stats_say_the_same_from_the_hourly_summary_as_from_the_sends(b.ledger.clone(), db).await;
    }

    #[tokio::test]
    async fn the_status_view_and_status_say_the_same_customer_status() {
        let b = support::LocalBackends::new().await;
        let db = Db::Sqlite(b.dir.path().join("ledger.db"));
        super::the_status_view_and_status_say_the_same_customer_status(b.ledger.clone(), db).await;
    }
}

mod data_api {
    use super::*;

    /// The Data API ledger over the real SDK, against rds-data-local in front of PostgreSQL.
    async fn make() -> (support::services::Services, Arc<dyn LedgerOps>) {
        let s = support::services::Services::start().await;
        let l: Arc<dyn LedgerOps> = s.ledger().await;
        (s, l)
    }

    ledger_contract_tests!(make);

    /// The order's row is held (`FOR UPDATE`) until both statements wait for it: each has taken
    /// its snapshot by then, so a decision made from the snapshot alone counts no extra mail.
    #[tokio::test]
    async fn two_invocations_applying_two_mails_of_one_order_at_once_count_one_extra_mail() {
        let (s, l) = make().await;
        let url = s.database_url.clone();
        super::two_invocations_applying_two_mails_of_one_order_at_once_count_one_extra_mail(l, move |order| {
            let url = url.clone();
            async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute("BEGIN").await.unwrap();
                client
                    .execute("SELECT 1 FROM order_confirmations WHERE order_id = $1 FOR UPDATE", &[&order])
                    .await
                    .unwrap();
                let release: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send> =
                    Box::new(move || {
                        Box::pin(async move {
                            // Both statements wait for the row (each began, snapshot taken).
                            for _ in 0..200 {
                                let waiting: i64 = client
                                    .query_one(
                                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                                        &[],
                                    )
                                    .await
                                    .unwrap()
                                    .get(0);
                                if waiting >= 2 {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(25)).await;
                            }
                            client.batch_execute("COMMIT").await.unwrap();
                        })
                    });
                release
            }
        })
        .await;
    }

    #[tokio::test]
    async fn stats_say_the_same_from_the_hourly_summary_as_from_the_sends() {
        let s = support::services::Services::start().await;
        let db = Db::Postgres(s.database_url.clone());
        super::stats_say_the_same_from_the_hourly_summary_as_from_the_sends(s.ledger().await, db).await;
    }

    #[tokio::test]
    async fn the_status_view_and_status_say_the_same_customer_status() {
        let s = support::services::Services::start().await;
        let db = Db::Postgres(s.database_url.clone());
        super::the_status_view_and_status_say_the_same_customer_status(s.ledger().await, db).await;
    }

    /// `stats` reads only the last 24 hours of sends: an order sent 25 hours ago is no longer
    /// counted as `sent` nor in the percentiles, while refused and unfinished rows are counted
    /// whatever their age.
    #[tokio::test]
    async fn stats_count_sends_of_the_last_24_hours_and_every_unfinished_row() {
        let s = support::services::Services::start().await;
        let l = s.ledger().await;
        let ids = ["W1", "W2", "W3"];
        let reqs: Vec<_> = ids.iter().map(|id| req(id, "h", Priority::High)).collect();
        let tokens: Vec<_> = l.claim(&reqs, LEASE).await.unwrap().iter().map(token).collect();
        let outcomes = [
            Outcome::Sent { message_id: "m-1".into() },
            Outcome::Sent { message_id: "m-2".into() },
            Outcome::Rejected { reason: "refused".into() },
        ];
        let recordings: Vec<_> = ids.iter().zip(tokens).zip(outcomes).map(|((id, t), o)| rec(id, t, o)).collect();
        l.record(&recordings).await.unwrap();
        let (client, conn) = tokio_postgres::connect(&s.database_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(
                "UPDATE order_confirmations SET first_seen_at = first_seen_at - interval '25 hours', \
                 sent_at = sent_at - interval '25 hours' WHERE order_id IN ('W1', 'W3')",
            )
            .await
            .unwrap();
        let stats = l.stats().await.unwrap();
        let high = stats.priorities.iter().find(|p| p.priority == Priority::High).unwrap();
        assert_eq!(high.by_status[&Status::Sent], 1, "W1 was sent 25 hours ago");
        assert_eq!(high.by_status[&Status::Rejected], 1, "a refused order counts whatever its age");
        assert_eq!(high.sent_last_hour, 1);
        let p50 = high.time_to_send_seconds.p50.expect("W2's time to confirm");
        assert!(p50 < 60.0, "only W2, confirmed at once, is in the percentiles: {p50}");
    }

    /// Migration 0009 brings the known mails written before it under the one-first-mail rule:
    /// two first mails of one order (two statements that met), a recorded mail counted extra
    /// beside an extra one (the old rule counted both), and a recorded mail never added (an event
    /// of another mail came first) each leave one extra mail per order, and the unique index is
    /// created on them.
    #[tokio::test]
    async fn migration_0009_leaves_one_first_mail_per_order_on_the_mails_known_before_it() {
        let s = support::services::Services::start().await;
        let (client, conn) = tokio_postgres::connect(&s.database_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        // The schema as the ledger migrated it up to 0008, recorded as `migrate` records it.
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .unwrap();
        for file in files.iter().filter(|f| f.file_name().unwrap().to_str().unwrap() < "0009") {
            client.batch_execute(&std::fs::read_to_string(file).unwrap()).await.unwrap();
            let version = file.file_stem().unwrap().to_str().unwrap();
            client.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await.unwrap();
        }
        client
            .batch_execute(
                "INSERT INTO order_confirmations (order_id, payload_sha256, priority, payload, status, ses_message_id, sent_at) \
                 VALUES ('LA', 'h', 'normal', '{}', 'sending', NULL, NULL), \
                        ('LB', 'h', 'normal', '{}', 'sent', 'b-rec', now() - interval '1 minute'), \
                        ('LC', 'h', 'high', '{}', 'sent', 'c-rec', now() - interval '1 minute'); \
                 INSERT INTO ses_mails (ses_message_id, order_id, seen_at, duplicate) VALUES \
                        ('a1', 'LA', now() - interval '3 minutes', false), ('a2', 'LA', now() - interval '3 minutes', false), \
                        ('b-x', 'LB', now() - interval '2 minutes', true), ('b-rec', 'LB', now(), true), \
                        ('c-x', 'LC', now() - interval '2 minutes', false);",
            )
            .await
            .unwrap();
        let l = s.ledger().await; // migrates 0009 (and records it), or panics
        for (order, extra) in [("LA", vec!["a2"]), ("LB", vec!["b-x"]), ("LC", vec!["c-x"])] {
            let st = l.order_state(&OrderId::parse(order).unwrap()).await.unwrap().unwrap();
            assert_eq!(st.delivery.duplicate_message_ids, extra, "{order}");
            let counted: i64 = client
                .query_one("SELECT count(*) FROM ses_mails WHERE order_id = $1 AND duplicate", &[&order])
                .await
                .unwrap()
                .get(0);
            assert_eq!(counted, 1, "{order}: one extra mail");
        }
        // And the rule holds from here: a late event of LC's extra mail, or LB's, counts nothing more.
        let m = l
            .apply_delivery_events(&[
                ev(Some("LC"), "c-rec", state(DeliveryState::Delivered), 1),
                ev(Some("LB"), "b-x", state(DeliveryState::Delivered), 1),
            ])
            .await
            .unwrap();
        assert_eq!(m.iter().map(placed).collect::<Vec<_>>(), vec![Some(("LC", false)), Some(("LB", false))]);
    }

    /// Migration 0001 is safe to re-run: a database whose schema was applied by hand (the README
    /// used to say so) before `schema_migrations` existed is adopted by `migrate`, not an error.
    #[tokio::test]
    async fn migrate_adopts_a_schema_applied_by_hand() {
        let s = support::services::Services::start().await;
        let (client, conn) = tokio_postgres::connect(&s.database_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        for file in ["0001_order_confirmations.sql", "0002_order_confirmation_status.sql"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres").join(file);
            client.batch_execute(&std::fs::read_to_string(path).unwrap()).await.unwrap();
        }
        let l = s.ledger().await; // migrates: panics if a migration fails
        let c = l.claim(&[req("H1", "h", Priority::High)], LEASE).await.unwrap();
        assert!(matches!(c[0], Claim::Claimed { .. }));
        let st = l.order_state(&OrderId::parse("H1").unwrap()).await.unwrap().unwrap();
        assert_eq!(st.parked_at, None, "and the later migrations applied on top");
    }
}
