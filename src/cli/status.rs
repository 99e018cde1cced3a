//! `status`: one order's confirmation state.

use super::{EXIT_NOT_FOUND, emit, usage};
use crate::app;
use crate::config::Config;
use crate::order::OrderId;
use crate::stats;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<i32> {
    let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
    let ledger = app::existing_ledger(config).await?;
    match ledger.order_state(&id).await.map_err(|e| app::ledger_read_error(config, e, "reading the order"))? {
        None => {
            eprintln!("{}", stats::not_in_ledger(&id));
            Ok(EXIT_NOT_FOUND)
        }
        Some(state) if args.json => {
            emit(format_args!("{}\n", serde_json::to_string_pretty(&state)?))?;
            Ok(0)
        }
        Some(state) => {
            emit(stats::render_order(&state))?;
            Ok(0)
        }
    }
}
