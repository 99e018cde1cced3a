//! Mailers: where a rendered confirmation goes. [`outbox::OutboxMailer`] writes `.eml` files (the
//! embedded default); [`ses::SesMailer`] sends through Amazon SES v2 in production. Each
//! classifies its own errors (`crate::error`), so the pipeline only sees [`BackendError`]s.

pub mod outbox;
pub mod ses;

use crate::error::BackendError;
use crate::order::Order;
use crate::render::Mail;

/// Sends one confirmation. Returns the provider's message id, stored in the ledger so support can
/// trace the mail (SES message id, or the outbox file name).
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, order: &Order, mail: &Mail) -> Result<String, BackendError>;
}
