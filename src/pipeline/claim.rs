//! The claim stage: every valid order of the batch in one ledger call (split by size inside the
//! ledger); each record's fate from the claim's answer.

use super::*;

impl Pipeline {
    /// Claims every valid order of the batch in one ledger call (split by size inside the ledger).
    pub(super) async fn claim(&self, items: &mut [Item], budget: &Budget) {
        let (pending, requests): (Vec<usize>, Vec<ClaimRequest>) = items
            .iter_mut()
            .enumerate()
            .filter_map(|(i, it)| match &mut it.work {
                // The canonical payload moves into the request: from here on the item needs only
                // its order.
                Work::Decoded { order, canonical } => Some((
                    i,
                    ClaimRequest {
                        order_id: order.order_id.clone(),
                        payload_sha256: std::mem::take(&mut canonical.sha256),
                        priority: order.priority,
                        payload: std::mem::take(&mut canonical.json),
                    },
                )),
                _ => None,
            })
            .unzip();
        if pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let lease = budget.deadline.saturating_duration_since(started) + self.settings.lease_slack;
        let claims = match tokio::time::timeout_at(budget.ledger_until, self.ledger.claim(&requests, lease)).await {
            Ok(Ok(claims)) if claims.len() == requests.len() => Ok(claims),
            Ok(Ok(claims)) => Err(format!("ledger answered {} claims for {} orders", claims.len(), requests.len())),
            Ok(Err(e)) => Err(format!("claim failed: {e}")),
            Err(_) => Err("claim did not finish within the invocation's time budget".to_owned()),
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::error!(error = %reason, orders = pending.len(), "claim failed; the batch will be retried");
                for &i in &pending {
                    items[i].work = Work::Done;
                    items[i].report.outcome = RecordOutcome::TransientFailure { reason: reason.clone() };
                }
                return;
            }
        };
        for (&i, claim) in pending.iter().zip(claims) {
            let Work::Decoded { order, .. } = std::mem::replace(&mut items[i].work, Work::Done) else { continue };
            let report = &mut items[i].report;
            report.outcome = match claim {
                Claim::Claimed { token, takeover, sent_earlier } => {
                    report.after_expired_lease = takeover.is_some();
                    let lease_ends = started + lease;
                    let order = *order;
                    items[i].work =
                        Work::Claimed(Box::new(Claimed { order, token, lease_ends, takeover, sent_earlier }));
                    continue;
                }
                Claim::AlreadySent => RecordOutcome::AlreadySent,
                Claim::InFlight { lease_remaining } => RecordOutcome::InFlight { lease_remaining },
                Claim::Conflict => {
                    RecordOutcome::Conflict { reason: "order_id was seen before with a different payload".to_owned() }
                }
                Claim::Terminal { status, reason } => RecordOutcome::Terminal { status, reason },
                Claim::Unavailable { error } => {
                    RecordOutcome::TransientFailure { reason: format!("claim failed: {error}") }
                }
            };
        }
    }
}
