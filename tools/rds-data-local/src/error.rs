//! Errors in the exact restJson1 shape the AWS SDKs parse.
//!
//! The SDKs read the error code from the `x-amzn-ErrorType` header (falling back to `__type` /
//! `code` in the body) and the message from the body's `message` member. HTTP status codes come
//! from botocore's `rds-data/2018-08-01/service-2.json` model, so retry classifiers behave as
//! they do against the real service (5xx are retried, 4xx are not).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One error the service can answer with. The variant names are the model's shape names.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    BadRequest(String),
    DatabaseError(String),
    DatabaseNotFound(String),
    DatabaseResuming(String),
    DatabaseUnavailable,
    TransactionNotFound(String),
    StatementTimeout(String),
    UnsupportedResult(String),
    InternalServerError,
    ServiceUnavailable,
    /// Not in the model: what AWS front ends answer for a body that is not valid JSON or has a
    /// member of the wrong JSON type. The SDKs surface it as an unhandled error with this code.
    Serialization(String),
    /// Not in the model: unknown route.
    UnknownOperation(String),
}

impl ApiError {
    /// The model's shape name, sent as `x-amzn-ErrorType`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequestException",
            ApiError::DatabaseError(_) => "DatabaseErrorException",
            ApiError::DatabaseNotFound(_) => "DatabaseNotFoundException",
            ApiError::DatabaseResuming(_) => "DatabaseResumingException",
            ApiError::DatabaseUnavailable => "DatabaseUnavailableException",
            ApiError::TransactionNotFound(_) => "TransactionNotFoundException",
            ApiError::StatementTimeout(_) => "StatementTimeoutException",
            ApiError::UnsupportedResult(_) => "UnsupportedResultException",
            ApiError::InternalServerError => "InternalServerErrorException",
            ApiError::ServiceUnavailable => "ServiceUnavailableError",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    /// HTTP status from the model's `error.httpStatusCode`.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::DatabaseError(_)
            | ApiError::DatabaseResuming(_)
            | ApiError::StatementTimeout(_)
            | ApiError::UnsupportedResult(_)
            | ApiError::Serialization(_) => StatusCode::BAD_REQUEST,
            ApiError::DatabaseNotFound(_) | ApiError::TransactionNotFound(_) | ApiError::UnknownOperation(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::DatabaseUnavailable => StatusCode::GATEWAY_TIMEOUT,
            ApiError::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest(m)
            | ApiError::DatabaseError(m)
            | ApiError::DatabaseNotFound(m)
            | ApiError::DatabaseResuming(m)
            | ApiError::TransactionNotFound(m)
            | ApiError::StatementTimeout(m)
            | ApiError::UnsupportedResult(m)
            | ApiError::Serialization(m)
            | ApiError::UnknownOperation(m) => Some(m),
            // The model gives these two shapes no members at all.
            ApiError::DatabaseUnavailable | ApiError::InternalServerError | ApiError::ServiceUnavailable => None,
        }
    }

    /// Maps a PostgreSQL error to what the Data API answers. The message format is the one
    /// PgJDBC's `PSQLException` produces ("ERROR: ...\n  Hint: ...\n  Position: N"), which the
    /// Data API passes through, followed by "; SQLState: XXXXX".
    pub fn from_pg(err: &tokio_postgres::Error) -> ApiError {
        let Some(db) = err.as_db_error() else {
            if err.is_closed() {
                return ApiError::DatabaseUnavailable;
            }
            return ApiError::DatabaseError(format!("{err}"));
        };
        let mut msg = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            msg.push_str(&format!("\n  Detail: {detail}"));
        }
        if let Some(hint) = db.hint() {
            msg.push_str(&format!("\n  Hint: {hint}"));
        }
        if let Some(tokio_postgres::error::ErrorPosition::Original(pos)) = db.position() {
            msg.push_str(&format!("\n  Position: {pos}"));
        }
        msg.push_str(&format!("; SQLState: {}", db.code().code()));
        if db.code() == &tokio_postgres::error::SqlState::INVALID_CATALOG_NAME {
            return ApiError::DatabaseNotFound(msg);
        }
        ApiError::DatabaseError(msg)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message().unwrap_or(""))
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.message() {
            Some(m) => json!({ "message": m }),
            None => json!({}),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        resp.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(self.code()));
        resp
    }
}
