//! A mailer that writes each confirmation as an RFC 5322 message (`.eml`) into a directory: the
//! embedded default, so `make run` shows real mail without an account. Open a file with any mail
//! client to see both parts.

use super::Mailer;
use crate::error::BackendError;
use crate::order::Order;
use crate::render::Mail;
use mail_builder::MessageBuilder;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub struct OutboxMailer {
    dir: PathBuf,
    sender: String,
}

impl OutboxMailer {
    /// Creates the directory if needed, so a wrong path fails at start-up, not per message.
    pub fn new(dir: impl AsRef<Path>, sender: impl Into<String>) -> Result<Self, BackendError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::fatal(format!("cannot create outbox {}: {e}", dir.display())))?;
        Ok(Self { dir, sender: sender.into() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, order: &Order, mail: &Mail) -> Result<String, BackendError> {
        let id = uuid::Uuid::new_v4();
        let now = OffsetDateTime::now_utc();
        let message = MessageBuilder::new()
            .from(("Order confirmations", self.sender.as_str()))
            .to((order.customer_name.as_str(), order.customer_email.as_str()))
            .subject(mail.subject.as_str())
            .date(now.unix_timestamp())
            .message_id(format!("{id}@order-confirmation.local"))
            .header("X-Order-Id", mail_builder::headers::raw::Raw::new(order.order_id.as_str()))
            .header("X-Priority-Class", mail_builder::headers::raw::Raw::new(order.priority.as_str()))
            .text_body(mail.text.as_str())
            .html_body(mail.html.as_str())
            .write_to_vec()
            .map_err(|e| BackendError::transient(format!("building the message failed: {e}")))?;
        // The timestamp first keeps the directory listing in send order; the id part makes a
        // duplicate send visible as a second file instead of overwriting the first.
        let name =
            format!("{}-{}-{}.eml", now.unix_timestamp_nanos() / 1_000_000, order.order_id, &id.to_string()[..8]);
        tokio::fs::write(self.dir.join(&name), message)
            .await
            .map_err(|e| BackendError::transient(format!("writing {name} failed: {e}")))?;
        Ok(name)
    }
}
