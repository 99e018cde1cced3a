//! The `order-confirmation` binary: the command line (see `--help`).

use clap::Parser;
use order_confirmation::{cli, logging};

#[tokio::main]
async fn main() {
    logging::init();
    let code = match cli::run(cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
