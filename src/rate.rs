//! The send-rate limiter: a token bucket sized to this instance's share of the SES sending quota.
//!
//! - **Work-conserving reserve.** A share of the bucket is kept for high-priority orders only
//!   while a high-priority order is waiting for a slot in this instance; when none is, normal
//!   orders use the whole rate. The reserve protects high orders when they exist and costs nothing
//!   when they do not.
//! - **Adaptive across instances.** Instances share no memory, so the rate adapts to SES's own
//!   answers, as the SDK's adaptive retry mode does: every accepted send raises this instance's
//!   rate a little (up to the account's whole rate, when configured), every throttling answer cuts
//!   it (normal-priority sends cut it harder than high ones, so under contention the instances
//!   sending high orders keep the larger part of the quota). An instance alone on an idle account
//!   climbs to the full quota; instances competing settle around their fair part of it.
//!
//! Uses tokio's clock, so tests can pause it.

use crate::order::Priority;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

/// What the pipeline needs from a limiter: a slot before each send, and SES's answer after it.
#[async_trait::async_trait]
pub trait SendGate: Send + Sync {
    /// Takes one send slot for `priority`, waiting at most until `give_up_at`. False: no slot in
    /// time; the caller defers the order.
    async fn acquire(&self, priority: Priority, give_up_at: Instant) -> bool;

    /// SES accepted (`throttled == false`) or throttled a send that held a slot.
    async fn feedback(&self, priority: Priority, throttled: bool);

    /// How many sends this gate can grant within `horizon` from now at its current rate (the
    /// slots in hand plus the refill); `None`: no limit. `consume` receives no more than this, so
    /// it never holds orders it cannot send soon (docs/design.md, "Deferral and the send rate").
    async fn sendable_within(&self, _horizon: Duration) -> Option<usize> {
        None
    }
}

#[derive(Debug)]
pub struct SendRateLimiter {
    /// The configured share: where the rate starts, and the floor it returns to quickly.
    share: f64,
    /// The highest rate this instance may climb to while SES accepts (the account's rate).
    ceiling: f64,
    /// Share of the bucket (0.0-1.0) kept for high priority while one is waiting.
    high_reserve: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
    rate: f64,
    /// High-priority orders waiting for a slot in this instance now.
    high_waiting: usize,
    /// When SES last throttled this instance: its climb is additive for [`QUIET`] after that.
    throttled_at: Option<Instant>,
}

impl Bucket {
    /// The bucket holds one second of sends, so a burst cannot exceed the rate SES measures.
    fn capacity(&self) -> f64 {
        self.rate.max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity());
        self.refilled_at = now;
    }
}

/// Multiplicative cut on a throttling answer, per priority of the throttled send.
const CUT_NORMAL: f64 = 0.6;
const CUT_HIGH: f64 = 0.85;
/// The rate never drops below this fraction of the share (an instance always makes progress).
const FLOOR: f64 = 0.25;
/// Each accepted send raises the rate by this fraction of the share (additive increase)...
const STEP: f64 = 0.05;
/// ...and by at least this many mails per second. A step proportional to the share alone makes the
/// climb's pace proportional to the share too (an instance sending flat out at rate r gains
/// `STEP x share x r` per second): at a share of 12.5 mails/s it doubles in about a second, at the
/// template's 5/17 = 0.29 mails/s of a 5 mails/s account in about 47 s. Under Lambda the instances
/// that have work are often fewer than SES_SENDERS (the normal mapping's four, alone once the high
/// queue is empty), so the quota is used only as fast as they climb: a backlog of 600 drained at
/// 56 % of the quota. With this floor a busy instance doubles its rate within 7 s (`MIN_STEP x r`
/// per second) whatever its share; above 2 mails/s of share the 5 % step is the larger and nothing
/// changes.
const MIN_STEP: f64 = 0.1;
/// Below the share, each accepted send raises the rate by this fraction of it: the share is this
/// instance's fair part when every instance is busy, so under it (after a throttle cut) the quota
/// goes unused unless SES says otherwise, and four accepted sends are back at the share. At a share
/// of 0.5 mails/s the probing step alone (0.025/s per send) took a fleet of ten cut by a burst of
/// throttles about half a minute to climb back to the quota.
const RECOVER: f64 = 0.25;
/// Until SES first throttles an instance, each accepted send raises its rate by this fraction of
/// the rate itself: it doubles, as TCP's slow start does. An instance does not know how many
/// others are sending, and at the template's 0.29 mails/s share the additive climb alone took
/// 15 s to reach a quarter of a 5 mails/s quota, while under Lambda only the normal mapping's four
/// instances had work (the quota's first 10 s 44 % used; 74 % with a step of half the rate). The
/// first throttle ends it; the cut and the additive climb take over until [`QUIET`] passes
/// without another.
const SLOW_START: f64 = 1.0;
/// After this long without a throttle, the slow start resumes: SES has had room for a while, and
/// the instances that shared it may have stopped. Under Lambda the high mapping's ten instances
/// finish their queue while the normal four are cut to 0.1 to 0.4 mails/s; at 0.1 mails/s per send
/// those took 10 to 15 s to take up the quota again (one 10 s window 60 to 80 % used). With 5 s
/// instances sharing the quota resumed it often enough to double the throttles of ten `consume`
/// workers at 0.5 mails/s each (438 calls over the quota for 600 mails, against 286).
const QUIET: Duration = Duration::from_secs(10);

impl SendRateLimiter {
    /// `share` sends per second; `ceiling` the account's whole rate (at least `share`);
    /// `high_reserve` the share of the bucket (0.0-1.0) kept for high priority.
    ///
    /// The bucket starts at a random level between empty and full: instances started together
    /// (a deployment, a scale-out) would otherwise all send their first second at once, and at a
    /// share under one mail per second the bucket holds a whole send, so ten instances sharing
    /// 5 mails/s burst ten sends into SES's second, half of them throttled, each throttle cutting
    /// a rate. Spread, their first sends arrive at the quota's own pace.
    pub fn new(share: f64, ceiling: f64, high_reserve: f64) -> Self {
        Self::starting_at(share, ceiling, high_reserve, rand::random::<f64>())
    }

    /// [`Self::new`] with the bucket starting `level` (0.0 empty, 1.0 full) full: a test that
    /// needs to know what is in hand.
    pub fn starting_at(share: f64, ceiling: f64, high_reserve: f64, level: f64) -> Self {
        let share = share.max(0.001);
        Self {
            share,
            ceiling: ceiling.max(share),
            high_reserve: high_reserve.clamp(0.0, 0.9),
            state: Mutex::new(Bucket {
                tokens: share.max(1.0) * level.clamp(0.0, 1.0),
                refilled_at: Instant::now(),
                rate: share,
                high_waiting: 0,
                throttled_at: None,
            }),
        }
    }

    /// The current rate in sends per second.
    pub async fn rate(&self) -> f64 {
        self.state.lock().await.rate
    }
}

#[async_trait::async_trait]
impl SendGate for SendRateLimiter {
    async fn acquire(&self, priority: Priority, give_up_at: Instant) -> bool {
        let high = priority == Priority::High;
        if high {
            self.state.lock().await.high_waiting += 1;
        }
        let granted = loop {
            let wait = {
                let mut b = self.state.lock().await;
                let now = Instant::now();
                b.refill(now);
                // Normal orders leave the reserve in the bucket only while a high one waits.
                let reserve = if !high && b.high_waiting > 0 {
                    (b.capacity() * self.high_reserve).min(b.capacity() - 1.0).max(0.0)
                } else {
                    0.0
                };
                let threshold = 1.0 + reserve;
                if b.tokens >= threshold {
                    b.tokens -= 1.0;
                    break true;
                }
                // A normal order re-checks at least every 100 ms: the reserve it waits behind
                // disappears as soon as the high orders have their slots.
                // At least a millisecond: a float remainder of a token (1e-12) would round the
                // wait down to nothing, and a sleep of nothing never lets the bucket refill (it
                // spun forever on tokio's paused clock).
                let wait = Duration::from_secs_f64((threshold - b.tokens) / b.rate).max(Duration::from_millis(1));
                if high { wait } else { wait.min(Duration::from_millis(100)) }
            };
            if Instant::now() + wait > give_up_at {
                break false;
            }
            tokio::time::sleep(wait).await;
        };
        if high {
            self.state.lock().await.high_waiting -= 1;
        }
        granted
    }

    async fn feedback(&self, priority: Priority, throttled: bool) {
        let mut b = self.state.lock().await;
        b.refill(Instant::now());
        if throttled {
            let cut = if priority == Priority::High { CUT_HIGH } else { CUT_NORMAL };
            b.rate = (b.rate * cut).max(self.share * FLOOR);
            b.throttled_at = Some(Instant::now());
            // SES said the second is full: no burst right after, and no slot before SES's next
            // second. Below one send per second that is not a whole empty bucket: at a cut rate of
            // 0.125/s an empty bucket would keep the throttled order (retried at the next slot)
            // waiting 8 s, long enough to run out of its batch's time and be deferred; at the end
            // of a backlog that order is the tail, while other instances are idle.
            b.tokens = b.tokens.min(0.0).max(1.0 - b.rate);
        } else {
            let step = if b.rate < self.share { RECOVER } else { STEP };
            let quiet = b.throttled_at.is_none_or(|at| at.elapsed() >= QUIET);
            let slow_start = if quiet { b.rate * SLOW_START } else { 0.0 };
            b.rate = (b.rate + (self.share * step).max(MIN_STEP).max(slow_start)).min(self.ceiling);
        }
        let capacity = b.capacity();
        b.tokens = b.tokens.min(capacity);
        tracing::debug!(rate = b.rate, throttled, "send rate");
    }

    async fn sendable_within(&self, horizon: Duration) -> Option<usize> {
        let mut b = self.state.lock().await;
        b.refill(Instant::now());
        let n = b.tokens.max(0.0) + b.rate * horizon.as_secs_f64();
        Some(n.floor().max(0.0).min(usize::MAX as f64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn normal_orders_leave_the_reserve_only_while_a_high_order_waits() {
        let limiter = std::sync::Arc::new(SendRateLimiter::starting_at(10.0, 10.0, 0.3, 1.0));
        let now = Instant::now();
        let mut normal = 0;
        while limiter.acquire(Priority::Normal, now).await {
            normal += 1;
        }
        assert_eq!(normal, 10, "no high order waits: normal orders use the whole bucket");

        // The bucket is empty. One normal order, then five high ones, start waiting together:
        // every high order gets its slot before the normal one does.
        let start = Instant::now();
        let wait = |p: Priority| {
            let l = limiter.clone();
            tokio::spawn(async move {
                assert!(l.acquire(p, start + Duration::from_secs(5)).await);
                Instant::now()
            })
        };
        let normal = wait(Priority::Normal);
        tokio::task::yield_now().await;
        let highs: Vec<_> = (0..5).map(|_| wait(Priority::High)).collect();
        let normal_at = normal.await.unwrap();
        for h in highs {
            assert!(h.await.unwrap() <= normal_at, "a high order waited behind a normal one");
        }
        assert!(normal_at < start + Duration::from_secs(1), "the normal order still went soon after");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_refill_until_the_give_up_time() {
        let limiter = SendRateLimiter::starting_at(2.0, 2.0, 0.0, 1.0);
        let start = Instant::now();
        for _ in 0..2 {
            assert!(limiter.acquire(Priority::Normal, start).await);
        }
        assert!(!limiter.acquire(Priority::Normal, start + Duration::from_millis(100)).await);
        assert!(limiter.acquire(Priority::High, start + Duration::from_secs(1)).await);
        assert!(Instant::now() >= start + Duration::from_millis(500), "waited for a token");
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_sends_climb_to_the_ceiling_and_throttling_cuts_normal_harder_than_high() {
        let limiter = SendRateLimiter::new(2.0, 10.0, 0.2);
        for _ in 0..200 {
            limiter.feedback(Priority::Normal, false).await;
        }
        assert_eq!(limiter.rate().await, 10.0, "an idle account's quota is used in full");
        limiter.feedback(Priority::Normal, true).await;
        assert!((limiter.rate().await - 6.0).abs() < 1e-9);
        let high = SendRateLimiter::new(2.0, 10.0, 0.2);
        for _ in 0..200 {
            high.feedback(Priority::High, false).await;
        }
        high.feedback(Priority::High, true).await;
        assert!(high.rate().await > limiter.rate().await, "a throttled high send keeps more of the rate");
        for _ in 0..50 {
            limiter.feedback(Priority::Normal, true).await;
        }
        assert_eq!(limiter.rate().await, 0.5, "never below a quarter of the share");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_cut_below_the_share_is_back_at_the_share_after_four_accepted_sends() {
        // Ten instances sharing 5 mails/s: a share of 0.5, cut by two throttles to 0.18.
        let limiter = SendRateLimiter::new(0.5, 5.0, 0.2);
        limiter.feedback(Priority::Normal, true).await;
        limiter.feedback(Priority::Normal, true).await;
        assert!(limiter.rate().await < 0.2);
        for _ in 0..4 {
            limiter.feedback(Priority::Normal, false).await;
        }
        let at_share = limiter.rate().await;
        assert!(at_share >= 0.5, "back at the share: {at_share}");
        // Above the share it only probes: 20 more sends add 2.0 (the floor of 0.1 mails/s each,
        // more than 5 % of this share).
        for _ in 0..20 {
            limiter.feedback(Priority::Normal, false).await;
        }
        assert!((limiter.rate().await - at_share - 2.0).abs() < 1e-9, "{}", limiter.rate().await);
        // A large share probes by 5 % of itself once throttled: 12.5 mails/s, cut to 7.5, back
        // above the share in two sends (25 % of it each), then 0.625 per send.
        let large = SendRateLimiter::new(12.5, 50.0, 0.2);
        large.feedback(Priority::Normal, true).await;
        for _ in 0..3 {
            large.feedback(Priority::Normal, false).await;
        }
        assert!((large.rate().await - 14.375).abs() < 1e-9, "{}", large.rate().await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_doubles_its_rate_per_accepted_send_until_throttled_and_again_after_a_quiet_spell() {
        // The template's share of a 5 mails/s account: 5 / 17.
        let share = 5.0 / 17.0;
        let limiter = SendRateLimiter::new(share, 5.0, 0.2);
        for _ in 0..3 {
            limiter.feedback(Priority::Normal, false).await;
        }
        let started = limiter.rate().await;
        assert!((started - share * 8.0).abs() < 1e-9, "{started}");
        // The first throttle ends the slow start: cut, then 0.1 mails/s per send (the floor).
        limiter.feedback(Priority::Normal, true).await;
        let cut = limiter.rate().await;
        assert!((cut - started * CUT_NORMAL).abs() < 1e-9, "{cut}");
        limiter.feedback(Priority::Normal, false).await;
        assert!((limiter.rate().await - cut - MIN_STEP).abs() < 1e-9, "{}", limiter.rate().await);
        // After a quiet spell with no throttle, it doubles again.
        tokio::time::advance(QUIET).await;
        let quiet = limiter.rate().await;
        limiter.feedback(Priority::Normal, false).await;
        assert!((limiter.rate().await - 2.0 * quiet).abs() < 1e-9, "{}", limiter.rate().await);
        // It never passes the account's whole rate.
        let capped = SendRateLimiter::new(share, 5.0, 0.2);
        for _ in 0..20 {
            capped.feedback(Priority::Normal, false).await;
        }
        assert_eq!(capped.rate().await, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn instances_started_together_do_not_all_send_at_once() {
        // Ten instances sharing 5 mails/s start together: SES's second holds five sends, so no
        // more than that may go out at the start (each bucket starts between empty and full).
        let now = Instant::now();
        let mut at_once = 0;
        for _ in 0..10 {
            let limiter = SendRateLimiter::new(0.5, 5.0, 0.2);
            at_once += usize::from(limiter.acquire(Priority::Normal, now).await);
        }
        assert!(at_once <= 5, "{at_once} of 10 instances sent in the first instant");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_throttle_the_next_slot_comes_within_a_second_and_the_cut_rate_paces_the_rest() {
        let limiter = SendRateLimiter::starting_at(0.5, 5.0, 0.2, 1.0);
        assert!(limiter.acquire(Priority::Normal, Instant::now()).await);
        limiter.feedback(Priority::Normal, true).await;
        let throttled_at = Instant::now();
        assert!(limiter.acquire(Priority::Normal, throttled_at + Duration::from_secs(5)).await);
        assert!(Instant::now() <= throttled_at + Duration::from_secs(1), "retried within SES's next second");
        assert!(Instant::now() > throttled_at, "not at once: SES said the second is full");
        // Then the cut rate (0.3/s) paces the following sends.
        let retried_at = Instant::now();
        assert!(limiter.acquire(Priority::Normal, retried_at + Duration::from_secs(5)).await);
        assert!(Instant::now() >= retried_at + Duration::from_secs(3), "paced at the cut rate");
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_share_alone_on_the_account_climbs_to_its_part_of_the_quota_within_half_a_minute() {
        // The template's fleet on a 5 mails/s account: SES_SENDERS 17, so a share of 0.29 mails/s.
        // When only the normal mapping's four instances have work, each must climb to a quarter of
        // the quota (1.25 mails/s) while it sends; at 5 % of the share per accepted send that took
        // about 100 s (a backlog of 600 drained at 79 % of the quota under Lambda's topology).
        let limiter = SendRateLimiter::starting_at(5.0 / 17.0, 5.0, 0.2, 0.0);
        let start = Instant::now();
        let mut sent = 0;
        while limiter.rate().await < 1.25 && Instant::now() < start + Duration::from_secs(120) {
            assert!(limiter.acquire(Priority::Normal, start + Duration::from_secs(120)).await);
            limiter.feedback(Priority::Normal, false).await;
            sent += 1;
        }
        let took = Instant::now() - start;
        assert!(took <= Duration::from_secs(30), "{took:?} and {sent} sends to reach 1.25 mails/s");
    }

    #[tokio::test(start_paused = true)]
    async fn sendable_within_counts_the_slots_in_hand_and_the_refill() {
        let limiter = SendRateLimiter::starting_at(0.5, 5.0, 0.2, 1.0);
        assert_eq!(limiter.sendable_within(Duration::from_secs(2)).await, Some(2), "one in hand, one refilled");
        assert!(limiter.acquire(Priority::Normal, Instant::now()).await);
        assert_eq!(limiter.sendable_within(Duration::from_secs(2)).await, Some(1));
        assert_eq!(limiter.sendable_within(Duration::ZERO).await, Some(0));
        let fast = SendRateLimiter::starting_at(12.5, 50.0, 0.2, 1.0);
        assert_eq!(fast.sendable_within(Duration::from_secs(2)).await, Some(37));
    }
}
