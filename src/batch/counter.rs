//! [`Counter`]: every counter this service publishes (unit Count), by name. The template's
//! alarms and dashboard, and the docs, use these names; [`COUNTERS`] is the one list
//! (tests/docs.rs and tests/template.rs read it through [`crate::metrics::published`]).

use serde::Serialize;

/// The counters, each with its published name.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident),* $(,)?) => {
        /// A counter this service publishes; its name is the variant's ([`Counter::name`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in [`COUNTERS`]'s order.
            pub const ALL: &[Counter] = &[$(Self::$variant),*];

            /// The published name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)*
                }
            }
        }

        /// Every counter's published name.
        pub const COUNTERS: &[&str] = &[$(stringify!($variant)),*];
    };
}

counters! {
    // Per record, with the dimension `priority`: an outcome's metric is its name in CamelCase
    // (crate::batch::RecordOutcome::metric), then the notes and the send's warnings.
    Received,
    Sent,
    AlreadySent,
    SentEarlier,
    Invalid,
    Rejected,
    Conflict,
    Terminal,
    InFlight,
    TransientFailure,
    Deferred,
    VendorFieldInvalid,
    OrderDetailInvalid,
    LegacyPayloadFormat,
    UnrecordedSend,
    PossibleDuplicate,
    /// Deferred records handed back unclaimed or unmailed because this invocation's rate could
    /// not send them soon (counted under `Deferred` too): per priority.
    HandedBack,
    // Per reconciliation or ledger call, without it.
    ReconcileResent,
    ReconcileAbandoned,
    LedgerFailure,
    /// A record failed on its last allowed receive, on its way to the DLQ: dimension `queue` (the
    /// source queue's name) instead of `priority` (crate::backoff::failed_on_last_receive).
    FailedOnLastReceive,
    /// SES's events about sent mail ([`crate::batch::metric_name`]): per priority.
    SendEvent,
    Delivered,
    DeliveryDelayed,
    SoftBounced,
    Bounced,
    Complained,
    RejectedBySes,
    RenderingFailed,
    /// Extra mails SES accepted for an order that already had one, each counted once, the first
    /// time any of its events arrives (docs/design.md, "Duplicates counted from SES's events"): per
    /// priority.
    DuplicateMailed,
    /// Events the ledger could not place: no dimension.
    DeliveryEventUnknown,
    /// Events whose `order_id` tag and SES message id name different orders, applied to none: no
    /// dimension.
    DeliveryEventContradiction,
    /// Bodies that were not SES events: no dimension.
    DeliveryEventInvalid,
}

impl Counter {
    /// The counter a decoding note counts under.
    pub fn of_note(note: &crate::decode::Note) -> Self {
        use crate::decode::Note;
        match note {
            Note::LegacyPayloadFormat => Self::LegacyPayloadFormat,
            Note::VendorFieldInvalid { .. } => Self::VendorFieldInvalid,
            // Counted with the invalid details: the producer sent an amount no price can have.
            Note::OrderDetailInvalid { .. } | Note::AmountShownAsGiven { .. } => Self::OrderDetailInvalid,
        }
    }
}

impl std::fmt::Display for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Ordered by name, so counts are published (and serialized) in the order they were as strings.
impl Ord for Counter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Counter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Counter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
