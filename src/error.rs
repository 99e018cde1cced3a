//! Failure classes (one table: [`classify_aws`]). Every error that reaches the pipeline carries exactly one class,
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
    /// The mail provider is at its sending rate. Nothing is wrong with the message: it is
    /// deferred (sent later without spending a retry), and the send rate backs off.
    Throttled,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Fatal => "fatal",
            Self::Throttled => "throttled",
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
    /// What PostgreSQL said went wrong, for a SQL error from the Data API ([`SqlState::of`]).
    pub sql_state: Option<SqlState>,
}

/// The SQLSTATEs this service branches on, read once where a Data API error is built (the Data
/// API gives PostgreSQL's code only inside a `DatabaseErrorException`'s message, as
/// `SQLState: 42P01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// Retrying can help: serialization failure (40001), deadlock (40P01), query cancelled
    /// (57014), connection trouble (class 08).
    Retryable,
    /// undefined_table (42P01): the database has no ledger schema.
    UndefinedTable,
    /// Any other code, or none that could be read.
    Other,
}

impl SqlState {
    /// The state a Data API SQL error's message names.
    pub fn of(message: &str) -> Self {
        let Some((_, rest)) = message.rsplit_once("SQLState: ") else { return Self::Other };
        let code: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
        match code.as_str() {
            "40001" | "40P01" | "57014" => Self::Retryable,
            c if c.starts_with("08") => Self::Retryable,
            "42P01" => Self::UndefinedTable,
            _ => Self::Other,
        }
    }
}

impl BackendError {
    pub fn new(class: ErrorClass, message: impl AsRef<str>) -> Self {
        Self { class, message: redact(message.as_ref()), sql_state: None }
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

/// The AWS services whose errors this service classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DataApi,
    Ses,
    Sqs,
}

/// Classifies an AWS service error by its error code (the `x-amzn-ErrorType` / `__type` the SDK
/// parses) and HTTP status. This is the one place where AWS errors get their class.
pub fn classify_aws(service: Service, code: Option<&str>, status: Option<u16>, message: &str) -> ErrorClass {
    use ErrorClass::*;
    let code = code.unwrap_or("");
    match (service, code) {
        // SES above the account's sending rate: the quota is busy, the message is fine.
        (Service::Ses, "TooManyRequestsException" | "ThrottlingException" | "Throttling") => Throttled,
        // Throttling and capacity, any other service: retry later.
        (
            _,
            "ThrottlingException"
            | "TooManyRequestsException"
            | "Throttling"
            | "RequestTimeout"
            | "RequestTimeoutException",
        ) => Transient,
        // Aurora Serverless waking up, a statement cut off, the endpoint briefly unavailable.
        (
            Service::DataApi,
            "DatabaseResumingException"
            | "StatementTimeoutException"
            | "ServiceUnavailableError"
            | "InternalServerErrorException"
            | "DatabaseUnavailableException"
            | "TransactionNotFoundException",
        ) => Transient,
        // A SQL error is transient only when PostgreSQL says retrying can help: serialization
        // failure, deadlock, query cancelled, connection trouble.
        (Service::DataApi, "DatabaseErrorException") => {
            if SqlState::of(message) == SqlState::Retryable {
                Transient
            } else {
                Fatal
            }
        }
        // Misconfiguration: no retry of any message can succeed until a person acts.
        (
            Service::DataApi,
            "BadRequestException"
            | "ForbiddenException"
            | "AccessDeniedException"
            | "DatabaseNotFoundException"
            | "SecretsErrorException"
            | "HttpEndpointNotEnabledException"
            | "UnsupportedResultException",
        ) => Fatal,
        // SES: the daily quota resets; wait for it.
        (Service::Ses, "LimitExceededException") => Transient,
        // SES refuses this mail for good (bad recipient, content rejected).
        (Service::Ses, "MessageRejected" | "BadRequestException") => Permanent,
        // SES cannot send anything now: stop this invocation, page a person.
        (
            Service::Ses,
            "AccountSuspendedException"
            | "SendingPausedException"
            | "MailFromDomainNotVerifiedException"
            | "NotFoundException"
            | "AccessDeniedException",
        ) => Fatal,
        _ => match status {
            Some(s) if s >= 500 => Transient,
            Some(403 | 401) => Fatal,
            Some(_) => Fatal,
            // No response at all: timeout, connection reset, DNS. The request may not have
            // arrived; retrying is right.
            None => Transient,
        },
    }
}

/// Turns an AWS SDK error into a classified [`BackendError`].
pub fn from_sdk<E, R>(
    service: Service,
    operation: &str,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> BackendError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let (code, status, message) = match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status();
            (e.err().code().map(str::to_owned), Some(status), e.err().message().unwrap_or_default().to_owned())
        }
        SdkError::ResponseError(e) => (None, Some(e.raw().status()), "unparseable response".to_owned()),
        SdkError::TimeoutError(_) => (None, None, "timed out".to_owned()),
        SdkError::DispatchFailure(e) => (None, None, not_sent(service, e)),
        other => (None, None, aws_smithy_types::error::display::DisplayErrorContext(other).to_string()),
    };
    let class = classify_aws(service, code.as_deref(), status, &message);
    let sql_state = (service == Service::DataApi && code.as_deref() == Some("DatabaseErrorException"))
        .then(|| SqlState::of(&message));
    // A service answer with no message (a proxy's bare 5xx, say) still says what came back.
    let message = match (message.is_empty(), status, &code) {
        (true, Some(status), None) => format!("HTTP {status} with no error code or message"),
        (true, Some(status), Some(_)) => format!("HTTP {status} with no error message"),
        _ => message,
    };
    let error = match code {
        Some(code) => BackendError::new(class, format!("{operation}: {code}: {message}")),
        None => BackendError::new(class, format!("{operation}: {message}")),
    };
    BackendError { sql_state, ..error }
}

/// One line for a request that never reached the service: what is wrong and what to do. The SDK's
/// own `Debug` of the failure is a page of nested structs the person at the terminal cannot use.
fn not_sent(service: Service, failure: &aws_smithy_runtime_api::client::result::DispatchFailure) -> String {
    use aws_credential_types::provider::error::CredentialsError;
    let (name, endpoint_setting) = match service {
        Service::DataApi => ("Data API", "AWS_ENDPOINT_URL_RDS_DATA"),
        Service::Ses => ("SES", "AWS_ENDPOINT_URL_SESV2"),
        Service::Sqs => ("SQS", "AWS_ENDPOINT_URL_SQS"),
    };
    let Some(connector) = failure.as_connector_error() else {
        return format!("the {name} request could not be sent (bad request construction)");
    };
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(connector);
    while let Some(cause) = next {
        causes.push(cause);
        next = cause.source();
    }
    if causes.iter().any(|c| c.is::<CredentialsError>()) {
        return "no AWS credentials found: set AWS_PROFILE (after `aws sso login` if it uses SSO), or \
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            .to_owned();
    }
    let why = if failure.is_timeout() {
        "timed out".to_owned()
    } else {
        // The connector says "dns error" above the resolver's own words; an I/O error's kind alone
        // can be "uncategorized error", which says nothing, so its message is shown instead.
        let dns = causes.iter().any(|c| c.to_string().starts_with("dns error"));
        let what = match causes.iter().find_map(|c| c.downcast_ref::<std::io::Error>()) {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            Some(io) => io.to_string(),
            None => causes.last().map_or_else(|| "no connection".to_owned(), |c| c.to_string()),
        };
        if dns { format!("its host name does not resolve: {what}") } else { what }
    };
    format!("cannot reach the {name} endpoint ({why}): check {endpoint_setting} if set, AWS_REGION, and the network")
}

/// The HTTP status of a raw SDK response.
pub trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn the_sql_state_is_read_from_the_data_api_message() {
        assert_eq!(SqlState::of("ERROR: relation \"x\" does not exist; SQLState: 42P01"), SqlState::UndefinedTable);
        assert_eq!(SqlState::of("ERROR: deadlock; SQLState: 40P01"), SqlState::Retryable);
        assert_eq!(SqlState::of("ERROR: connection lost; SQLState: 08006"), SqlState::Retryable);
        assert_eq!(SqlState::of("ERROR: duplicate key; SQLState: 23505"), SqlState::Other);
        assert_eq!(SqlState::of("no state at all"), SqlState::Other);
    }

    #[test]
    fn data_api_errors() {
        let c = |code, status| classify_aws(Service::DataApi, Some(code), Some(status), "");
        assert_eq!(c("DatabaseResumingException", 400), ErrorClass::Transient);
        assert_eq!(c("StatementTimeoutException", 400), ErrorClass::Transient);
        assert_eq!(c("ServiceUnavailableError", 503), ErrorClass::Transient);
        assert_eq!(c("InternalServerErrorException", 500), ErrorClass::Transient);
        assert_eq!(c("BadRequestException", 400), ErrorClass::Fatal);
        assert_eq!(c("ForbiddenException", 403), ErrorClass::Fatal);
        assert_eq!(
            classify_aws(
                Service::DataApi,
                Some("DatabaseErrorException"),
                Some(400),
                "ERROR: deadlock; SQLState: 40P01"
            ),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_aws(
                Service::DataApi,
                Some("DatabaseErrorException"),
                Some(400),
                "ERROR: relation missing; SQLState: 42P01"
            ),
            ErrorClass::Fatal
        );
        assert_eq!(classify_aws(Service::DataApi, None, None, "timed out"), ErrorClass::Transient);
        assert_eq!(classify_aws(Service::DataApi, None, Some(502), ""), ErrorClass::Transient);
    }

    #[test]
    fn a_service_error_with_no_code_or_message_says_its_http_status() {
        use aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementError;
        use aws_smithy_runtime_api::client::result::SdkError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let bare = ExecuteStatementError::generic(ErrorMetadata::builder().build());
        let response = Response::new(StatusCode::try_from(503).unwrap(), SdkBody::empty());
        let e = from_sdk(Service::DataApi, "stuck", &SdkError::service_error(bare, response));
        assert_eq!(e.message, "stuck: HTTP 503 with no error code or message");
        assert_eq!(e.class, ErrorClass::Transient);
        let coded = ExecuteStatementError::generic(ErrorMetadata::builder().code("ForbiddenException").build());
        let response = Response::new(StatusCode::try_from(403).unwrap(), SdkBody::empty());
        let e = from_sdk(Service::DataApi, "stuck", &SdkError::service_error(coded, response));
        assert_eq!(e.message, "stuck: ForbiddenException: HTTP 403 with no error message");
    }

    #[test]
    fn ses_errors() {
        let c = |code, status| classify_aws(Service::Ses, Some(code), Some(status), "");
        assert_eq!(c("TooManyRequestsException", 429), ErrorClass::Throttled);
        assert_eq!(c("LimitExceededException", 400), ErrorClass::Transient);
        assert_eq!(c("MessageRejected", 400), ErrorClass::Permanent);
        assert_eq!(c("BadRequestException", 400), ErrorClass::Permanent);
        assert_eq!(c("AccountSuspendedException", 400), ErrorClass::Fatal);
        assert_eq!(c("SendingPausedException", 400), ErrorClass::Fatal);
        assert_eq!(c("InternalFailure", 500), ErrorClass::Transient);
    }
}
