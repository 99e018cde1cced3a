//! The send stage: claimed orders are mailed, high priority first, with bounded concurrency,
//! while the record stage writes their outcomes in waves.

use super::record::settle;
use super::*;

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
        let fatal = AtomicBool::new(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
        let sender = async move {
            futures::stream::iter(claimed)
                .for_each_concurrent(self.settings.concurrency.max(1), |(i, c)| {
                    let (tx, fatal) = (tx.clone(), &fatal);
                    async move {
                        let attempt =
                            AssertUnwindSafe(self.send_unless_sent_earlier(c, budget, fatal)).catch_unwind().await;
                        let sent = attempt.unwrap_or_else(|panic| {
                            Sent::Record(Outcome::Failed {
                                error: format!("panic while sending: {}", panic_text(&panic)),
                            })
                        });
                        let _ =
                            tx.send(Finished { index: i, order_id: c.order.order_id.clone(), token: c.token, sent });
                    }
                })
                .await;
        };
        let recorder = self.record_in_waves(&mut rx, budget);
        let ((), done) = futures::join!(sender, recorder);
        settle(items, done);
    }

    /// Sends one claimed order, unless SES already accepted an earlier claim's mail of it: the
    /// claim found that mail's Send event, or, taken over from a holder whose lease ended only
    /// recently, the event arrives within the wait (docs/design.md, "SES as the second witness").
    async fn send_unless_sent_earlier(&self, c: &Claimed, budget: &Budget, fatal: &AtomicBool) -> Sent {
        if let Some(message_id) = &c.sent_earlier {
            return Sent::Earlier(message_id.clone());
        }
        if let Some(takeover) = c.takeover
            && let Some(message_id) = self.await_send_event(c, takeover, budget).await
        {
            return Sent::Earlier(message_id);
        }
        self.send_one(&c.order, c.token, c.lease_ends, budget, fatal).await
    }

    /// Waits, a bounded time, for SES's Send event of a mail the previous holder may have had
    /// accepted. Its last send ended before its own deadline, a lease slack before its lease
    /// ended, so the event has had `lease_slack + lease_ended_ago` to arrive; the wait tops that up
    /// to `send_event_wait`. It ends in time for the send to start in this invocation: an order
    /// released for lack of time would come back as a plain retry, no longer known as a takeover.
    async fn await_send_event(&self, c: &Claimed, takeover: Takeover, budget: &Budget) -> Option<String> {
        let waited = self.settings.lease_slack + takeover.lease_ended_ago;
        let last_start = budget.stop_starting_at.checked_sub(SEND_EVENT_POLL).unwrap_or(budget.stop_starting_at);
        let until = (Instant::now() + self.settings.send_event_wait.saturating_sub(waited)).min(last_start);
        let claim = [(c.order.order_id.clone(), c.token)];
        while Instant::now() < until {
            tokio::time::sleep_until((Instant::now() + SEND_EVENT_POLL).min(until)).await;
            match tokio::time::timeout_at(budget.ledger_until, self.ledger.sent_earlier(&claim)).await {
                Ok(Ok(found)) => {
                    if let Some(Some(message_id)) = found.into_iter().next() {
                        return Some(message_id);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(order_id = %c.order.order_id, error = %e, "looking for the previous holder's Send event failed; sending");
                    return None;
                }
                Err(_) => return None,
            }
        }
        None
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
        let result = loop {
            if let Some(gate) = &self.gate
                && !gate.acquire(order.priority, budget.stop_starting_at).await
            {
                return defer("no send slot before the time budget ran out");
            }
            if let Some(reason) = must_stop() {
                return defer(reason);
            }
            let result = match tokio::time::timeout_at(budget.send_cutoff, self.mailer.send(order, &mail, &tags)).await
            {
                Ok(result) => result,
                Err(_) => {
                    return Sent::Unknown(
                        "the send did not finish within the time budget; left leased until it can be taken over"
                            .to_owned(),
                    );
                }
            };
            let throttled = matches!(&result, Err(e) if e.class == ErrorClass::Throttled);
            match &self.gate {
                Some(gate) => {
                    gate.feedback(order.priority, throttled).await;
                    // Throttled: the gate has cut its rate and emptied its bucket, so the next slot
                    // it grants is paced; the order is sent again then, in this batch, instead of
                    // waiting out a deferral (a deferred copy at the end of a backlog is the tail).
                    // Only when no slot comes in time is it deferred.
                    if !throttled {
                        break result;
                    }
                }
                None => break result,
            }
        };
        Sent::Record(match result {
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
        })
    }
}
