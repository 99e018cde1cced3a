//! The integration tests: one test crate (`cargo nextest run --test integration`), one module per
//! file beside this one, so the shared `support` code and the AWS SDK are compiled and linked once
//! rather than once per file. A new `tests/*.rs` file must be listed here (`tests/docs.rs` checks).
//! Select a file's tests by its module: `-E 'test(/^pipeline::/)'`, or `cargo test --test
//! integration -- pipeline::`.

mod support;

mod cli;
mod decode_props;
mod docs;
mod fuzz;
mod lambda_init;
mod lambda_runtime;
mod ledger_contract;
mod mail_preview;
mod pipeline;
mod production;
mod reconcile;
mod sam_local;
mod ses_event_props;
mod ses_quota;
mod soak;
mod sqs_end_to_end;
mod structure;
mod template;
