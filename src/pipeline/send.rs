//! The send stage: claimed orders are mailed, high priority first, with bounded concurrency,
//! while the record stage writes their outcomes in waves.

use super::record::settle;
use super::*;

/// A takeover waiting for the previous holder's Send event, and where its answer goes.
struct Waiting {
    claim: (crate::order::OrderId, uuid::Uuid),
    until: Instant,
    answer: tokio::sync::oneshot::Sender<Option<String>>,
}

impl Pipeline {
    /// Sends the claimed orders (high priority first, bounded concurrency) while a recorder
    /// writes their outcomes in waves.
    pub(super) async fn send_and_record(&self, items: &mut [Item], budget: &Budget) {
        let mut claimed: Vec<(usize, &Claimed)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| match &it.work {
                Work::Claimed(c) => Some((i, c.as_ref())),
                _ => None,
            })
            .collect();
        if claimed.is_empty() {
            return;
        }
        claimed.sort_by_key(|&(_, c)| c.order.priority);
        let (watch, mut waiting) = self.send_event_watch(&claimed, budget);
        let fatal = AtomicBool::new(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
        let sender = async move {
            let work = claimed.into_iter().map(|(i, c)| (i, c, waiting.remove(&i)));
            futures::stream::iter(work)
                .for_each_concurrent(self.settings.concurrency.max(1), |(i, c, witness)| {
                    let (tx, fatal) = (tx.clone(), &fatal);
                    async move {
                        let attempt = AssertUnwindSafe(self.send_unless_sent_earlier(c, witness, budget, fatal))
                            .catch_unwind()
                            .await;
                        let sent = attempt.unwrap_or_else(|panic| {
                            Sent::Record(Outcome::Failed {
                                error: format!("panic while sending: {}", panic_text(&panic)),
                            })
                        });
                        let (order_id, token, takeover) = (c.order.order_id.clone(), c.token, c.takeover.is_some());
                        let _ = tx.send(Finished { index: i, order_id, token, takeover, sent });
                    }
                })
                .await;
        };
        let recorder = self.record_in_waves(&mut rx, budget);
        let ((), done, ()) = futures::join!(sender, recorder, watch);
        settle(items, done);
    }

    /// Sends one claimed order, unless SES already accepted an earlier claim's mail of it: the
    /// claim found that mail's Send event, or, taken over from a holder whose lease ended only
    /// recently, the event arrives within the wait (`witness`: the batch's watch answers it;
    /// docs/design.md, "SES as the second witness").
    async fn send_unless_sent_earlier(
        &self,
        c: &Claimed,
        witness: Option<tokio::sync::oneshot::Receiver<Option<String>>>,
        budget: &Budget,
        fatal: &AtomicBool,
    ) -> Sent {
        if let Some(message_id) = &c.sent_earlier {
            return Sent::Earlier(message_id.clone());
        }
        if let Some(witness) = witness
            && let Ok(Some(message_id)) = witness.await
        {
            return Sent::Earlier(message_id);
        }
        self.send_one(&c.order, c.token, c.lease_ends, budget, fatal).await
    }

    /// The batch's takeovers that must wait for the previous holder's Send event, watched
    /// together: one ledger call (`Ledger::sent_earlier`) every [`SEND_EVENT_POLL`] for all of
    /// them, however many there are. Each waits a bounded time: its holder's last send ended
    /// before that holder's deadline, a lease slack before its lease ended, so the event has had
    /// `lease_slack + lease_ended_ago` to arrive; the wait tops that up to `send_event_wait`. It
    /// ends in time for the send to start in this invocation. Returns the watch (to run beside
    /// the sends) and each waiting item's answer: the earlier mail's SES message id, or `None`
    /// (send).
    fn send_event_watch<'a>(
        &'a self,
        claimed: &[(usize, &Claimed)],
        budget: &'a Budget,
    ) -> (impl std::future::Future<Output = ()> + 'a, HashMap<usize, tokio::sync::oneshot::Receiver<Option<String>>>)
    {
        let now = Instant::now();
        let last_start = budget.stop_starting_at.checked_sub(SEND_EVENT_POLL).unwrap_or(budget.stop_starting_at);
        let mut answers = HashMap::new();
        let mut waiting = Vec::new();
        for &(i, c) in claimed {
            let Some(takeover) = c.takeover.filter(|_| c.sent_earlier.is_none()) else { continue };
            let waited = self.settings.lease_slack + takeover.lease_ended_ago;
            let until = (now + self.settings.send_event_wait.saturating_sub(waited)).min(last_start);
            if until <= now {
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            answers.insert(i, rx);
            waiting.push(Waiting { claim: (c.order.order_id.clone(), c.token), until, answer: tx });
        }
        (self.watch_send_events(waiting, budget), answers)
    }

    async fn watch_send_events(&self, mut waiting: Vec<Waiting>, budget: &Budget) {
        while let Some(first_end) = waiting.iter().map(|w| w.until).min() {
            tokio::time::sleep_until((Instant::now() + SEND_EVENT_POLL).min(first_end)).await;
            let claims: Vec<_> = waiting.iter().map(|w| w.claim.clone()).collect();
            let found = match tokio::time::timeout_at(budget.ledger_until, self.ledger.sent_earlier(&claims)).await {
                Ok(Ok(found)) if found.len() == claims.len() => found,
                // Nothing more to learn in time: every waiting takeover sends (dropping `waiting`
                // answers each of them so).
                Ok(Ok(found)) => {
                    let error = format!("ledger answered {} for {} orders", found.len(), claims.len());
                    tracing::warn!(
                        orders = claims.len(),
                        error,
                        "looking for the previous holders' Send events failed; sending"
                    );
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(orders = claims.len(), error = %e, "looking for the previous holders' Send events failed; sending");
                    return;
                }
                Err(_) => return,
            };
            let now = Instant::now();
            let mut still = Vec::with_capacity(waiting.len());
            for (w, found) in waiting.into_iter().zip(found) {
                match found {
                    Some(message_id) => {
                        let _ = w.answer.send(Some(message_id));
                    }
                    None if now >= w.until => {
                        let _ = w.answer.send(None);
                    }
                    None => still.push(w),
                }
            }
            waiting = still;
        }
    }

    /// Renders and sends one claimed order, unless the invocation must stop sending.
    async fn send_one(
        &self,
        order: &Order,
        token: uuid::Uuid,
        lease_ends: Instant,
        budget: &Budget,
        fatal: &AtomicBool,
    ) -> Sent {
        let defer = |reason: &str| Sent::Record(Outcome::Deferred { reason: format!("not sent: {reason}") });
        // Checked before and again after waiting for a slot: the wait takes time (or the process
        // was paused), so the lease and the budget may have run out meanwhile.
        let must_stop = || {
            let now = Instant::now();
            if fatal.load(Ordering::Relaxed) {
                Some("sending stopped after a fatal error")
            } else if now >= budget.stop_starting_at {
                Some("too little time left in this invocation")
            } else if now + self.settings.send_timeout.min(budget.send_cutoff - now) >= lease_ends {
                Some("the lease would end before the send could finish")
            } else {
                None
            }
        };
        if let Some(reason) = must_stop() {
            return defer(reason);
        }
        let mail = match render::render(order, &self.settings.mail) {
            Ok(mail) => mail,
            Err(e) => return Sent::Record(Outcome::Failed { error: e.to_string() }),
        };
        let tags = MailTags { order_id: order.order_id.clone(), claim_token: token };
        // A slot that does not come within the horizon (and a second) means the rate was cut
        // since the batch kept this order: it goes back for an instance that can send it now.
        let slot_wait = super::HAND_BACK_HORIZON + Duration::from_secs(1);
        let give_up = budget.stop_starting_at.min(Instant::now() + slot_wait);
        let result = loop {
            if let Some(gate) = &self.gate
                && !gate.acquire(order.priority, give_up).await
            {
                if give_up < budget.stop_starting_at {
                    return Sent::HandBack(format!("handed back: no send slot within {} s", slot_wait.as_secs()));
                }
                return defer("no send slot before the time budget ran out");
            }
            if let Some(reason) = must_stop() {
                return defer(reason);
            }
            let result = match tokio::time::timeout_at(budget.send_cutoff, self.mailer.send(order, &mail, &tags)).await
            {
                Ok(result) => result,
                Err(_) => {
                    const UNFINISHED: &str =
                        "the send did not finish within the time budget; left leased until it can be taken over";
                    tracing::warn!(order_id = %order.order_id, "{UNFINISHED}");
                    return Sent::Unknown(UNFINISHED.to_owned());
                }
            };
            let throttled = matches!(&result, Err(e) if e.class == ErrorClass::Throttled);
            if let Some(gate) = &self.gate {
                gate.feedback(order.priority, throttled).await;
                // Throttled: the gate has cut its rate and holds its next slot back until SES's
                // next second; the order is sent again then, in this batch, instead of waiting out
                // a deferral (a deferred copy at the end of a backlog is the tail). Only when no
                // slot comes in time is it deferred.
                if throttled {
                    continue;
                }
            }
            break result;
        };
        Sent::Record(outcome_of(result, fatal))
    }
}

/// The outcome SES's answer gives the order; a fatal answer also stops this invocation's sends.
fn outcome_of(result: Result<String, BackendError>, fatal: &AtomicBool) -> Outcome {
    match result {
        Ok(message_id) => Outcome::Sent { message_id },
        Err(BackendError { class: ErrorClass::Throttled, message, .. }) => {
            Outcome::Deferred { reason: format!("not sent: SES is at its sending rate ({message})") }
        }
        Err(BackendError { class: ErrorClass::Transient, message, .. }) => Outcome::Failed { error: message },
        Err(BackendError { class: ErrorClass::Permanent, message, .. }) => Outcome::Rejected { reason: message },
        Err(BackendError { class: ErrorClass::Fatal, message, .. }) => {
            if !fatal.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %message, "fatal mailer error: no more sends in this invocation");
            }
            Outcome::Failed { error: message }
        }
    }
}
