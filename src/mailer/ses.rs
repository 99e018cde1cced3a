//! The production mailer: Amazon SES v2 `SendEmail` with simple content (subject, text and HTML
//! parts, UTF-8). The recipient is the bare address (no display name), so no customer text ever
//! reaches a header. Tags carry the priority, the order id and the claim token (in SES's tag
//! alphabet, [`MailTags`]): they come back in SES's events; no personal data goes into them.

use super::Mailer;
use crate::error::{BackendError, Service, from_sdk};
use crate::order::Order;
use crate::render::Mail;
use crate::ses_event::{MailTags, PRIORITY_TAG};
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
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(Body::builder().text(utf8(&mail.text)?).html(utf8(&mail.html)?).build())
            .build();
        let pairs = tags.pairs();
        let all = std::iter::once((PRIORITY_TAG, order.priority.as_str().to_owned())).chain(pairs);
        let email_tags = all
            .map(|(name, value)| MessageTag::builder().name(name).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::permanent(format!("building SES tag: {e}")))?;
        let out = self
            .client
            .send_email()
            .from_email_address(&self.sender)
            .destination(Destination::builder().to_addresses(order.customer_email.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .set_email_tags(Some(email_tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| from_sdk(Service::Ses, "SendEmail", &e))?;
        out.message_id.ok_or_else(|| BackendError::transient("SendEmail: SES returned no MessageId"))
    }
}
