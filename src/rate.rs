//! The send-rate limiter: a token bucket sized to this instance's share of the SES sending quota.
//!
//! - **Work-conserving reserve.** A share of the bucket is kept for high-priority orders only
//!   while a high-priority order is waiting for a slot in this instance; when none is, normal
//!   orders use the whole rate. The reserve protects high orders when they exist and costs nothing
//!   when they do not.
//! - **Adaptive across instances.** Instances share no memory, so the rate adapts to SES's own
//!   answers (additive increase, multiplicative decrease): while the instance sends (a send waits
//!   for a slot, or one took a slot within the last second), the rate climbs with time (up to the
//!   account's whole rate, when configured); every throttling answer cuts it (normal-priority
//!   sends cut it harder than high ones, so under contention the instances sending high orders
//!   keep the larger part of the quota). An instance alone on an idle account climbs to the full
//!   quota; instances competing converge to fair parts of it. An instance that has sent nothing
//!   for a second does not climb: its rate is not what holds it back.
//!
//! Uses tokio's clock, so tests can pause it. `src/rate/sim.rs` runs fleets of limiters against a
//! simulated quota.

use crate::order::Priority;
use std::sync::{Mutex, MutexGuard};
use tokio::time::{Duration, Instant};

/// What the pipeline needs from a limiter: a slot before each send, and SES's answer after it.
#[async_trait::async_trait]
pub trait SendGate: Send + Sync {
    /// Takes one send slot for `priority`, waiting at most until `give_up_at`. False: no slot in
    /// time; the caller defers the order.
    async fn acquire(&self, priority: Priority, give_up_at: Instant) -> bool;

    /// SES accepted (`throttled == false`) or throttled a send that held a slot.
    async fn feedback(&self, priority: Priority, throttled: bool);

    /// How many sends this gate can grant within `horizon` from now if sends wait for it all that
    /// time (the slots in hand plus the refill, at the rate as it climbs); `None`: no limit.
    /// `consume` receives no more than this, so it never holds orders it cannot send soon
    /// (docs/design.md, "Deferral and the send rate").
    async fn sendable_within(&self, _horizon: Duration) -> Option<usize> {
        None
    }
}

#[derive(Debug)]
pub struct SendRateLimiter {
    /// The configured share (where the rate starts, a quarter of it the floor) and the
    /// account's whole rate (the highest it climbs to while SES accepts).
    span: Span,
    /// Share of the bucket (0.0-1.0) kept for high priority while one is waiting.
    high_reserve: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
    rate: f64,
    /// Sends waiting for a slot in this instance now, and how many of them are high priority.
    waiting: usize,
    high_waiting: usize,
    /// When SES last throttled this instance: its climb is additive for [`QUIET`] after that.
    throttled_at: Option<Instant>,
    /// When a send last took a slot: the rate climbs for [`BETWEEN_BATCHES`] after that.
    granted_at: Option<Instant>,
}

impl Bucket {
    /// The bucket holds one second of sends, so a burst cannot exceed the rate SES measures.
    fn capacity(&self) -> f64 {
        self.rate.max(1.0)
    }

    /// Brings the bucket to `now`: the rate climbs over the time this instance was sending (never
    /// past `ceiling`), and the tokens fill at the rate of that time.
    fn refill(&mut self, now: Instant, span: Span) {
        let before = self.rate;
        // A climb over no time (nothing sent lately) leaves the rate as it is.
        let sending_until = match self.granted_at {
            _ if self.waiting > 0 => now,
            Some(granted) => now.min(granted + BETWEEN_BATCHES),
            None => self.refilled_at,
        };
        self.climb(self.refilled_at, sending_until, span);
        let elapsed = secs_between(self.refilled_at, now);
        self.tokens = (self.tokens + elapsed * (before + self.rate) / 2.0).min(self.capacity());
        self.refilled_at = now;
    }

    /// The rate's climb from `from` to `to` while the instance sends (none when `to` is not after
    /// `from`): additive until the quiet spell after a throttle, doubling after it (or from the
    /// start, before any throttle). The climb goes on in the second after a throttle, while the
    /// throttled send waits for SES's next second: SES throttles some sends that are not over the
    /// quota (the soak's 2 %), and with the climb held for that second, four instances at 12.5 of
    /// 50 mails/s, each throttled every 2 to 4 s, spent a third of their time held, sat at 42 to
    /// 45 mails/s together and drained the soak's `peak` at 95.5 and 98.2 % of the quota (98.4 and
    /// 99.4 % before the climb in time).
    fn climb(&mut self, from: Instant, to: Instant, span: Span) {
        let quiet_begins = self.throttled_at.map_or(from, |at| at + QUIET);
        let additive = secs_between(from, to.min(quiet_begins));
        let doubling = secs_between(from.max(quiet_begins), to);
        let per_second = (CLIMB * span.ceiling).max(CLIMB_SHARE * span.share);
        let climb = per_second * if self.high_waiting > 0 { 1.0 } else { CLIMB_NORMAL };
        self.rate = ((self.rate + climb * additive) * SLOW_START.powf(doubling)).min(span.ceiling);
    }

    /// The sends this bucket grants within `horizon` from its last refill if sends wait all that
    /// time: the slots in hand and the refill at the rate as it climbs meanwhile.
    fn sendable_within(&self, horizon: Duration, span: Span) -> f64 {
        const STEPS: u32 = 30;
        let mut ahead = Bucket { waiting: self.waiting.max(1), ..*self };
        let mut sends = self.tokens.max(0.0);
        let step = horizon / STEPS;
        for _ in 0..STEPS {
            let (before, from) = (ahead.rate, ahead.refilled_at);
            ahead.climb(from, from + step, span);
            ahead.refilled_at = from + step;
            sends += step.as_secs_f64() * (before + ahead.rate) / 2.0;
        }
        sends
    }
}

fn secs_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

/// The rates a bucket moves between: the configured share and the account's whole rate.
#[derive(Debug, Clone, Copy)]
struct Span {
    share: f64,
    ceiling: f64,
}

/// Counts a send as waiting for a slot while it sleeps, and stops counting when the wait ends or
/// is dropped (a cancelled batch must not leave the rate climbing).
struct Waiting<'a> {
    limiter: &'a SendRateLimiter,
    high: bool,
}

impl<'a> Waiting<'a> {
    fn start(limiter: &'a SendRateLimiter, high: bool) -> Self {
        let mut b = limiter.bucket();
        b.refill(Instant::now(), limiter.span);
        b.waiting += 1;
        b.high_waiting += usize::from(high);
        Self { limiter, high }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut b = self.limiter.bucket();
        b.refill(Instant::now(), self.limiter.span);
        b.waiting -= 1;
        b.high_waiting -= usize::from(self.high);
    }
}

/// Multiplicative cut on a throttling answer, per priority of the throttled send.
const CUT_NORMAL: f64 = 0.6;
const CUT_HIGH: f64 = 0.85;
/// The rate never drops below this fraction of the share (an instance always makes progress).
const FLOOR: f64 = 0.25;
/// While a send waits for a slot and SES has throttled this instance within [`QUIET`], the rate
/// climbs by this fraction of the account's rate per second, or by [`CLIMB_SHARE`] if that is
/// more (additive increase, in time). The
/// climb is in time, not per accepted send: a climb per send is a climb at the pace of the rate
/// itself, so an instance cut to 0.07 mails/s waited seconds between the sends that were to raise
/// it, and one at the whole quota gained fastest; rates never converged to fair parts, and in the
/// soak's Lambda topology one normal instance held 5 mails/s while the other three sat at their
/// floor, throttled once a second. A climb the same for every busy instance is what AIMD needs to
/// converge: the instances above their fair part are cut by more than the others, the others gain
/// as fast. 5 % of the account's rate per second takes a fleet of four from a cut back to the
/// quota within seconds.
const CLIMB: f64 = 0.05;
/// ...and by at least this many shares per second: a whole fleet of `SES_SENDERS` instances,
/// climbing together, adds the account's rate each second. At a large share the 5 % of the
/// account's rate alone was too slow to ride out SES's throttles that are not the quota's: four
/// instances at 12.5 of 50 mails/s with 2 % of their sends throttled at random were each cut every
/// few seconds and took 4 s to climb back, and the soak's `peak` drained at 87 % of the quota
/// (99 % with the climb per send; in the simulation, with the climb then held a second after a
/// throttle, 97.8 to 100.9 % with half a share per second and 99.8 to 100.5 % with one).
const CLIMB_SHARE: f64 = 1.0;
/// While only normal orders wait, the climb is this fraction of [`CLIMB`]: high and normal
/// instances meet at SES's quota, and the high ones (cut less, climbing faster) keep the larger
/// part of it. At the full climb the normal mapping's four instances took half the quota while
/// the high queue drained (its last order later than before the change, in the simulation of
/// `src/rate/sim.rs`).
const CLIMB_NORMAL: f64 = 0.5;
/// Until SES first throttles an instance, and again after [`QUIET`] without a throttle, the rate
/// doubles per second while a send waits, as TCP's slow start does in round trips: an instance
/// does not know how many others are sending, and under Lambda only the normal mapping's four
/// instances may have work, at 4 x 5/17 = 24 % of a 5 mails/s quota.
const SLOW_START: f64 = 2.0;
/// A throttle ends the slow start for this long. When it passes without another, SES has had room
/// for a while, and the instances that shared it may have stopped: under Lambda the high
/// mapping's ten instances finish their queue while the normal four were cut. 5 s against 10 s,
/// in the simulation's first version of the climb in time (before the share's part):
/// 98.2 to 99.4 % against 97.3 to 98.6 % of the quota for the Lambda topology's all-normal mix in
/// the simulation, for 40 % more calls over the quota (136 to 140 against 94 to 107 per 600
/// mails).
const QUIET: Duration = Duration::from_secs(5);
/// After a send takes a slot, the rate goes on climbing this long, as it does while a send waits: a
/// worker sends its batch, then records it, deletes it and receives the next, and nothing waits
/// meanwhile (half a second to a second in the soak's debug builds). A climb only while a send
/// waits held the rate at the worker's own pace, so each of SES's throttles that are not the
/// quota's cut it below that pace, and the worker's next batch waited for it: four workers at 12.5
/// of 50 mails/s, each able to send about 13 a second, with 2 % of sends throttled at random,
/// drained at 91 to 98 % of the quota in the simulation (`make soak`'s `peak`: 96.4 to 98.8 %,
/// against 98.4 and 99.4 % before the climb in time); climbing a second past the last slot, 100.2
/// to 100.9 % (`peak`: 99.6, 97.4 and 98.8 %, its dips the rig's throughput, BENCHMARKS.md). An
/// instance whose work has ended stops climbing a second later.
const BETWEEN_BATCHES: Duration = Duration::from_secs(1);
/// The longest a waiting send sleeps before it looks at the bucket again.
const RECHECK: Duration = Duration::from_millis(100);

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
            span: Span { share, ceiling: ceiling.max(share) },
            high_reserve: high_reserve.clamp(0.0, 0.9),
            state: Mutex::new(Bucket {
                tokens: share.max(1.0) * level.clamp(0.0, 1.0),
                refilled_at: Instant::now(),
                rate: share,
                waiting: 0,
                high_waiting: 0,
                throttled_at: None,
                granted_at: None,
            }),
        }
    }

    /// The current rate in sends per second.
    pub async fn rate(&self) -> f64 {
        let mut b = self.bucket();
        b.refill(Instant::now(), self.span);
        b.rate
    }

    /// The bucket, locked. No lock is held across an await, and none can be poisoned by a panic
    /// between consistent states, so a poisoned lock's bucket is still sound.
    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl SendGate for SendRateLimiter {
    async fn acquire(&self, priority: Priority, give_up_at: Instant) -> bool {
        let high = priority == Priority::High;
        let _waiting = Waiting::start(self, high);
        loop {
            let wait = {
                let mut b = self.bucket();
                let now = Instant::now();
                b.refill(now, self.span);
                // Normal orders leave the reserve in the bucket only while a high one waits.
                let reserve = if !high && b.high_waiting > 0 {
                    (b.capacity() * self.high_reserve).min(b.capacity() - 1.0).max(0.0)
                } else {
                    0.0
                };
                let threshold = 1.0 + reserve;
                if b.tokens >= threshold {
                    b.tokens -= 1.0;
                    b.granted_at = Some(now);
                    return true;
                }
                // Every wait re-checks at least every 100 ms: the reserve a normal order waits
                // behind disappears as soon as the high orders have their slots, and the rate
                // climbs while sends wait, so the slot comes sooner than this rate says.
                // At least a millisecond: a float remainder of a token (1e-12) would round the
                // wait down to nothing, and a sleep of nothing never lets the bucket refill (it
                // spun forever on tokio's paused clock).
                let wait = Duration::from_secs_f64((threshold - b.tokens) / b.rate).max(Duration::from_millis(1));
                wait.min(RECHECK)
            };
            if Instant::now() + wait > give_up_at {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn feedback(&self, priority: Priority, throttled: bool) {
        let mut b = self.bucket();
        let now = Instant::now();
        b.refill(now, self.span);
        if throttled {
            let cut = if priority == Priority::High { CUT_HIGH } else { CUT_NORMAL };
            b.rate = (b.rate * cut).max(self.span.share * FLOOR);
            b.throttled_at = Some(now);
            // SES said the second is full: no burst right after, and no slot before SES's next
            // second. Below one send per second that is not a whole empty bucket: at a cut rate of
            // 0.125/s an empty bucket would keep the throttled order (retried at the next slot)
            // waiting 8 s, long enough to run out of its batch's time and be deferred; at the end
            // of a backlog that order is the tail, while other instances are idle.
            b.tokens = b.tokens.min(0.0).max(1.0 - b.rate);
        }
        let capacity = b.capacity();
        b.tokens = b.tokens.min(capacity);
        tracing::debug!(rate = b.rate, throttled, "send rate");
    }

    async fn sendable_within(&self, horizon: Duration) -> Option<usize> {
        let mut b = self.bucket();
        b.refill(Instant::now(), self.span);
        let n = b.sendable_within(horizon, self.span);
        Some(n.floor().max(0.0).min(usize::MAX as f64) as usize)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sim;
