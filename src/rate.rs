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
mod tests;
