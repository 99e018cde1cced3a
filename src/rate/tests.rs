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
