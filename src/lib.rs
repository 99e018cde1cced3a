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
//! SqsBatchResponse ◄─ finish ◄─ record (ledger, in waves, fenced by claim token) ◄─┘
//! ```
//!
//! Each step and the function that does it:
//!
//! 1. **Tell the event apart**: [`service::EventKind::of`]; a queue batch goes to
//!    [`service::run_batch`], the same for Lambda ([`lambda`]), `invoke` and `consume`.
//! 2. **Decode** every record: [`decode::decode_message`] (pure; the legacy Python-literal format
//!    through the data-only grammar in [`pylit`]), into an [`order::Order`] or the rule it broke.
//! 3. **Claim** the valid orders in one ledger call: [`ledger::Ledger::claim`]
//!    (`src/pipeline/claim.rs`).
//! 4. **Render and send**, high priority first, within the send rate: [`render::render`] (in the
//!    order's language: [`catalogue`], amounts by [`money`]),
//!    [`mailer::Mailer::send`], [`rate::SendGate`] (`src/pipeline/send.rs`).
//! 5. **Record** the outcomes in waves: [`ledger::Ledger::record`] (`src/pipeline/record.rs`);
//!    each record's [`batch::RecordOutcome`] is set once, from what its stages did.
//! 6. **Finish**: [`service::finish::orders`] re-enqueues deferred orders
//!    ([`backoff::VisibilityBackoff::requeue_deferred`]), publishes the counts ([`metrics::count`]),
//!    sets the retry timing of the records that come back ([`backoff::VisibilityBackoff::apply`])
//!    and logs the summary; SES events end in [`service::finish::events`].
//! 7. **Respond**: [`batch::BatchReport::response`] lists exactly the records that must come back.
//!
//! Around the batch: [`reconcile`] re-sends orders stuck in `sending` or `failed` from their stored
//! payload and publishes what the `UnconfirmedOrders` alarm watches ([`service::reconcile`]
//! finishes its batch); [`delivery`] applies SES's events about sent mail to each order's delivery
//! state; [`stats`] gathers and renders what `stats` shows; [`service::operator`] answers the
//! operator's requests to the deployed function with the same verbs the command line runs.
//!
//! ## Layers
//!
//! From the ground up; a module imports only from its own layer (without a circle) and the layers
//! listed before it:
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | ground types | [`order`], [`status`], [`error`], [`defaults`], [`serde_helpers`], [`clock`] | validated newtypes, an order's status, error classes (transient, permanent, fatal), every setting's default, the one clock reading |
//! | pure readers | [`decode`], [`pylit`], [`render`], [`money`], [`catalogue`], [`ses_event`] | bytes in, typed values out; no I/O; the mail's amounts (ICU4X, CLDR) and words (one Fluent catalogue per language) |
//! | batch vocabulary | [`batch`] | how a record ended, the batch's report and response, the deferral attributes: owned by no flow |
//! | ports and adapters | [`ledger`], [`mailer`], [`backoff`], [`queues`], [`metrics`], [`rate`], [`aws`], [`custom_resource`] | the ledger and mailer traits and their implementations, SQS visibility and re-enqueue, queue depths, the metrics sink, the send rate, SDK clients, CloudFormation's answer |
//! | flows | [`pipeline`], [`delivery`], [`reconcile`], [`stats`] | the order pipeline in stages, SES events, reconciliation, statistics |
//! | service | [`service`] | dispatch by event kind, one finish per batch kind, the operator's verbs |
//! | edges | [`config`], [`app`], [`lambda`], [`cli`], [`consume`], [`logging`] | settings (each consumer's settings struct lives beside its user), wiring, the Lambda entry, the command line (a module per subcommand), the long-poll worker, log set-up |
//!
//! The binary in `src/bin/` only calls into the edges.

// Ground types: no I/O, imported by every layer above.
pub mod clock;
pub mod defaults;
pub mod error;
pub mod order;
pub mod serde_helpers;
pub mod status;

// Pure readers: bytes in, typed values out.
pub mod catalogue;
pub mod decode;
pub mod money;
pub mod pylit;
pub mod render;
pub mod ses_event;

// The batch vocabulary no flow owns.
pub mod batch;

// Ports and adapters.
pub mod aws;
pub mod backoff;
pub mod custom_resource;
pub mod ledger;
pub mod mailer;
pub mod metrics;
pub mod queues;
pub mod rate;

// Flows.
pub mod delivery;
pub mod pipeline;
pub mod reconcile;
pub mod stats;

// The service layer.
pub mod service;

// Edges.
pub mod app;
pub mod cli;
pub mod config;
pub mod consume;
pub mod lambda;
pub mod logging;
