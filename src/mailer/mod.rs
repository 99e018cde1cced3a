//! Mailers: where a rendered confirmation goes. [`outbox::OutboxMailer`] writes `.eml` files (the
//! embedded default); [`ses::SesMailer`] sends through Amazon SES v2 in production. Each
//! classifies its own errors (`crate::error`), so the pipeline only sees [`BackendError`]s.

pub mod outbox;
pub mod quota;
pub mod ses;

use crate::error::BackendError;
use crate::order::Order;
use crate::render::Mail;
use crate::ses_event::MailTags;

/// Sends one confirmation. Returns the provider's message id, stored in the ledger so support can
/// trace the mail (SES message id, or the outbox file name). `tags` (the order id and the claim
/// token that sent it) go on the mail, so SES's events about it name the order and the claim
/// (docs/design.md, "Delivery events").
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError>;
}
