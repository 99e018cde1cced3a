//! `rds-data-local`: a local AWS RDS Data API endpoint in front of a real PostgreSQL.

use std::time::Duration;

use clap::Parser;
use rds_data_local::cli::Args;

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
