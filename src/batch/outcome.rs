//! How one record of an orders batch ended: one type, decided once at the end of the stages,
//! named the same everywhere (docs/design.md, "Vocabulary").

use super::Counter;
use crate::error::ErrorClass;
use crate::status::Status;
use serde::Serialize;
use std::time::Duration;

/// How one record ended. Failures are retried by SQS (and reach the DLQ after `maxReceiveCount`).
/// Each outcome has one name, the same in the batch summary, the logs' `outcome`, `retry`'s
/// output (the serde tag) and, in CamelCase, the metric that counts it (docs/design.md,
/// "Vocabulary").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// `sent`: mailed in this invocation (SES accepted it).
    Sent { provider_message_id: String },
    /// `already_sent`: confirmed earlier; acknowledged without mailing (the idempotency).
    AlreadySent,
    /// `sent_earlier`: not mailed: SES's Send event shows it accepted an earlier claim's mail of
    /// this order (a holder that died before recording it), so that mail is recorded as the
    /// order's: the duplicate a takeover would have sent, prevented.
    SentEarlier { provider_message_id: String },
    /// `invalid`: the message breaks the message contract; it never reaches the ledger or SES.
    Invalid { reason: String },
    /// `rejected`: SES refused this mail for good; the ledger keeps the order as `rejected`.
    Rejected { reason: String },
    /// `conflict`: the `order_id` was seen before with a different payload.
    Conflict { reason: String },
    /// `terminal`: the ledger already holds the order as `rejected` or `abandoned`.
    Terminal { status: Status, reason: String },
    /// `in_flight`: an invocation holds a live lease on the order for this long yet (another one,
    /// or this one after abandoning a send at its time budget's cut-off, which SES may still have
    /// accepted); the record comes back right after it ends.
    InFlight {
        #[serde(rename = "lease_remaining_seconds", serialize_with = "crate::serde_helpers::secs::serialize")]
        lease_remaining: Duration,
    },
    /// `transient_failure`: timeout, 5xx, ledger unreachable, stopped after a fatal error.
    TransientFailure { reason: String },
    /// `deferred`: not attempted in this invocation (no send slot, SES at its rate, no time
    /// left): not a failure. `requeued`: a delayed copy went back to the queue and this delivery
    /// is acknowledged, so the deferral spends no receive. `handed_back`: the batch held more than
    /// this invocation's rate sends soon (never claimed), or a kept order's slot did not come soon
    /// (released); its copy returns at once and does not count as a deferral of the order
    /// (docs/design.md, "Deferral and the send rate").
    Deferred {
        reason: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        requeued: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        handed_back: bool,
    },
}

/// Every outcome's name and the metric that counts it (the name in CamelCase), in the order of
/// [`RecordOutcome`]'s variants: the one table [`RecordOutcome::name`] and
/// [`RecordOutcome::metric`] read (serde's tag is the same name; a unit test checks it).
const OUTCOMES: [(&str, Counter); 10] = [
    ("sent", Counter::Sent),
    ("already_sent", Counter::AlreadySent),
    ("sent_earlier", Counter::SentEarlier),
    ("invalid", Counter::Invalid),
    ("rejected", Counter::Rejected),
    ("conflict", Counter::Conflict),
    ("terminal", Counter::Terminal),
    ("in_flight", Counter::InFlight),
    ("transient_failure", Counter::TransientFailure),
    ("deferred", Counter::Deferred),
];

/// Every outcome's name ([`RecordOutcome::name`]), for checks on what the docs and queries filter on.
pub const OUTCOME_NAMES: [&str; 10] = {
    let mut names = [""; 10];
    let mut i = 0;
    while i < OUTCOMES.len() {
        names[i] = OUTCOMES[i].0;
        i += 1;
    }
    names
};

impl RecordOutcome {
    /// Sent now or earlier.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Sent { .. } | Self::AlreadySent | Self::SentEarlier { .. })
    }

    /// The delivery is done with: a success, or a deferral whose copy is back in the queue.
    /// Everything else is listed in `batchItemFailures`.
    pub fn is_acknowledged(&self) -> bool {
        self.is_success() || matches!(self, Self::Deferred { requeued: true, .. })
    }

    /// How a failed record should be retried; `None` for acknowledged ones.
    pub fn failure_class(&self) -> Option<ErrorClass> {
        match self {
            _ if self.is_acknowledged() => None,
            Self::Invalid { .. } | Self::Rejected { .. } | Self::Conflict { .. } | Self::Terminal { .. } => {
                Some(ErrorClass::Permanent)
            }
            _ => Some(ErrorClass::Transient),
        }
    }

    /// The variant's place in [`OUTCOMES`].
    fn index(&self) -> usize {
        match self {
            Self::Sent { .. } => 0,
            Self::AlreadySent => 1,
            Self::SentEarlier { .. } => 2,
            Self::Invalid { .. } => 3,
            Self::Rejected { .. } => 4,
            Self::Conflict { .. } => 5,
            Self::Terminal { .. } => 6,
            Self::InFlight { .. } => 7,
            Self::TransientFailure { .. } => 8,
            Self::Deferred { .. } => 9,
        }
    }

    /// The outcome's name: the serde tag, the logs' `outcome`, the summary's word.
    pub fn name(&self) -> &'static str {
        OUTCOMES[self.index()].0
    }

    /// The metric that counts this outcome: the name in CamelCase.
    pub fn metric(&self) -> Counter {
        OUTCOMES[self.index()].1
    }

    /// Why the record was not sent, for failures and deferrals.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Invalid { reason }
            | Self::Rejected { reason }
            | Self::Conflict { reason }
            | Self::Terminal { reason, .. }
            | Self::TransientFailure { reason }
            | Self::Deferred { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each outcome; the match makes a new variant fail to compile here until it is added.
    fn every_outcome() -> Vec<RecordOutcome> {
        let reason = || "r".to_owned();
        let all = vec![
            RecordOutcome::Sent { provider_message_id: "m".into() },
            RecordOutcome::AlreadySent,
            RecordOutcome::SentEarlier { provider_message_id: "m".into() },
            RecordOutcome::Invalid { reason: reason() },
            RecordOutcome::Rejected { reason: reason() },
            RecordOutcome::Conflict { reason: reason() },
            RecordOutcome::Terminal { status: crate::status::Status::Abandoned, reason: reason() },
            RecordOutcome::InFlight { lease_remaining: Duration::from_secs(1) },
            RecordOutcome::TransientFailure { reason: reason() },
            RecordOutcome::Deferred { reason: reason(), requeued: false, handed_back: false },
        ];
        for o in &all {
            match o {
                RecordOutcome::Sent { .. }
                | RecordOutcome::AlreadySent
                | RecordOutcome::SentEarlier { .. }
                | RecordOutcome::Invalid { .. }
                | RecordOutcome::Rejected { .. }
                | RecordOutcome::Conflict { .. }
                | RecordOutcome::Terminal { .. }
                | RecordOutcome::InFlight { .. }
                | RecordOutcome::TransientFailure { .. }
                | RecordOutcome::Deferred { .. } => {}
            }
        }
        all
    }

    #[test]
    fn each_outcome_has_one_name_in_serde_logs_and_its_metric() {
        let names: Vec<&str> = every_outcome().iter().map(RecordOutcome::name).collect();
        assert_eq!(names, OUTCOME_NAMES);
        for o in every_outcome() {
            let json = serde_json::to_value(&o).unwrap();
            assert_eq!(json["outcome"], o.name(), "serde and name() differ for {o:?}");
            let camel: String = o.name().split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
            assert_eq!(o.metric().name(), camel, "the metric is the name in CamelCase");
            assert!(crate::metrics::COUNTERS.contains(&o.metric().name()), "{} is not in COUNTERS", o.metric());
        }
    }
}
