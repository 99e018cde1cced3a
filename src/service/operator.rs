//! Operator requests (docs/design.md, Operations): what the on-call engineer asks the deployed
//! service through `aws lambda invoke` on the operator function, with no Rust build at 3 a.m.
//!
//! The payload is one small JSON object, `{"operator": VERB, …}`:
//!
//! | verb | fields | changes state |
//! |---|---|---|
//! | `stats` | – | no |
//! | `status` | `order_id` | no |
//! | `config` | – | no |
//! | `reconcile` | – | yes: re-sends stuck orders, abandons past the bound |
//! | `retry` | `order_id` | yes: releases an abandoned or rejected order and re-sends it |
//! | `park` | `order_id`, `note`, optional `replace` | yes: marks an abandoned order as taken over by a person (an earlier note is replaced only with `"replace": true`) |
//! | `migrate` | – | yes: applies pending schema migrations |
//!
//! Parsing is pure ([`Request::parse`]); a request that does not parse is refused with the rule
//! it broke, never with the rejected value.

use crate::error::BackendError;
use crate::ledger::{LedgerOps, park_note};
use crate::mailer::quota::{QuotaReport, QuotaSource};
use crate::order::OrderId;
use crate::pipeline::Pipeline;
use crate::reconcile::ReconcileSettings;
use crate::stats::Statistics;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One operator request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Stats,
    Status {
        order_id: OrderId,
    },
    Config,
    Reconcile,
    Retry {
        order_id: OrderId,
    },
    /// `replace`: replace the note of an order someone already parked (otherwise refused).
    Park {
        order_id: OrderId,
        note: String,
        replace: bool,
    },
    Migrate,
}

/// An operator request's verb: its name and the fields it takes are written only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Stats,
    Status,
    Config,
    Reconcile,
    Retry,
    Park,
    Migrate,
}

impl Verb {
    /// Every verb, in the order the help text lists them.
    pub const ALL: [Verb; 7] =
        [Verb::Stats, Verb::Status, Verb::Config, Verb::Reconcile, Verb::Retry, Verb::Park, Verb::Migrate];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stats => "stats",
            Self::Status => "status",
            Self::Config => "config",
            Self::Reconcile => "reconcile",
            Self::Retry => "retry",
            Self::Park => "park",
            Self::Migrate => "migrate",
        }
    }

    /// The fields a request with this verb may carry.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Stats | Self::Config | Self::Reconcile | Self::Migrate => &["operator"],
            Self::Status | Self::Retry => &["operator", "order_id"],
            Self::Park => &["operator", "order_id", "note", "replace"],
        }
    }

    /// Whether a request with this verb changes state (logged at WARN with the verb, so the log
    /// group shows who changed what when; read-only requests log at INFO).
    pub fn changes_state(self) -> bool {
        !matches!(self, Self::Stats | Self::Status | Self::Config)
    }
}

/// Every verb's name, in the order the help text lists them.
pub const VERBS: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < Verb::ALL.len() {
        names[i] = Verb::ALL[i].as_str();
        i += 1;
    }
    names
};

/// Is this payload meant as an operator request (whether or not it is a valid one)?
pub fn is_operator_request(payload: &Value) -> bool {
    payload.get("operator").is_some()
}

impl Request {
    /// Reads `{"operator": VERB, …}`. Errors name the field and the rule.
    pub fn parse(payload: &Value) -> Result<Self, String> {
        let Some(object) = payload.as_object() else {
            return Err("an operator request is a JSON object such as {\"operator\": \"stats\"}".into());
        };
        let name = object.get("operator").and_then(Value::as_str).unwrap_or_default();
        let Some(verb) = Verb::ALL.into_iter().find(|v| v.as_str() == name) else {
            return Err(format!("operator: must be one of {}", VERBS.join(", ")));
        };
        let allowed = verb.fields();
        if let Some(extra) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            let known = extra.chars().all(|c| c.is_ascii_lowercase() || c == '_') && extra.len() <= 32;
            let name = if known { format!("field {extra}") } else { "a field".to_owned() };
            return Err(format!(
                "{name} is not part of the {} request (it takes: {})",
                verb.as_str(),
                allowed.join(", ")
            ));
        }
        let order_id = || -> Result<OrderId, String> {
            let raw = object.get("order_id").and_then(Value::as_str).ok_or("order_id: is missing or not a string")?;
            OrderId::parse(raw).map_err(|e| e.to_string())
        };
        Ok(match verb {
            Verb::Stats => Self::Stats,
            Verb::Config => Self::Config,
            Verb::Reconcile => Self::Reconcile,
            Verb::Migrate => Self::Migrate,
            Verb::Status => Self::Status { order_id: order_id()? },
            Verb::Retry => Self::Retry { order_id: order_id()? },
            Verb::Park => {
                let order_id = order_id()?;
                let note = object.get("note").and_then(Value::as_str).ok_or("note: is missing or not a string")?;
                let note = park_note(note).map_err(|rule| format!("note: {rule}"))?.to_owned();
                let replace = match object.get("replace") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err("replace: must be true or false".into()),
                };
                Self::Park { order_id, note, replace }
            }
        })
    }

    /// The request's verb.
    pub fn kind(&self) -> Verb {
        match self {
            Self::Stats => Verb::Stats,
            Self::Status { .. } => Verb::Status,
            Self::Config => Verb::Config,
            Self::Reconcile => Verb::Reconcile,
            Self::Retry { .. } => Verb::Retry,
            Self::Park { .. } => Verb::Park,
            Self::Migrate => Verb::Migrate,
        }
    }

    /// Whether the request changes state ([`Verb::changes_state`]).
    pub fn changes_state(&self) -> bool {
        self.kind().changes_state()
    }

    /// The verb's name, for the logs.
    pub fn verb(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// What the operator function holds to answer requests.
pub struct Operator<'a> {
    pub pipeline: &'a Pipeline,
    /// The ledger the pipeline runs on, for its operations.
    pub ledger: &'a dyn LedgerOps,
    pub settings: &'a OperatorSettings,
    /// Present when queue URLs are configured: queue and DLQ depths in `stats`.
    pub sqs: Option<&'a aws_sdk_sqs::Client>,
    /// Present when the mailer is SES: the send quota in `stats` and `config`.
    pub quota: Option<&'a QuotaSource>,
}

/// What the operator's answers need from the configuration (built by `config`).
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub reconcile: ReconcileSettings,
    /// The order queues and the SES events queue, for `stats`' queue depths.
    pub queue_urls: Vec<String>,
    /// The git commit this binary was built from, in `migrate`'s answer.
    pub commit: &'static str,
    /// The whole validated configuration as `config` prints it (secrets masked).
    pub printed: Value,
}

/// Why an operator request got no answer. Its text is the invocation's error message.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The request is valid, but the order is not in a state for it.
    #[error("{0}")]
    Refused(String),
    /// A backend failed while answering; `doing` says at which step.
    #[error("{doing}: {error}")]
    Failed { doing: &'static str, error: BackendError },
    /// Reading the statistics failed ([`crate::stats::GatherError`] names the read).
    #[error(transparent)]
    Stats(#[from] crate::stats::GatherError),
    /// The answer could not be written as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The answer to `migrate`, from the operator request and the command line alike: which
/// migrations this run applied (none when the schema was current) and the build's commit.
pub fn migrate_answer(applied: &[&str], commit: &str) -> Value {
    json!({"migrated": true, "applied": applied, "commit": commit})
}

/// The answer to `retry` once the order was released and re-sent (`outcome`: the re-send's).
pub fn retry_answer(order_id: &OrderId, outcome: Option<&crate::batch::RecordOutcome>) -> Value {
    json!({"order_id": order_id.as_str(), "released": true, "outcome": outcome,
           "sent": outcome.is_some_and(|o| o.is_success())})
}

/// The answer to `park`: the parked order's state.
pub fn park_answer(state: &crate::ledger::OrderState) -> Value {
    json!({"parked": true, "order": state})
}

/// The SES quota beside `stats`, read now, with the warning at the service's rate of the last hour.
pub async fn stats_quota(s: &Statistics, quota: Option<&QuotaSource>) -> Option<QuotaReport> {
    let last_hour: u64 = s.ledger.priorities.iter().map(|p| p.sent_last_hour).sum();
    Some(quota?.report(Some(last_hour as f64 / 3600.0)).await)
}

/// `stats`' answer as JSON, to the operator request and `stats --json` alike.
pub fn stats_document(s: &Statistics, quota: Option<&QuotaReport>) -> Result<Value, serde_json::Error> {
    let mut doc = serde_json::to_value(s)?;
    if let Some(quota) = quota {
        doc["ses_send_quota"] = serde_json::to_value(quota)?;
    }
    Ok(doc)
}

/// Tags a backend failure with the step it broke.
fn failed(doing: &'static str) -> impl FnOnce(BackendError) -> OperatorError {
    move |error| OperatorError::Failed { doing, error }
}

impl Operator<'_> {
    /// Answers one request. `Err` is a refusal or a failure the caller reports as the invocation's
    /// error (`aws lambda invoke` shows it with `FunctionError`).
    pub async fn answer(&self, request: &Request, deadline: Instant) -> Result<Value, OperatorError> {
        let ledger = self.ledger;
        let settings = self.settings;
        match request {
            Request::Stats => {
                let s = crate::stats::gather(ledger, self.sqs, &settings.queue_urls).await?;
                Ok(stats_document(&s, stats_quota(&s, self.quota).await.as_ref())?)
            }
            Request::Status { order_id } => {
                let state = ledger.order_state(order_id).await.map_err(failed("reading the order"))?;
                Ok(match state {
                    Some(state) => json!({"found": true, "order": state}),
                    None => json!({"found": false, "order_id": order_id.as_str(),
                                   "hint": crate::stats::not_in_ledger(order_id)}),
                })
            }
            Request::Config => {
                let mut printed = settings.printed.clone();
                if let Some(quota) = self.quota {
                    printed["ses_send_quota"] = serde_json::to_value(quota.report(None).await)?;
                }
                Ok(printed)
            }
            Request::Reconcile => {
                let report = super::reconcile(self.pipeline, ledger, &settings.reconcile, deadline)
                    .await
                    .map_err(failed("reconcile failed"))?;
                Ok(serde_json::to_value(report)?)
            }
            Request::Retry { order_id } => {
                if ledger.order_state(order_id).await.map_err(failed("reading the order"))?.is_none() {
                    return Err(OperatorError::Refused(crate::stats::not_in_ledger(order_id)));
                }
                let retried = super::retry(self.pipeline, ledger, order_id, deadline).await;
                let Some(report) = retried.map_err(failed("releasing the order"))? else {
                    return Err(OperatorError::Refused(format!(
                        "order {order_id} is not abandoned or rejected; {{\"operator\": \"status\"}} shows its state"
                    )));
                };
                Ok(retry_answer(order_id, report.records.first().map(|r| &r.outcome)))
            }
            Request::Park { order_id, note, replace } => {
                let Some(before) = ledger.order_state(order_id).await.map_err(failed("reading the order"))? else {
                    return Err(OperatorError::Refused(crate::stats::not_in_ledger(order_id)));
                };
                if let (Some(earlier), false) = (before.parked_note.as_deref(), replace) {
                    // Another person's note says who handles the order: never replaced silently.
                    return Err(OperatorError::Refused(format!(
                        "order {order_id} is already parked with the note \"{earlier}\"; send \"replace\": true to replace that note"
                    )));
                }
                match ledger.park(order_id, note).await.map_err(failed("parking the order"))? {
                    Some(state) => Ok(park_answer(&state)),
                    None => Err(OperatorError::Refused(format!(
                        "order {order_id} is not abandoned: only an order automation gave up on can be parked"
                    ))),
                }
            }
            Request::Migrate => {
                let applied = ledger.migrate().await.map_err(failed("migrate failed"))?;
                Ok(migrate_answer(&applied, settings.commit))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Request, String> {
        Request::parse(&v)
    }

    #[test]
    fn every_verb_parses_with_its_fields() {
        let id = || OrderId::parse("ORD-1").unwrap();
        assert_eq!(parse(json!({"operator": "stats"})), Ok(Request::Stats));
        assert_eq!(parse(json!({"operator": "config"})), Ok(Request::Config));
        assert_eq!(parse(json!({"operator": "reconcile"})), Ok(Request::Reconcile));
        assert_eq!(parse(json!({"operator": "migrate"})), Ok(Request::Migrate));
        assert_eq!(parse(json!({"operator": "status", "order_id": "ORD-1"})), Ok(Request::Status { order_id: id() }));
        assert_eq!(parse(json!({"operator": "retry", "order_id": "ORD-1"})), Ok(Request::Retry { order_id: id() }));
        assert_eq!(
            parse(json!({"operator": "park", "order_id": "ORD-1", "note": " OPS-7 "})),
            Ok(Request::Park { order_id: id(), note: "OPS-7".into(), replace: false })
        );
        assert_eq!(VERBS.len(), 7);
    }

    #[test]
    fn only_the_verbs_that_say_so_change_state() {
        let id = OrderId::parse("A").unwrap();
        let read_only = [Request::Stats, Request::Status { order_id: id.clone() }, Request::Config];
        assert!(read_only.iter().all(|r| !r.changes_state()));
        let writes = [
            Request::Reconcile,
            Request::Retry { order_id: id.clone() },
            Request::Park { order_id: id, note: "n".into(), replace: false },
            Request::Migrate,
        ];
        assert!(writes.iter().all(Request::changes_state));
    }

    #[test]
    fn a_bad_request_names_the_rule_and_never_echoes_the_value() {
        let cases = [
            (json!({"operator": "drop-table-<script>"}), "operator: must be one of stats, status"),
            (json!({"operator": 7}), "operator: must be one of"),
            (json!(["stats"]), "is a JSON object"),
            (json!({"operator": "status"}), "order_id: is missing"),
            (json!({"operator": "retry", "order_id": "ORD 1; rm -rf"}), "order_id: contains a space"),
            (json!({"operator": "park", "order_id": "ORD-1"}), "note: is missing"),
            (json!({"operator": "park", "order_id": "ORD-1", "note": "  "}), "note: the note is empty"),
            (json!({"operator": "stats", "order_id": "ORD-1"}), "field order_id is not part of the stats request"),
            (json!({"operator": "stats", "Évil<b>": 1}), "a field is not part of the stats request"),
        ];
        for (payload, expected) in cases {
            let e = parse(payload.clone()).unwrap_err();
            assert!(e.starts_with(expected) || e.contains(expected), "{payload}: {e}");
            for bad in ["drop-table", "rm -rf", "Évil"] {
                assert!(!e.contains(bad), "{e} echoes the rejected value");
            }
        }
    }

    #[test]
    fn operator_requests_are_recognised_by_their_key() {
        assert!(is_operator_request(&json!({"operator": "nonsense"})));
        assert!(!is_operator_request(&json!({"Records": []})));
    }
}
