//! The `order-confirmation` binary. Inside Lambda (`AWS_LAMBDA_RUNTIME_API` set) it serves the
//! runtime API; anywhere else it is the command line (see `--help`).

use order_confirmation::{cli, lambda, logging};

#[tokio::main]
async fn main() {
    logging::init();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        if let Err(e) = lambda::run().await {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let code = match cli::run(cli::Cli::parse_or_exit()).await {
        Ok(code) => code,
        Err(e) => {
            let code = cli::exit_code(&e);
            if code != 0 {
                eprintln!("error: {e:#}");
            }
            code
        }
    };
    std::process::exit(code);
}
