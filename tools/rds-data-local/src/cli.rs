//! The command line of the `rds-data-local` binary: exported so that what documents pass to it
//! can be checked against the flags it really takes (clap's `Command`).

use clap::Parser;
use std::net::SocketAddr;

/// A faithful local AWS RDS Data API (rds-data, restJson1) endpoint in front of PostgreSQL.
///
/// Point an AWS SDK at it with AWS_ENDPOINT_URL_RDS_DATA=http://ADDR (any credentials, any
/// region). Test controls: GET/POST/DELETE /_faults ({"latency_ms", "error_rate",
/// "resuming_for_ms", "fail_next"}) and GET /_stats, POST /_stats/reset.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "RDS_DATA_LOCAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL URL; its database is the default for requests without `database`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Latency added to every Data API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Fraction (0.0-1.0) of requests that answer a retryable 5xx error.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,

    /// Answer DatabaseResumingException for this many milliseconds after start-up.
    #[arg(long, default_value_t = 0)]
    pub resuming_for_ms: u64,

    /// Statement time limit in milliseconds (AWS: 45 s), then StatementTimeoutException.
    #[arg(long, default_value_t = 45_000)]
    pub statement_timeout_ms: u64,

    /// Idle transactions are rolled back after this many seconds (AWS: 180).
    #[arg(long, default_value_t = 180)]
    pub transaction_timeout_secs: u64,

    /// Connections per database.
    #[arg(long, default_value_t = 10)]
    pub pool_size: usize,
}
