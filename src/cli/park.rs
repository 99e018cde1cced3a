//! `park`: record that a person took over an abandoned order.

use super::{EXIT_NOT_FOUND, emit, usage};
use crate::app;
use crate::config::Config;
use crate::order::OrderId;
use crate::stats;

#[derive(Debug, clap::Args)]
pub struct ParkArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
    /// Who handles it, or which ticket tracks it (at most 200 characters).
    #[arg(long)]
    pub note: String,
}

pub async fn run(config: &Config, args: &ParkArgs) -> anyhow::Result<i32> {
    let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
    let note = crate::ledger::park_note(&args.note).map_err(|rule| usage(format!("--note: {rule}")))?;
    let ledger = app::existing_ledger(config).await?;
    match ledger.park(&id, note).await.map_err(|e| app::ledger_read_error(config, e, "parking the order"))? {
        Some(state) => {
            emit(stats::render_order(&state))?;
            Ok(0)
        }
        None => {
            eprintln!("order {id} is not abandoned: only an order automation gave up on can be parked");
            Ok(EXIT_NOT_FOUND)
        }
    }
}
