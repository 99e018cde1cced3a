//! Failure classes (DESIGN §5). Every error that reaches the pipeline carries exactly one class,
//! assigned where the error is first understood (the backend that produced it); the pipeline only
//! branches on the class.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying later: throttling, timeouts, 5xx, a database that is waking up.
    Transient,
    /// Retrying the same message cannot help (invalid input, a mail the provider refuses).
    Permanent,
    /// Nothing more should be attempted in this invocation (sending paused, account suspended,
    /// broken configuration): stop, fail the rest as transient, log loudly.
    Fatal,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Fatal => "fatal",
        })
    }
}

/// An error from a backend (ledger or mailer), already classified. The message has had e-mail
/// addresses removed (see [`redact`]) so it can be logged and stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} error: {message}")]
pub struct BackendError {
    pub class: ErrorClass,
    pub message: String,
}

impl BackendError {
    pub fn new(class: ErrorClass, message: impl AsRef<str>) -> Self {
        Self { class, message: redact(message.as_ref()) }
    }
    pub fn transient(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }
    pub fn permanent(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Permanent, message)
    }
    pub fn fatal(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Fatal, message)
    }
}

/// Replaces anything shaped like an e-mail address with `***@domain`. Providers echo addresses in
/// their error messages ("identity failed the check: jane@…"); those messages are logged and kept
/// in the ledger, which must hold no address outside the payload column.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Walk the text once, replacing each local part that precedes an '@' followed by a domain.
    let chars: Vec<char> = text.chars().collect();
    let is_local = |c: char| c.is_alphanumeric() || "!#$%&*+/=?^_`{|}~.-'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' && i > 0 && is_local(chars[i - 1]) && chars.get(i + 1).is_some_and(|c| is_domain(*c)) {
            while out.chars().last().is_some_and(is_local) {
                out.pop();
            }
            out.push_str("***@");
        } else {
            out.push(chars[i]);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_local_parts_only() {
        assert_eq!(
            redact(
                "Email address is not verified. The following identities failed the check in region US-EAST-1: jane.doe+x@example.com, bob@b.org"
            ),
            "Email address is not verified. The following identities failed the check in region US-EAST-1: ***@example.com, ***@b.org"
        );
        assert_eq!(redact("no address here"), "no address here");
        assert_eq!(redact("<a@b.c>"), "<***@b.c>");
    }

    #[test]
    fn backend_errors_are_redacted_on_construction() {
        let e = BackendError::permanent("MessageRejected: jane@example.com");
        assert_eq!(e.message, "MessageRejected: ***@example.com");
        assert_eq!(e.to_string(), "permanent error: MessageRejected: ***@example.com");
    }
}
