//! The send-rate limiter (DESIGN §4 step 3): a token bucket sized to this instance's share of the
//! SES sending quota, with a reserve that only high-priority orders may draw on. Normal orders
//! that cannot get a token before their give-up time are deferred (retried on a later delivery);
//! high-priority orders wait for the reserve instead. Uses tokio's clock, so tests can pause it.

use crate::order::Priority;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

#[derive(Debug)]
pub struct SendRateLimiter {
    rate_per_sec: f64,
    capacity: f64,
    /// Tokens normal orders must leave in the bucket.
    reserve: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl SendRateLimiter {
    /// `rate_per_sec` sends per second; `high_reserve` is the share of the bucket (0.0-1.0) kept
    /// for high priority. The bucket holds one second of sends, so a burst cannot exceed the quota
    /// SES measures per second.
    pub fn new(rate_per_sec: f64, high_reserve: f64) -> Self {
        let capacity = rate_per_sec.max(1.0);
        let reserve = (capacity * high_reserve.clamp(0.0, 1.0)).min(capacity - 1.0).max(0.0);
        Self {
            rate_per_sec,
            capacity,
            reserve,
            state: Mutex::new(Bucket { tokens: capacity, refilled_at: Instant::now() }),
        }
    }

    /// Takes one send slot for `priority`, waiting at most until `give_up_at`. Returns false when
    /// no slot could be had in time; the caller defers the order.
    pub async fn acquire(&self, priority: Priority, give_up_at: Instant) -> bool {
        let threshold = match priority {
            Priority::High => 1.0,
            Priority::Normal => 1.0 + self.reserve,
        };
        loop {
            let wait = {
                let mut b = self.state.lock().await;
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(b.refilled_at).as_secs_f64();
                b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.capacity);
                b.refilled_at = now;
                if b.tokens >= threshold {
                    b.tokens -= 1.0;
                    return true;
                }
                Duration::from_secs_f64((threshold - b.tokens) / self.rate_per_sec)
            };
            if Instant::now() + wait > give_up_at {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn normal_orders_cannot_use_the_high_reserve() {
        let limiter = SendRateLimiter::new(10.0, 0.3);
        let now = Instant::now();
        let mut normal = 0;
        while limiter.acquire(Priority::Normal, now).await {
            normal += 1;
        }
        assert_eq!(normal, 7, "normal stops at the 3-token reserve");
        let mut high = 0;
        while limiter.acquire(Priority::High, now).await {
            high += 1;
        }
        assert_eq!(high, 3, "high drains the reserve");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_refill_until_the_give_up_time() {
        let limiter = SendRateLimiter::new(2.0, 0.0);
        let start = Instant::now();
        for _ in 0..2 {
            assert!(limiter.acquire(Priority::Normal, start).await);
        }
        assert!(!limiter.acquire(Priority::Normal, start + Duration::from_millis(100)).await);
        assert!(limiter.acquire(Priority::High, start + Duration::from_secs(1)).await);
        assert!(Instant::now() >= start + Duration::from_millis(500), "waited for a token");
    }
}
