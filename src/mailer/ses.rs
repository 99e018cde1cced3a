//! The production mailer: Amazon SES v2 `SendEmail` with simple content (subject, text and HTML
//! parts, UTF-8). The recipient is the bare address (no display name), so no customer text ever
//! reaches a header. Tags carry the priority only: tags flow into SES event publishing and
//! CloudWatch, where personal data must not go.

use super::Mailer;
use crate::error::{BackendError, Service, from_sdk};
use crate::order::Order;
use crate::render::Mail;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};

pub struct SesMailer {
    client: Client,
    sender: String,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(client: Client, sender: impl Into<String>, configuration_set: Option<String>) -> Self {
        Self { client, sender: sender.into(), configuration_set }
    }
}

fn utf8(data: &str) -> Result<Content, BackendError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| BackendError::permanent(format!("building SES content: {e}")))
}

#[async_trait::async_trait]
impl Mailer for SesMailer {
    async fn send(&self, order: &Order, mail: &Mail) -> Result<String, BackendError> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(Body::builder().text(utf8(&mail.text)?).html(utf8(&mail.html)?).build())
            .build();
        let tag = MessageTag::builder()
            .name("priority")
            .value(order.priority.as_str())
            .build()
            .map_err(|e| BackendError::permanent(format!("building SES tag: {e}")))?;
        let out = self
            .client
            .send_email()
            .from_email_address(&self.sender)
            .destination(Destination::builder().to_addresses(order.customer_email.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .email_tags(tag)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| from_sdk(Service::Ses, "SendEmail", &e))?;
        out.message_id.ok_or_else(|| BackendError::transient("SendEmail: SES returned no MessageId"))
    }
}
