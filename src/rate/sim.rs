//! A fleet of limiters against a simulated SES quota, on tokio's paused clock: how fast a backlog
//! drains and how the quota is split, for the shapes the soak runs (docs/design.md, "The send
//! rate under Lambda's topology"). A stand-in for SES and the queues: it proves how the limiter's
//! rules interact with each other and with a token-bucket quota; it cannot show the HTTP, the
//! ledger or the real batches, which `make soak` measures.

use super::{SendGate, SendRateLimiter};
use crate::order::Priority;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::time::{Duration, Instant};

/// SES's sending quota as a token bucket holding one second of sends (as the soak's proxy has it).
struct Quota {
    per_sec: f64,
    tokens: f64,
    at: Instant,
    over: usize,
    /// The share of requests SES throttles whatever the quota (the soak's random throttling).
    random: f64,
    noise: Noise,
}

impl Quota {
    fn take(&mut self) -> bool {
        if self.noise.next() < self.random {
            return false;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.per_sec).min(self.per_sec);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.over += 1;
            false
        }
    }
}

/// A small deterministic generator: the simulation's request latencies and bucket levels.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One instance, polling as a mapping's instance or as a `consume` worker does.
#[derive(Clone, Copy)]
pub enum Instance {
    /// Polls its priority's queue alone with `concurrency` sends in flight; an order without a
    /// slot within the hand-back horizon goes back to the queue.
    Lanes { priority: Priority, concurrency: usize },
    /// `consume`'s loop: a batch of what the rate grants within two seconds (at most ten), from
    /// the high queue if it has any, else the normal one; `overhead` (0.5 to 1.5 times it) of SQS
    /// and ledger calls around the sends; the next batch only once the whole batch is done. A
    /// worker whose calls take time is itself a limit on its sends, as the soak's debug-built
    /// workers are.
    Batches { overhead: Duration },
}

pub struct Drain {
    /// Seconds from the start to the last order accepted by SES.
    pub seconds: f64,
    /// Accepted sends per instance.
    pub per_instance: Vec<usize>,
    /// Accepted sends per 10 s window.
    pub windows: Vec<usize>,
    pub over_quota: usize,
    /// Seconds to the last high-priority order accepted.
    pub high_seconds: f64,
}

impl Drain {
    /// The share of the quota used to the last order.
    pub fn use_of(&self, quota: f64) -> f64 {
        self.per_instance.iter().sum::<usize>() as f64 / (self.seconds * quota)
    }
}

/// Drains `high` high-priority and `normal` normal orders through `instances` sized by `share`,
/// climbing to `quota`, against SES's `quota`. Each request takes 20 to 80 ms.
pub async fn drain(quota: f64, share: f64, instances: &[Instance], high: usize, normal: usize, seed: u64) -> Drain {
    drain_with(quota, 0.0, share, instances, high, normal, seed).await
}

/// [`drain`] with SES throttling `random` of the requests whatever the quota.
pub async fn drain_with(
    quota: f64,
    random: f64,
    share: f64,
    instances: &[Instance],
    high: usize,
    normal: usize,
    seed: u64,
) -> Drain {
    let start = Instant::now();
    let noise = Noise(seed.wrapping_add(99));
    let ses = Arc::new(Mutex::new(Quota { per_sec: quota, tokens: quota, at: start, over: 0, random, noise }));
    let queue = |n: usize| Arc::new(Mutex::new((0..n).collect::<VecDeque<_>>()));
    let (high_q, normal_q) = (queue(high), queue(normal));
    let accepted = Arc::new(Mutex::new(Vec::<(Duration, usize, bool)>::new()));
    let mut noise = Noise(seed.max(1));
    let mut tasks = Vec::new();
    for (id, inst) in instances.iter().enumerate() {
        let limiter = Arc::new(SendRateLimiter::starting_at(share, quota, 0.2, noise.next()));
        let sent = Sent { ses: ses.clone(), accepted: accepted.clone(), start, id, total: high + normal };
        let (priority, concurrency) = match *inst {
            Instance::Lanes { priority, concurrency } => (priority, concurrency),
            Instance::Batches { overhead } => {
                let queues = (high_q.clone(), normal_q.clone());
                let noise = Noise(seed.wrapping_mul(7919).wrapping_add(id as u64 * 64 + 1));
                tasks.push(tokio::spawn(run_batches(limiter, queues, overhead, sent, noise)));
                continue;
            }
        };
        let q = if priority == Priority::High { high_q.clone() } else { normal_q.clone() };
        for lane in 0..concurrency {
            let (limiter, q, sent) = (limiter.clone(), q.clone(), sent.clone());
            let mut noise = Noise(seed.wrapping_mul(7919).wrapping_add((id * 64 + lane) as u64 + 1));
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(order) = q.lock().unwrap().pop_front() else { return };
                    loop {
                        if !limiter.acquire(priority, Instant::now() + Duration::from_secs(4)).await {
                            q.lock().unwrap().push_back(order);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            break;
                        }
                        if sent.attempt(&limiter, priority, noise.next()).await {
                            break;
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("simulated instance");
    }
    let accepted = accepted.lock().unwrap();
    let seconds = accepted.iter().map(|(at, ..)| at.as_secs_f64()).fold(0.0, f64::max);
    let mut per_instance = vec![0; instances.len()];
    let mut windows = vec![0; (seconds / 10.0) as usize + 1];
    for (at, id, _) in accepted.iter() {
        per_instance[*id] += 1;
        windows[(at.as_secs_f64() / 10.0) as usize] += 1;
    }
    let over_quota = ses.lock().unwrap().over;
    let high_seconds = accepted.iter().filter(|(.., high)| *high).map(|(at, ..)| at.as_secs_f64()).fold(0.0, f64::max);
    Drain { seconds, per_instance, windows, over_quota, high_seconds }
}

/// `high` instances on the high queue and `normal` on the normal one, sixteen sends in flight
/// each (`SEND_CONCURRENCY`): Lambda's topology, the template's ten and four.
pub fn fleet(high: usize, normal: usize) -> Vec<Instance> {
    let mut v = vec![Instance::Lanes { priority: Priority::High, concurrency: 16 }; high];
    v.extend(vec![Instance::Lanes { priority: Priority::Normal, concurrency: 16 }; normal]);
    v
}

/// `n` `consume` workers, each spending `overhead` per batch besides its sends.
pub fn workers(n: usize, overhead: Duration) -> Vec<Instance> {
    vec![Instance::Batches { overhead }; n]
}

/// Where a simulated send goes, and where its acceptance is counted.
#[derive(Clone)]
struct Sent {
    ses: Arc<Mutex<Quota>>,
    accepted: Arc<Mutex<Vec<(Duration, usize, bool)>>>,
    start: Instant,
    id: usize,
    /// Orders in the backlog, high and normal.
    total: usize,
}

impl Sent {
    /// One request that holds a slot: SES answers halfway through its 20 to 80 ms (`jitter` 0 to 1
    /// picks where), and the answer goes back to `limiter`. True when SES accepted it.
    async fn attempt(&self, limiter: &SendRateLimiter, priority: Priority, jitter: f64) -> bool {
        let latency = Duration::from_secs_f64(0.02 + 0.06 * jitter);
        tokio::time::sleep(latency / 2).await;
        let ok = self.ses.lock().unwrap().take();
        tokio::time::sleep(latency / 2).await;
        limiter.feedback(priority, !ok).await;
        if ok {
            let at = Instant::now() - self.start;
            self.accepted.lock().unwrap().push((at, self.id, priority == Priority::High));
        }
        ok
    }

    /// Every order of the backlog is accepted, by any instance.
    fn all_accepted(&self) -> bool {
        self.accepted.lock().unwrap().len() >= self.total
    }
}

type Queue = Arc<Mutex<VecDeque<usize>>>;

/// One `consume` worker ([`Instance::Batches`]) until every order is accepted.
async fn run_batches(
    limiter: Arc<SendRateLimiter>,
    (high_q, normal_q): (Queue, Queue),
    overhead: Duration,
    sent: Sent,
    mut noise: Noise,
) {
    while !sent.all_accepted() {
        let n = limiter.sendable_within(Duration::from_secs(2)).await.unwrap_or(10).min(10);
        let taken = [(&high_q, Priority::High), (&normal_q, Priority::Normal)].into_iter().find_map(|(q, priority)| {
            let batch: Vec<usize> = (0..n).map_while(|_| q.lock().unwrap().pop_front()).collect();
            (!batch.is_empty()).then_some((q, priority, batch))
        });
        let Some((queue, priority, batch)) = taken else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let overhead = overhead.mul_f64(0.5 + noise.next());
        tokio::time::sleep(overhead / 2).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let sends = batch.into_iter().map(|order| {
            let (limiter, sent, jitter) = (&limiter, &sent, noise.next());
            async move {
                loop {
                    if !limiter.acquire(priority, deadline).await {
                        queue.lock().unwrap().push_back(order);
                        return;
                    }
                    if sent.attempt(limiter, priority, jitter).await {
                        return;
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
        tokio::time::sleep(overhead / 2).await;
    }
}

/// Drains the backlog with four seeds, prints each run, and checks each against `check`.
async fn each_seed(quota: f64, share: f64, fleet: &[Instance], high: usize, normal: usize, check: impl Fn(&Drain)) {
    for seed in 1..=4 {
        let d = drain(quota, share, fleet, high, normal, seed).await;
        eprintln!(
            "seed {seed}: {:.1} % of the quota in {:.1} s (high's last at {:.1} s), per 10 s {:?}, per instance {:?}, \
             {} calls over the quota",
            100.0 * d.use_of(quota),
            d.seconds,
            d.high_seconds,
            d.windows,
            d.per_instance,
            d.over_quota
        );
        check(&d);
    }
}

#[tokio::test(start_paused = true)]
async fn lambdas_topology_drains_a_small_share_backlog_at_the_quota_and_high_first() {
    // The template on a 5 mails/s account: SES_SENDERS 17, ten high instances, four normal.
    // 600 orders, 120 of them high: high's target is 1.5 x 120 / 5 + 10 = 46 s. With the climb
    // per accepted send: 97.6, 97.3, 93.1 and 94.8 %.
    each_seed(5.0, 5.0 / 17.0, &fleet(10, 4), 120, 480, |d| {
        assert!(d.use_of(5.0) >= 0.97, "{:.3}", d.use_of(5.0));
        assert!(d.high_seconds <= 46.0, "{}", d.high_seconds);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn lambdas_normal_instances_alone_drain_a_small_share_backlog_at_the_quota() {
    // Only the normal mapping's four have work. With the climb per accepted send: 95.9, 95.4,
    // 97.5 and 98.4 %.
    each_seed(5.0, 5.0 / 17.0, &fleet(0, 4), 0, 600, |d| assert!(d.use_of(5.0) >= 0.97, "{:.3}", d.use_of(5.0))).await;
}

#[tokio::test(start_paused = true)]
async fn ten_instances_sharing_a_small_quota_drain_it_in_full() {
    // `consume`'s small-share shape: ten instances at 0.5 mails/s. With the climb per accepted
    // send: 95.4, 100.1, 97.9 and 98.4 %.
    each_seed(5.0, 0.5, &fleet(0, 10), 0, 600, |d| assert!(d.use_of(5.0) >= 0.98, "{:.3}", d.use_of(5.0))).await;
}

#[tokio::test(start_paused = true)]
async fn four_instances_at_a_large_share_ride_out_throttles_that_are_not_the_quotas() {
    // The soak's `peak` shape: four instances at 12.5 of 50 mails/s, SES throttling 2 % of the
    // sends at random. With a climb of 5 % of the account's rate alone (held a second after each
    // throttle): 95.8, 88.9 and 96.0 %.
    for seed in 1..=3 {
        let d = drain_with(50.0, 0.02, 12.5, &fleet(0, 4), 0, 4000, seed).await;
        eprintln!(
            "seed {seed}: {:.1} % of the quota, per 10 s {:?}, {} calls over it",
            100.0 * d.use_of(50.0),
            d.windows,
            d.over_quota
        );
        assert!(d.use_of(50.0) >= 0.97, "{:.3}", d.use_of(50.0));
    }
}

#[tokio::test(start_paused = true)]
async fn consume_workers_bounded_by_their_own_calls_ride_out_throttles_that_are_not_the_quotas() {
    // The soak's `peak`: four debug-built workers at 12.5 of 50 mails/s, each able to send about
    // 13 mails/s by itself (a batch of ten takes 0.3 to 1 s of SQS and ledger calls), SES
    // throttling 2 % of the sends at random; all normal (after the arrivals end) and 20 % high.
    // With the climb only while a send waits: 92.2, 91.0 and 95.7 % all normal; 94.2, 93.0 and
    // 98.2 % mixed.
    for (high, normal) in [(0, 4000), (800, 3200)] {
        for seed in 1..=3 {
            let d = drain_with(50.0, 0.02, 12.5, &workers(4, Duration::from_millis(650)), high, normal, seed).await;
            eprintln!(
                "{high} high, seed {seed}: {:.1} % of the quota, per 10 s {:?}, per worker {:?}, {} calls over it",
                100.0 * d.use_of(50.0),
                d.windows,
                d.per_instance,
                d.over_quota
            );
            assert!(d.use_of(50.0) >= 0.98, "{:.3}", d.use_of(50.0));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ten_consume_workers_sharing_a_small_quota_drain_it_in_full_and_high_first() {
    // `make soak`'s `small-share`: ten workers at 0.5 of 5 mails/s, 120 of 600 orders high (high's
    // target 1.5 x 120 / 5 + 10 = 46 s).
    for seed in 1..=3 {
        let d = drain_with(5.0, 0.0, 0.5, &workers(10, Duration::from_millis(650)), 120, 480, seed).await;
        eprintln!(
            "seed {seed}: {:.1} % of the quota in {:.1} s (high's last at {:.1} s), per 10 s {:?}, {} calls over it",
            100.0 * d.use_of(5.0),
            d.seconds,
            d.high_seconds,
            d.windows,
            d.over_quota
        );
        assert!(d.use_of(5.0) >= 0.97, "{:.3}", d.use_of(5.0));
        assert!(d.high_seconds <= 46.0, "{}", d.high_seconds);
    }
}
