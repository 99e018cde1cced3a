//! Every setting's default, written only here: clap shows it in `--help` and fills it in,
//! [`crate::config::Settings::validate`] falls back to it (a [`crate::config::Settings`] built in code has no clap), the typed
//! settings' `Default`s are made of it, tests/docs.rs compares the README's configuration table
//! with clap's command and tests/template.rs the template's parameters with it.

/// Local runs only: in Lambda `LEDGER` must be set.
pub const LEDGER: &str = "sqlite:.local/ledger.db";
/// Local runs only: in Lambda `MAILER` must be set.
pub const MAILER: &str = "outbox:.local/outbox";
/// The From address of the outbox mailer (the ses mailer needs one set).
pub const OUTBOX_SENDER_ADDRESS: &str = "orders@example.com";
pub const SEND_TIMEOUT_SECONDS: u64 = 15;
pub const HIGH_PRIORITY_RESERVE: f64 = 0.2;
pub const SEND_CONCURRENCY: usize = 16;
pub const SAFETY_MARGIN_SECONDS: u64 = 5;
pub const INVOCATION_TIMEOUT_SECONDS: u64 = 60;
pub const LEASE_SLACK_SECONDS: u64 = 60;
pub const SEND_EVENT_WAIT_SECONDS: u64 = 30;
pub const BACKOFF_BASE_SECONDS: u64 = 30;
pub const BACKOFF_CAP_SECONDS: u64 = 900;
pub const DEFERRED_DELAY_SECONDS: u64 = 5;
/// SQS's `maxReceiveCount` on the template's source queues.
pub const MAX_RECEIVE_COUNT: u32 = 5;
pub const RECONCILE_FAILED_AFTER_SECONDS: u64 = 600;
pub const RECONCILE_MAX_ATTEMPTS: i64 = 10;
pub const UNCONFIRMED_GRACE_SECONDS: u64 = 300;
pub const PAYLOAD_RETENTION_DAYS: u64 = 30;
pub const LEDGER_HORIZON_DAYS: u64 = 400;
pub const FUNCTION_ROLE: &str = "consumer";
/// Powertools' variables: the metrics' namespace and the `service` of every metric and log line.
pub const METRICS_NAMESPACE: &str = "OrderConfirmation";
pub const SERVICE_NAME: &str = "order-confirmation";
