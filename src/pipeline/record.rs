//! The record stage: finished sends are recorded in waves (every `concurrency` sends, or one
//! `wave_interval` after a wave's first send finished), one ledger call per wave, retried while
//! the budget allows; then each record's outcome is set once from what its send and record did.

use super::*;

impl Pipeline {
    /// Receives finished sends until the senders are done, recording them wave by wave. Returns
    /// each send with whether its outcome was applied.
    pub(super) async fn record_in_waves(
        &self,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Finished>,
        budget: &Budget,
    ) -> Vec<(usize, Sent, Recorded)> {
        let wave_size = self.settings.concurrency.max(1);
        let mut done: Vec<(usize, Sent, Recorded)> = Vec::new();
        let mut wave: Vec<Finished> = Vec::new();
        let mut wave_due: Option<Instant> = None;
        loop {
            let next = match wave_due {
                Some(due) => tokio::time::timeout_at(due, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            };
            let closed = matches!(next, Some(None));
            if let Some(Some(sent)) = next {
                wave_due.get_or_insert_with(|| Instant::now() + self.settings.wave_interval);
                wave.push(sent);
                if wave.len() < wave_size {
                    continue;
                }
            }
            if !wave.is_empty() {
                done.extend(self.record_wave(std::mem::take(&mut wave), budget).await);
            }
            wave_due = None;
            if closed {
                break done;
            }
        }
    }

    /// Records one wave in one ledger call, retrying with backoff while the budget allows.
    /// Returns each send with whether its outcome was applied.
    async fn record_wave(&self, wave: Vec<Finished>, budget: &Budget) -> Vec<(usize, Sent, Recorded)> {
        let recordings: Vec<Recording> = wave
            .iter()
            .filter_map(|f| match &f.sent {
                Sent::Record(outcome) => Some(Recording {
                    order_id: f.order_id.clone(),
                    token: f.token,
                    outcome: outcome.clone(),
                    takeover: f.takeover,
                }),
                Sent::Earlier(message_id) => Some(Recording {
                    order_id: f.order_id.clone(),
                    token: f.token,
                    outcome: Outcome::Sent { message_id: message_id.clone() },
                    takeover: f.takeover,
                }),
                Sent::HandBack(reason) => Some(Recording {
                    order_id: f.order_id.clone(),
                    token: f.token,
                    outcome: Outcome::Deferred { reason: reason.clone() },
                    takeover: f.takeover,
                }),
                Sent::Unknown(_) => None,
            })
            .collect();
        let applied = if recordings.is_empty() {
            Vec::new()
        } else {
            self.record_with_retries(&recordings, budget).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, orders = recordings.len(), "recording a wave failed; its mailed orders may be mailed again later");
                vec![Recorded::FENCED; recordings.len()]
            })
        };
        let mut applied = applied.into_iter();
        wave.into_iter()
            .map(|f| {
                let recorded = match f.sent {
                    Sent::Record(_) | Sent::Earlier(_) | Sent::HandBack(_) => {
                        applied.next().unwrap_or(Recorded::FENCED)
                    }
                    Sent::Unknown(_) => Recorded::FENCED,
                };
                (f.index, f.sent, recorded)
            })
            .collect()
    }

    async fn record_with_retries(
        &self,
        recordings: &[Recording],
        budget: &Budget,
    ) -> Result<Vec<Recorded>, BackendError> {
        let mut delay = Duration::from_millis(100);
        loop {
            let error = match tokio::time::timeout_at(budget.ledger_until, self.ledger.record(recordings)).await {
                Ok(Ok(applied)) if applied.len() == recordings.len() => return Ok(applied),
                Ok(Ok(applied)) => {
                    return Err(BackendError::fatal(format!(
                        "ledger answered {} results for {} recordings",
                        applied.len(),
                        recordings.len()
                    )));
                }
                Ok(Err(e)) if e.class == ErrorClass::Fatal || e.class == ErrorClass::Permanent => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => return Err(BackendError::transient("the record step ran out of time")),
            };
            let wake = Instant::now() + delay.mul_f64(0.5 + 0.5 * rand::random::<f64>());
            if wake >= budget.ledger_until {
                return Err(error);
            }
            tracing::warn!(error = %error, retry_in_ms = (wake - Instant::now()).as_millis() as u64, "recording failed; retrying");
            tokio::time::sleep_until(wake).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Sets each sent record's outcome from what its send produced and whether the ledger recorded it.
pub(super) fn settle(items: &mut [Item], done: Vec<(usize, Sent, Recorded)>) {
    let now_ms = crate::clock::unix_ms_now();
    for (i, sent, recorded) in done {
        let applied = recorded.applied;
        let lease_ends = match &items[i].work {
            Work::Claimed(c) => Some(c.lease_ends),
            _ => None,
        };
        items[i].work = Work::Done;
        let report = &mut items[i].report;
        // The recorded mail is a second one SES accepted for the order (an event brought the
        // first): counted here, once, as the events path counts the ones it finds.
        report.extra_mail_recorded = recorded.extra_mail;
        report.outcome = match sent {
            Sent::Record(Outcome::Sent { message_id }) => {
                // The mail went out: acknowledge it even if the record was lost, and count
                // it, because reconciliation or a redelivery may mail it again.
                report.unrecorded_send = !applied;
                report.time_to_confirm_seconds = report
                    .first_sent_ms
                    .and_then(|t| now_ms.checked_sub(t))
                    .filter(|ms| *ms >= 0)
                    .map(|ms| ms as f64 / 1000.0);
                RecordOutcome::Sent { provider_message_id: message_id }
            }
            Sent::Record(Outcome::Failed { error }) => RecordOutcome::TransientFailure { reason: error },
            Sent::Record(Outcome::Rejected { reason }) => RecordOutcome::Rejected { reason },
            Sent::Record(Outcome::Deferred { reason }) => {
                RecordOutcome::Deferred { reason, requeued: false, handed_back: false }
            }
            Sent::HandBack(reason) => RecordOutcome::Deferred { reason, requeued: false, handed_back: true },
            Sent::Earlier(message_id) => {
                // Mailed earlier, by a claim that did not live to record it.
                report.unrecorded_send = !applied;
                RecordOutcome::SentEarlier { provider_message_id: message_id }
            }
            // Left leased by this invocation: it comes back right after that lease ends, as an
            // order in flight elsewhere does, not on the transient schedule, which could bring it
            // back while the lease is live and spend a receive on finding it so.
            Sent::Unknown(reason) => match lease_ends {
                Some(end) => RecordOutcome::InFlight { lease_remaining: end.saturating_duration_since(Instant::now()) },
                None => RecordOutcome::TransientFailure { reason },
            },
        };
    }
}
