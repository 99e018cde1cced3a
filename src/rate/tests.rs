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

/// Sends flat out (each slot taken as it comes, SES accepting every send) until `until`.
async fn send_flat_out(limiter: &SendRateLimiter, priority: Priority, until: Instant) -> usize {
    let mut sent = 0;
    while limiter.acquire(priority, until).await {
        limiter.feedback(priority, false).await;
        sent += 1;
    }
    sent
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-6 * expected.max(1.0)
}

#[tokio::test(start_paused = true)]
async fn a_busy_instance_climbs_to_the_ceiling_and_throttles_cut_normal_harder_than_high() {
    let limiter = SendRateLimiter::starting_at(2.0, 10.0, 0.2, 0.0);
    send_flat_out(&limiter, Priority::Normal, Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(limiter.rate().await, 10.0, "an idle account's quota is used in full, and no more");
    limiter.feedback(Priority::Normal, true).await;
    assert!(close(limiter.rate().await, 6.0), "{}", limiter.rate().await);
    let high = SendRateLimiter::starting_at(2.0, 10.0, 0.2, 0.0);
    send_flat_out(&high, Priority::High, Instant::now() + Duration::from_secs(30)).await;
    high.feedback(Priority::High, true).await;
    assert!(close(high.rate().await, 8.5), "a throttled high send keeps more of the rate: {}", high.rate().await);
    for _ in 0..50 {
        limiter.feedback(Priority::Normal, true).await;
    }
    assert_eq!(limiter.rate().await, 0.5, "never below a quarter of the share");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_send_doubles_the_rate_each_second_until_the_first_throttle() {
    // The template's share of a 5 mails/s account: 5 / 17. The first slot comes when the
    // bucket, filled at the climbing rate, holds a whole send.
    let share = 5.0 / 17.0;
    let limiter = SendRateLimiter::starting_at(share, 5.0, 0.2, 0.0);
    let start = Instant::now();
    assert!(limiter.acquire(Priority::Normal, start + Duration::from_secs(10)).await);
    let waited = (Instant::now() - start).as_secs_f64();
    assert!(close(limiter.rate().await, share * 2f64.powf(waited)), "{} after {waited} s", limiter.rate().await);
    assert!(waited < 2.5, "at the share alone the first slot would take 3.4 s: {waited} s");
}

#[tokio::test(start_paused = true)]
async fn an_idle_instance_does_not_climb_not_even_after_a_cancelled_wait() {
    let limiter = SendRateLimiter::starting_at(0.1, 5.0, 0.2, 0.0);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(limiter.rate().await, 0.1, "nothing was sent: the rate held nobody back");
    assert!(limiter.acquire(Priority::High, Instant::now()).await, "the idle minute filled the bucket");
    // A batch dropped while its send waits (the next slot is more than 2 s away at this rate).
    let far = Instant::now() + Duration::from_secs(60);
    assert!(tokio::time::timeout(Duration::from_secs(2), limiter.acquire(Priority::High, far)).await.is_err());
    let after = limiter.rate().await;
    assert!(close(after, 0.4), "two seconds of sending doubled it twice: {after}");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(limiter.rate().await, after, "the dropped wait no longer counts");
}

#[tokio::test(start_paused = true)]
async fn a_worker_between_batches_climbs_for_a_second_after_its_last_slot_and_no_longer() {
    // A send takes the slot in hand at once; nothing waits afterwards, as while a worker records
    // its batch and receives the next.
    let limiter = SendRateLimiter::starting_at(1.0, 10.0, 0.2, 1.0);
    assert!(limiter.acquire(Priority::Normal, Instant::now()).await);
    tokio::time::advance(Duration::from_millis(500)).await;
    let half = limiter.rate().await;
    assert!(close(half, 2f64.sqrt()), "half a second of doubling: {half}");
    tokio::time::advance(Duration::from_secs(3)).await;
    let later = limiter.rate().await;
    assert!(close(later, 2.0), "a second of doubling, then none: {later}");
}

#[tokio::test(start_paused = true)]
async fn after_a_throttle_the_rate_climbs_a_share_or_a_twentieth_of_the_account_rate_a_second_until_a_quiet_spell() {
    // Ten instances' share of 10 mails/s climbs a share (1.0) a second; forty instances' share
    // (0.25) climbs 5 % of the account's rate (0.5), the larger. Normal orders alone climb half
    // as fast. One throttle cuts the rate to 0.6 (normal) or 0.85 (high) of what it was.
    for (share, per_second) in [(1.0, 1.0), (0.25, 0.5)] {
        for (priority, cut, climb) in [(Priority::Normal, 0.6, per_second / 2.0), (Priority::High, 0.85, per_second)] {
            let cut = cut * share;
            let limiter = std::sync::Arc::new(SendRateLimiter::starting_at(share, 10.0, 0.2, 1.0));
            assert!(limiter.acquire(priority, Instant::now()).await);
            limiter.feedback(priority, true).await;
            let throttled_at = Instant::now();
            // Forty sends wait: more than this rate grants within the test.
            let far = throttled_at + Duration::from_secs(60);
            let waiters: Vec<_> = (0..40)
                .map(|_| {
                    let l = limiter.clone();
                    tokio::spawn(async move { l.acquire(priority, far).await })
                })
                .collect();
            let rate_at = |secs: f64| {
                let l = limiter.clone();
                async move {
                    tokio::time::sleep_until(throttled_at + Duration::from_secs_f64(secs)).await;
                    l.rate().await
                }
            };
            let case = format!("share {share}, {priority:?}");
            assert!(close(rate_at(1.0).await, cut + climb), "{case}: {}", limiter.rate().await);
            assert!(close(rate_at(3.0).await, cut + 3.0 * climb), "{case}: {}", limiter.rate().await);
            // After 5 s without another throttle, the rate doubles per second again.
            let quiet = cut + 5.0 * climb;
            assert!(close(rate_at(5.5).await, quiet * 2f64.sqrt()), "{case}: {}", limiter.rate().await);
            for w in waiters {
                w.abort();
            }
        }
    }
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
    // Then the cut rate (0.3/s, climbing by 0.25/s a second) paces the following sends: the
    // bucket holds a send again 1.5 s after the retry.
    let retried_at = Instant::now();
    assert!(limiter.acquire(Priority::Normal, retried_at + Duration::from_secs(5)).await);
    assert!(Instant::now() >= retried_at + Duration::from_millis(1400), "paced at the cut rate");
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
async fn sendable_within_counts_the_slots_in_hand_and_the_refill_as_the_rate_climbs() {
    // Before any throttle the rate doubles per second while sends wait: 0.5 mails/s grants
    // 0.5 x (2^2 - 1) / ln 2 = 2.2 sends in 2 s, not 1.0. A batch sized by the rate alone kept
    // one order at a time at the start of a backlog, and an instance with one order has little
    // waiting to climb on.
    let limiter = SendRateLimiter::starting_at(0.5, 5.0, 0.2, 1.0);
    assert_eq!(limiter.sendable_within(Duration::from_secs(2)).await, Some(3), "one in hand, 2.2 refilled");
    assert!(limiter.acquire(Priority::Normal, Instant::now()).await);
    assert_eq!(limiter.sendable_within(Duration::from_secs(2)).await, Some(2));
    assert_eq!(limiter.sendable_within(Duration::ZERO).await, Some(0));
    // Never past the ceiling: 12.5 in hand, then 12.5 mails/s doubles to 50 in 2 s (54 sends)
    // and stays there (50 more).
    let fast = SendRateLimiter::starting_at(12.5, 50.0, 0.2, 1.0);
    assert_eq!(fast.sendable_within(Duration::from_secs(3)).await, Some(116));
    // Throttled: 0.4 in hand (the next slot a second away), then the cut rate climbing a share
    // a second (half for normal orders): 0.4 + 0.6 x 3 + 0.5 x 3^2 / 2 = 4.45 in 3 s.
    let cut = SendRateLimiter::starting_at(1.0, 5.0, 0.2, 0.0);
    cut.feedback(Priority::Normal, true).await;
    assert_eq!(cut.sendable_within(Duration::from_secs(3)).await, Some(4));
}
