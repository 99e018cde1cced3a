//! [`Settings::validate`]: the settings to a [`Config`] that cannot hold an illegal combination,
//! or the first wrong setting, named.

use super::*;

/// What `LEDGER` names, before the Data API target is known.
pub(super) enum LedgerKind {
    Sqlite(PathBuf),
    DataApi,
}

pub(super) fn parse_ledger(s: &str) -> Result<LedgerKind, String> {
    match s.split_once(':') {
        _ if s == "data-api" => Ok(LedgerKind::DataApi),
        Some(("sqlite", path)) if !path.is_empty() => Ok(LedgerKind::Sqlite(path.into())),
        _ => Err("must be data-api or sqlite:<path>".to_owned()),
    }
}

pub(super) fn parse_mailer(s: &str) -> Result<MailerChoice, String> {
    match s.split_once(':') {
        _ if s == "ses" => Ok(MailerChoice::Ses),
        Some(("outbox", dir)) if !dir.is_empty() => Ok(MailerChoice::Outbox { dir: dir.into() }),
        _ => Err("must be ses or outbox:<dir>".to_owned()),
    }
}

pub(super) fn parse_function_role(s: Option<&str>) -> Result<FunctionRole, ConfigError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("consumer") => Ok(FunctionRole::Consumer),
        Some("operator") => Ok(FunctionRole::Operator),
        Some(_) => Err(err("FUNCTION_ROLE", "must be consumer or operator")),
    }
}

/// A CloudWatch namespace: 1-255 of `A-Z a-z 0-9 . - _ / # :` and space, not starting with
/// `AWS/` (reserved for AWS's own metrics). Unset or empty means the default.
pub(super) fn parse_metrics_namespace(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(defaults::POWERTOOLS_METRICS_NAMESPACE.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if v.len() > 255 || !v.chars().all(allowed) {
        return Err(err(
            "POWERTOOLS_METRICS_NAMESPACE",
            "must be 1-255 characters of letters, digits, spaces and . - _ / # :",
        ));
    }
    if v.starts_with("AWS/") {
        return Err(err("POWERTOOLS_METRICS_NAMESPACE", "must not start with AWS/ (reserved for AWS's own metrics)"));
    }
    Ok(v.to_owned())
}

/// A service name, shown in every log line and used as a dimension value: 1-255 of
/// `A-Z a-z 0-9 . - _ / # :` (no spaces, so a Logs Insights filter needs no quoting).
/// Unset or empty means the default.
pub fn parse_service_name(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(defaults::POWERTOOLS_SERVICE_NAME.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#:".contains(c);
    if v.len() > 255 || !v.chars().all(allowed) {
        return Err(err("POWERTOOLS_SERVICE_NAME", "must be 1-255 characters of letters, digits and . - _ / # :"));
    }
    Ok(v.to_owned())
}

/// `STATUS_URL_TEMPLATE`: checked here so a template no mail could use fails at start-up, not
/// in every mail. Unset or empty means no link. The error states the rule, never the value.
fn parse_status_url_template(value: Option<&str>) -> Result<Option<crate::render::StatusUrlTemplate>, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    crate::render::StatusUrlTemplate::parse(v).map(Some).map_err(|rule| err("STATUS_URL_TEMPLATE", rule))
}

/// `SES_CONFIGURATION_SET`: SES's rule for configuration set names (1-64 letters, digits, `_`
/// and `-`, as the template's parameter also requires). Unset or empty means none. A name SES
/// would refuse fails at start-up instead of failing every send.
pub(super) fn parse_configuration_set(value: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(err("SES_CONFIGURATION_SET", "must be 1-64 characters of letters, digits, _ and -"));
    }
    Ok(Some(v.to_owned()))
}

impl Settings {
    /// The typed configuration, or the first wrong setting, named. The backends are checked
    /// first, then every setting's bounds in the table's order ([`crate::defaults`]), then what
    /// each group's settings require of each other (send rates, sending, retry timing,
    /// reconciliation, queues), so the setting reported first does not depend on how the code is
    /// split.
    pub fn validate(&self, mode: Mode) -> Result<Config, ConfigError> {
        let (ledger, mailer, sender_address) = self.backends(mode)?;
        self.within_bounds()?;
        let (ses_max_send_rate, ses_account_max_send_rate) = self.send_rates()?;
        let (send_timeout, high_priority_reserve, send_concurrency, invocation_timeout, safety_margin) =
            self.sending()?;
        let backoff = self.backoff()?;
        let reconcile = self.reconcile()?;
        let lease_slack = Duration::from_secs(self.lease_slack_seconds);
        let send_event_wait = Duration::from_secs(self.send_event_wait_seconds);
        let queue_urls = self.queue_urls()?;
        let function_role = parse_function_role(Some(&self.function_role))?;
        let metric_names = MetricNames {
            namespace: parse_metrics_namespace(Some(&self.metrics_namespace))?,
            service: parse_service_name(Some(&self.service_name))?,
        };
        Ok(Config {
            function_role,
            metric_names,
            commit: env!("ORDER_CONFIRMATION_COMMIT"),
            lease_slack,
            send_event_wait,
            backoff,
            reconcile,
            queue_urls,
            ledger,
            mailer,
            sender_address,
            ses_configuration_set: parse_configuration_set(self.ses_configuration_set.as_deref())?,
            status_url_template: parse_status_url_template(self.status_url_template.as_deref())?,
            ses_max_send_rate,
            ses_account_max_send_rate,
            ses_senders: self.ses_senders,
            expected_batch_size: self.expected_batch_size,
            high_priority_reserve,
            send_timeout,
            send_concurrency,
            safety_margin,
            invocation_timeout,
        })
    }

    /// `LEDGER`, `MAILER`, the Data API target and the From address.
    fn backends(&self, mode: Mode) -> Result<(LedgerChoice, MailerChoice, String), ConfigError> {
        let pick = |setting: &'static str, value: &Option<String>, default: &str| -> Result<String, ConfigError> {
            match (value.as_deref().map(str::trim).filter(|v| !v.is_empty()), mode) {
                (Some(v), _) => Ok(v.to_owned()),
                (None, Mode::Local) => Ok(default.to_owned()),
                (None, Mode::Lambda) => Err(err(
                    setting,
                    "is not set: in Lambda it must be given explicitly (there is no local default in production)",
                )),
            }
        };
        let ledger = parse_ledger(&pick("LEDGER", &self.ledger, defaults::LEDGER)?).map_err(|p| err("LEDGER", p))?;
        let mailer = parse_mailer(&pick("MAILER", &self.mailer, defaults::MAILER)?).map_err(|p| err("MAILER", p))?;

        let ledger = match ledger {
            LedgerKind::DataApi => LedgerChoice::DataApi(DataApiTarget {
                cluster_arn: required("DB_CLUSTER_ARN", &self.db_cluster_arn, "the data-api ledger needs it")?,
                secret_arn: required("DB_SECRET_ARN", &self.db_secret_arn, "the data-api ledger needs it")?,
                database: required("DB_NAME", &self.db_name, "the data-api ledger needs it")?,
            }),
            LedgerKind::Sqlite(path) => {
                self.no_data_api_target_beside(&path)?;
                LedgerChoice::Sqlite { path }
            }
        };
        for (setting, value) in [("DB_CLUSTER_ARN", &self.db_cluster_arn), ("DB_SECRET_ARN", &self.db_secret_arn)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                && !v.starts_with("arn:")
            {
                return Err(err(setting, "must be an ARN (arn:aws:...)"));
            }
        }

        let sender_address = match mailer {
            MailerChoice::Ses => {
                required("SENDER_ADDRESS", &self.sender_address, "the ses mailer needs a verified From address")?
            }
            MailerChoice::Outbox { .. } => {
                self.sender_address.clone().unwrap_or_else(|| defaults::SENDER_ADDRESS.to_owned())
            }
        };
        crate::order::CustomerEmail::parse(&sender_address)
            .map_err(|e| err("SENDER_ADDRESS", format!("is not a valid address: {}", e.rule)))?;

        Ok((ledger, mailer, sender_address))
    }

    /// Settings for the Data API beside a SQLite ledger are a mistake, not something to ignore:
    /// reading `.local/ledger.db` while the person meant production would report the wrong
    /// ledger without a word.
    fn no_data_api_target_beside(&self, path: &std::path::Path) -> Result<(), ConfigError> {
        let data_api = [
            ("DB_CLUSTER_ARN", &self.db_cluster_arn),
            ("DB_SECRET_ARN", &self.db_secret_arn),
            ("DB_NAME", &self.db_name),
        ];
        match data_api.iter().find(|(_, v)| v.as_deref().is_some_and(|v| !v.trim().is_empty())) {
            Some((setting, _)) => Err(err(
                setting,
                format!(
                    "is set but the ledger is sqlite:{}: set LEDGER=data-api to use the Data API, or unset {setting}",
                    path.display()
                ),
            )),
            None => Ok(()),
        }
    }

    /// This instance's starting share of the SES rate and the account's rate.
    fn send_rates(&self) -> Result<(Option<f64>, Option<f64>), ConfigError> {
        let positive = |setting: &'static str, value: Option<f64>| match value {
            Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_SEND_RATE) => {
                Err(err(setting, format!("must be a positive number up to {MAX_SEND_RATE}")))
            }
            other => Ok(other),
        };
        let account_rate = positive("SES_ACCOUNT_MAX_SEND_RATE", self.ses_account_max_send_rate)?;
        let ses_max_send_rate = match (positive("SES_MAX_SEND_RATE", self.ses_max_send_rate)?, account_rate) {
            (Some(share), Some(account)) if account < share => {
                return Err(err(
                    "SES_ACCOUNT_MAX_SEND_RATE",
                    format!("({account}) must be at least SES_MAX_SEND_RATE ({share})"),
                ));
            }
            (Some(share), _) => Some(share),
            (None, Some(account)) => match self.ses_senders {
                Some(senders) => Some(account / f64::from(senders)),
                None => {
                    return Err(err(
                        "SES_ACCOUNT_MAX_SEND_RATE",
                        "needs SES_SENDERS or SES_MAX_SEND_RATE (to know this instance's starting share)",
                    ));
                }
            },
            (None, None) => None,
        };
        Ok((ses_max_send_rate, account_rate))
    }

    /// The send timeout, the reserve, the concurrency and the invocation's time. Upper bounds
    /// (the table's) keep every duration far from overflowing the clock arithmetic built on it (a
    /// deadline, a lease, a visibility timeout), so a typo names its setting at start-up.
    fn sending(&self) -> Result<(Duration, f64, usize, Duration, Duration), ConfigError> {
        let invocation_timeout = Duration::from_secs(self.invocation_timeout_seconds);
        let safety_margin = Duration::from_secs(self.safety_margin_seconds);
        if safety_margin >= invocation_timeout {
            return Err(err(
                "SAFETY_MARGIN_SECONDS",
                format!(
                    "({}) must be less than INVOCATION_TIMEOUT_SECONDS ({})",
                    self.safety_margin_seconds, self.invocation_timeout_seconds
                ),
            ));
        }
        let send_timeout = Duration::from_secs(self.send_timeout_seconds);
        Ok((send_timeout, self.high_priority_reserve, self.send_concurrency, invocation_timeout, safety_margin))
    }

    /// How failed and deferred records come back.
    fn backoff(&self) -> Result<crate::backoff::BackoffSettings, ConfigError> {
        let backoff = crate::backoff::BackoffSettings {
            base: Duration::from_secs(self.backoff_base_seconds),
            cap: Duration::from_secs(self.backoff_cap_seconds),
            deferred: Duration::from_secs(self.deferred_delay_seconds),
            max_receive_count: self.max_receive_count,
        };
        if backoff.base.is_zero() || backoff.base > backoff.cap {
            return Err(err(
                "BACKOFF_BASE_SECONDS",
                format!(
                    "({}) must be at least 1 and at most BACKOFF_CAP_SECONDS ({})",
                    self.backoff_base_seconds, self.backoff_cap_seconds
                ),
            ));
        }
        Ok(backoff)
    }

    /// Reconciliation and retention.
    fn reconcile(&self) -> Result<crate::reconcile::ReconcileSettings, ConfigError> {
        let (payload_days, horizon_days) = (self.payload_retention_days, self.ledger_horizon_days);
        if horizon_days < payload_days {
            return Err(err(
                "LEDGER_HORIZON_DAYS",
                format!("({horizon_days}) must be at least PAYLOAD_RETENTION_DAYS ({payload_days})"),
            ));
        }
        Ok(crate::reconcile::ReconcileSettings {
            failed_for: Duration::from_secs(self.reconcile_failed_after_seconds),
            max_attempts: self.reconcile_max_attempts,
            grace: Duration::from_secs(self.unconfirmed_grace_seconds),
            retention: crate::reconcile::Retention {
                payload_after: Duration::from_secs(payload_days * DAY),
                delete_after: Duration::from_secs(horizon_days * DAY),
                ..crate::reconcile::Retention::default()
            },
            ..crate::reconcile::ReconcileSettings::default()
        })
    }

    /// `QUEUE_URLS`, trimmed, each an http(s) URL.
    fn queue_urls(&self) -> Result<Vec<String>, ConfigError> {
        let queue_urls: Vec<String> =
            self.queue_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        if let Some(n) = queue_urls.iter().position(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            return Err(err("QUEUE_URLS", format!("entry {} is not an http(s) queue URL", n + 1)));
        }
        Ok(queue_urls)
    }
}
