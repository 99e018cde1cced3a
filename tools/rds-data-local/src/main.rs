//! `rds-data-local`: a local AWS RDS Data API endpoint in front of a real PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// A faithful local AWS RDS Data API (rds-data, restJson1) endpoint in front of PostgreSQL.
///
/// Point an AWS SDK at it with AWS_ENDPOINT_URL_RDS_DATA=http://ADDR (any credentials, any
/// region). Test controls: GET/POST/DELETE /_faults ({"latency_ms", "error_rate",
/// "resuming_for_ms", "fail_next"}) and GET /_stats, POST /_stats/reset.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "RDS_DATA_LOCAL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// PostgreSQL URL; its database is the default for requests without `database`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,

    /// Latency added to every Data API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Fraction (0.0-1.0) of requests that answer a retryable 5xx error.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,

    /// Answer DatabaseResumingException for this many milliseconds after start-up.
    #[arg(long, default_value_t = 0)]
    resuming_for_ms: u64,

    /// Statement time limit in milliseconds (AWS: 45 s), then StatementTimeoutException.
    #[arg(long, default_value_t = 45_000)]
    statement_timeout_ms: u64,

    /// Idle transactions are rolled back after this many seconds (AWS: 180).
    #[arg(long, default_value_t = 180)]
    transaction_timeout_secs: u64,

    /// Connections per database.
    #[arg(long, default_value_t = 10)]
    pool_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal; logs captured by tests or CI stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.error_rate) {
        anyhow::bail!("--error-rate must be between 0.0 and 1.0");
    }
    let mut config = rds_data_local::Config::new(args.database_url);
    config.statement_timeout = Duration::from_millis(args.statement_timeout_ms);
    config.transaction_timeout = Duration::from_secs(args.transaction_timeout_secs);
    config.pool_size = args.pool_size.max(1);
    config.faults = rds_data_local::Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        resuming_for_ms: args.resuming_for_ms,
        fail_next: 0,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    rds_data_local::serve_with_shutdown(listener, config, shutdown).await
}
