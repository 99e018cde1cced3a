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
    /// Replace the note of an order someone already parked (without it, `park` refuses and shows
    /// that note).
    #[arg(long)]
    pub replace: bool,
}

pub async fn run(config: &Config, args: &ParkArgs) -> anyhow::Result<i32> {
    let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
    let note = crate::ledger::park_note(&args.note).map_err(|rule| usage(format!("--note: {rule}")))?;
    let ledger = app::existing_ledger(config).await?;
    let Some(before) =
        ledger.order_state(&id).await.map_err(|e| app::ledger_read_error(config, e, "reading the order"))?
    else {
        eprintln!("{}", stats::not_in_ledger(&id));
        return Ok(EXIT_NOT_FOUND);
    };
    if let (Some(earlier), false) = (before.parked_note.as_deref(), args.replace) {
        // Another person's note says who handles the order: replacing it silently loses that.
        eprintln!("order {id} is already parked with the note \"{earlier}\"; pass --replace to replace that note");
        return Ok(EXIT_NOT_FOUND);
    }
    match ledger.park(&id, note).await.map_err(|e| app::ledger_read_error(config, e, "parking the order"))? {
        Some(state) => {
            let answer = crate::service::operator::park_answer(&state);
            emit(format_args!("{}\n", serde_json::to_string(&answer)?))?;
            Ok(0)
        }
        None => {
            eprintln!("order {id} is not abandoned: only an order automation gave up on can be parked");
            Ok(EXIT_NOT_FOUND)
        }
    }
}
