//! # order-confirmation
//!
//! Sends every paid order its confirmation mail exactly once, and never leaves an order silently
//! unconfirmed. Orders arrive as SQS messages (a high-priority and a normal queue); this crate is
//! the Lambda function that consumes them, mails through Amazon SES v2 and keeps each order's
//! state in Aurora PostgreSQL through the RDS Data API.
//!
//! ## How a batch flows
//!
//! ```text
//! SqsEvent ─► decode ─► claim (ledger, 1 call) ─► render + send (mailer, concurrent, high first)
//!                                                      │
//! SqsBatchResponse ◄─ respond ◄─ record (ledger, 1 call, fenced by claim token) ◄─┘
//! ```
//!
//! - [`decode`] turns a body into an [`order::Order`] or a [`decode::Rejection`] (pure; also
//!   reads the legacy Python-literal format through the data-only grammar in [`pylit`]).
//! - [`render`] produces the subject, text and HTML parts from `templates/` (pure), in the
//!   order's language from the catalogues in [`catalogue`], amounts by [`money`] (ICU4X, CLDR).
//! - [`ledger`] is the idempotency store and order state: [`ledger::Ledger`] (the hot path: claim,
//!   record) and [`ledger::LedgerOps`] (statistics, reconciliation, operator changes) with a SQLite
//!   implementation for local runs and a Data API implementation (Aurora PostgreSQL) for
//!   production; one contract test suite runs against both.
//! - [`mailer`] delivers: [`mailer::Mailer`] with an `.eml` outbox for local runs and SES v2.
//! - [`pipeline`] runs the steps and builds the batch response; [`error`] classifies failures
//!   once (transient, permanent, fatal); [`rate`] keeps a send-rate reserve for high priority.
//!
//! ## Around the batch
//!
//! - [`backoff`] sets each failed record's visibility timeout (0 s for permanent failures,
//!   exponential with jitter for transient ones).
//! - [`reconcile`] re-sends orders stuck in `sending` or `failed` from their stored payload, and
//!   publishes the numbers the `UnconfirmedOrders` alarm watches.
//! - [`consume`] is the long-poll worker with the event source mapping's semantics (tests, hosts).
//! - [`delivery`] applies SES's events about sent mail (delivered, bounced, complained…, parsed by
//!   [`ses_event`]) to each order's delivery state; they arrive on their own queue.
//! - [`metrics`] writes CloudWatch EMF lines; [`queues`] reads queue and DLQ depths for `stats`.
//! - [`operator`] answers the operator's requests to the deployed function (`aws lambda invoke`:
//!   stats, status, reconcile, retry, park, migrate, config); [`custom_resource`] applies the
//!   schema during a deploy and reports the deployed commit.
//!
//! ## Edges
//!
//! [`config`], [`aws`], [`app`], [`lambda`], [`cli`] and [`logging`]: settings, SDK clients,
//! wiring, the Lambda entry, the command line and log set-up. The binary in `src/bin/` only calls
//! into them.

pub mod app;
pub mod aws;
pub mod backoff;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod consume;
pub mod custom_resource;
pub mod decode;
pub mod delivery;
pub mod error;
pub mod finish;
pub mod lambda;
pub mod ledger;
pub mod logging;
pub mod mailer;
pub mod metrics;
pub mod money;
pub mod operator;
pub mod order;
pub mod pipeline;
pub mod pylit;
pub mod queues;
pub mod rate;
pub mod reconcile;
pub mod render;
pub mod ses_event;
pub mod stats;
