//! A mailer that writes each confirmation as an RFC 5322 message (`.eml`) into a directory: the
//! embedded default, so `make run` shows real mail without an account. Open a file with any mail
//! client to see both parts.

use super::Mailer;
use crate::error::BackendError;
use crate::order::Order;
use crate::render::Mail;
use crate::ses_event::MailTags;
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
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError> {
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
            // The header SES reads tags from in a raw mail: the same tags SES would publish.
            .header("X-SES-MESSAGE-TAGS", mail_builder::headers::raw::Raw::new(tags_header(tags)))
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

/// `name=value, name=value`: the form of SES's `X-SES-MESSAGE-TAGS` header.
pub fn tags_header(tags: &MailTags) -> String {
    tags.pairs().iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_mail_carries_the_order_id_and_claim_token_tags_in_the_header_ses_reads() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(dir.path(), "orders@example.com").unwrap();
        let body = r#"{"order_id": "ORD-7.1:a", "customer_email": "a@example.com", "customer_name": "A"}"#;
        let order = crate::decode::decode(body).unwrap().order;
        let mail = crate::render::render(&order).unwrap();
        let token = uuid::Uuid::new_v4();
        let tags = MailTags { order_id: order.order_id.clone(), claim_token: token };
        let name = outbox.send(&order, &mail, &tags).await.unwrap();
        // Long headers are folded (RFC 5322 2.2.3); unfold before reading.
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap().replace("\r\n ", " ");
        assert!(text.contains(&format!("X-SES-MESSAGE-TAGS: order_id=ORD-7_d1_ca, claim_token={token}\r\n")), "{text}");
    }
}
