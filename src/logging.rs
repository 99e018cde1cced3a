//! Log set-up: JSON lines when Lambda's advanced logging asks for them (`AWS_LAMBDA_LOG_FORMAT=JSON`)
//! or `LOG_FORMAT=json`, readable lines otherwise; always on stderr so stdout stays the
//! command's result. Level from `RUST_LOG`, then `AWS_LAMBDA_LOG_LEVEL`, default `info`.
//!
//! Log lines carry ids, priorities and outcomes only. Customer addresses and names never reach a
//! log: the domain types mask themselves in `Debug`, and provider error texts pass through
//! [`crate::error::redact`].

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| l.to_lowercase()))
        .and_then(|f| EnvFilter::try_new(f).ok())
        // The SDK's credential chain warns once per provider that found nothing; the request that
        // needed credentials then fails with one line saying how to provide them (error.rs).
        .unwrap_or_else(|| EnvFilter::new("info,aws_config::meta::credentials=error"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
        || std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(false).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
}
