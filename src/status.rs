//! An order's status in the ledger: a ground type, named by the ledger, the batch outcomes,
//! `stats` and `status` alike.

use crate::order::FieldError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An order's status in the ledger, stored as its lowercase name (`as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Leased by an invocation that is sending it now (or died while doing so: see `lease_until`).
    Sending,
    /// Terminal: SES accepted the mail.
    Sent,
    /// Retryable: the last attempt failed transiently, was deferred, or never started.
    Failed,
    /// Terminal: the mail provider refused this message for good; `last_error` says why.
    Rejected,
    /// Terminal for automation: reconciliation gave up after its attempt bound; a person decides.
    Abandoned,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Sending, Status::Sent, Status::Failed, Status::Rejected, Status::Abandoned];

    /// The stored name, exactly (a row is written only by this service, so no case folding).
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| FieldError::new("status", "must be one of sending, sent, failed, rejected, abandoned"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Abandoned => "abandoned",
        }
    }

    /// Finished for automation: a claim answers [`crate::ledger::Claim::Terminal`] instead of taking it over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::Abandoned)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
