//! The account's SES sending quota, read with SES v2's `GetAccount` (its `SendQuota`:
//! `MaxSendRate`, `Max24HourSend`, `SentLast24Hours`), and what the service makes of it: the send
//! rate's limiter is sized from it unless `SES_ACCOUNT_MAX_SEND_RATE` overrides it ([`SendRates`]),
//! and `config` and `stats` report it, `stats` with a warning when the 24-hour quota would run out
//! at the current rate ([`exhaustion_warning`]). A failed read never blocks mailing: the settings
//! size the limiter as before, and one log line says so (docs/design.md, "Deferral and the send
//! rate").

use crate::error::{BackendError, Service, from_sdk};
use serde::Serialize;
use std::time::Duration;

/// How long start-up, `config` and `stats` wait for `GetAccount` before going on without it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The account's sending quota in this Region, as `GetAccount` answered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SendQuota {
    /// Mails per second SES accepts from the account.
    pub max_send_rate: f64,
    /// Mails per rolling 24 hours; `None` when unlimited (SES answers -1).
    pub max_24_hour_send: Option<f64>,
    /// Mails the account sent in the last 24 hours.
    pub sent_last_24_hours: f64,
}

impl SendQuota {
    /// What is left of the 24-hour quota (`None`: unlimited).
    pub fn remaining_24_hours(&self) -> Option<f64> {
        self.max_24_hour_send.map(|max| (max - self.sent_last_24_hours).max(0.0))
    }
}

/// Reads the quota, within [`READ_TIMEOUT`]. An answer without a usable `MaxSendRate` (not a
/// positive number) is an error: a limiter sized from it would stop or never limit.
pub async fn read(client: &aws_sdk_sesv2::Client) -> Result<SendQuota, BackendError> {
    let out = tokio::time::timeout(READ_TIMEOUT, client.get_account().send())
        .await
        .map_err(|_| BackendError::transient(format!("GetAccount: no answer within {} s", READ_TIMEOUT.as_secs())))?
        .map_err(|e| from_sdk(Service::Ses, "GetAccount", &e))?;
    let q = out.send_quota.ok_or_else(|| BackendError::permanent("GetAccount: the answer has no SendQuota"))?;
    if !(q.max_send_rate.is_finite() && q.max_send_rate > 0.0) {
        return Err(BackendError::permanent("GetAccount: SendQuota.MaxSendRate is not a positive number"));
    }
    Ok(SendQuota {
        max_send_rate: q.max_send_rate,
        max_24_hour_send: (q.max24_hour_send >= 0.0 && q.max24_hour_send.is_finite()).then_some(q.max24_hour_send),
        sent_last_24_hours: q.sent_last24_hours.max(0.0),
    })
}

/// Where the limiter's rates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// `SES_ACCOUNT_MAX_SEND_RATE` (and `SES_MAX_SEND_RATE` / `SES_SENDERS`): the settings win.
    Settings,
    /// `GetAccount`'s `MaxSendRate`.
    GetAccount,
    /// `GetAccount` was not read or failed, and no rate is set: no limiter (SES's own throttling
    /// still defers what it refuses).
    Unlimited,
}

/// The limiter's starting share and ceiling, mails per second, and where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SendRates {
    /// This instance's starting rate (`None`: no limiter).
    pub share: Option<f64>,
    /// The rate it may climb to while SES accepts: the account's.
    pub ceiling: Option<f64>,
    pub source: RateSource,
}

impl SendRates {
    /// The rates from the settings (`share`: `SES_MAX_SEND_RATE` or `SES_ACCOUNT_MAX_SEND_RATE /
    /// SES_SENDERS`, as validated; `account`: `SES_ACCOUNT_MAX_SEND_RATE`) and the account's quota
    /// when it was read. `SES_ACCOUNT_MAX_SEND_RATE` overrides the quota. Without it, the quota's
    /// `MaxSendRate` is the ceiling and the share is `SES_MAX_SEND_RATE` (at most the ceiling),
    /// else the ceiling divided among `SES_SENDERS`, else the whole ceiling.
    pub fn choose(share: Option<f64>, account: Option<f64>, senders: Option<u32>, quota: Option<&SendQuota>) -> Self {
        match (account, quota) {
            (Some(account), _) => Self { share, ceiling: Some(account), source: RateSource::Settings },
            (None, Some(q)) => {
                let ceiling = q.max_send_rate;
                let share = match (share, senders) {
                    (Some(share), _) => share.min(ceiling),
                    (None, Some(n)) => ceiling / f64::from(n.max(1)),
                    (None, None) => ceiling,
                };
                Self { share: Some(share), ceiling: Some(ceiling), source: RateSource::GetAccount }
            }
            (None, None) => match share {
                Some(share) => Self { share: Some(share), ceiling: Some(share), source: RateSource::Settings },
                None => Self { share: None, ceiling: None, source: RateSource::Unlimited },
            },
        }
    }
}

/// A warning when, at `rate` mails per second, the 24-hour quota would run out: the rate kept up
/// for 24 hours sends more than `Max24HourSend`. Says how long what is left lasts at that rate.
pub fn exhaustion_warning(quota: &SendQuota, rate: f64) -> Option<String> {
    let max = quota.max_24_hour_send?;
    let remaining = quota.remaining_24_hours()?;
    if !(rate.is_finite() && rate > 0.0) || rate * 86_400.0 <= max {
        return None;
    }
    let lasts = Duration::from_secs_f64((remaining / rate).min(86_400.0));
    Some(format!(
        "at {rate:.2} mails/s the SES 24-hour quota of {max:.0} runs out: {remaining:.0} left \
         ({:.0} sent in the last 24 hours), about {} at this rate; ask AWS for a higher quota or expect \
         SES to refuse mail (SendingPausedException / Daily message quota exceeded)",
        quota.sent_last_24_hours,
        human(lasts)
    ))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else {
        format!("{:.1} h", s as f64 / 3600.0)
    }
}

/// What reading the quota needs, so that `config` and `stats` report it the same way from the
/// command line and from the deployed operator function: the SES client and the rate settings.
#[derive(Debug, Clone)]
pub struct QuotaSource {
    pub client: aws_sdk_sesv2::Client,
    pub share: Option<f64>,
    pub account: Option<f64>,
    pub senders: Option<u32>,
}

impl QuotaSource {
    /// The quota as read now; `current_rate` (mails per second) adds the exhaustion warning.
    pub async fn report(&self, current_rate: Option<f64>) -> QuotaReport {
        QuotaReport::gather(&self.client, self.share, self.account, self.senders, current_rate).await
    }
}

/// What `config` and `stats` report about the quota: the rates the limiter starts from, and the
/// quota as read (or why it could not be).
#[derive(Debug, Clone, Serialize)]
pub struct QuotaReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<SendQuota>,
    /// Why `GetAccount` gave no quota (the error's text; it carries no customer data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub rates: SendRates,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl QuotaReport {
    /// Reads the quota and reports it beside the rates it gives with these settings (see
    /// [`SendRates::choose`]); `current_rate` (mails per second, e.g. the last hour's) adds the
    /// exhaustion warning.
    pub async fn gather(
        client: &aws_sdk_sesv2::Client,
        share: Option<f64>,
        account: Option<f64>,
        senders: Option<u32>,
        current_rate: Option<f64>,
    ) -> Self {
        let (quota, error) = match read(client).await {
            Ok(q) => (Some(q), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let rates = SendRates::choose(share, account, senders, quota.as_ref());
        let warning = quota.as_ref().zip(current_rate).and_then(|(q, rate)| exhaustion_warning(q, rate));
        Self { account: quota, error, rates, warning }
    }

    /// One line for the `stats` table.
    pub fn line(&self) -> String {
        let rates = match (self.rates.share, self.rates.ceiling) {
            (Some(share), Some(ceiling)) => format!(
                "limiter starts at {share:.2} mails/s, climbs to {ceiling:.2} (from {})",
                serde_json::to_value(self.rates.source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            _ => "no limiter (no rate set, none read)".to_owned(),
        };
        let quota = match (&self.account, &self.error) {
            (Some(q), _) => format!(
                "SES quota {:.2} mails/s, {} per 24 h ({:.0} sent in the last 24 h)",
                q.max_send_rate,
                q.max_24_hour_send.map_or("unlimited".to_owned(), |m| format!("{m:.0}")),
                q.sent_last_24_hours
            ),
            (None, Some(e)) => format!("SES quota not read ({e})"),
            (None, None) => "SES quota not read".to_owned(),
        };
        let mut line = format!("{quota}; {rates}\n");
        if let Some(w) = &self.warning {
            line.push_str(&format!("WARNING: {w}\n"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: SendQuota =
        SendQuota { max_send_rate: 14.0, max_24_hour_send: Some(50_000.0), sent_last_24_hours: 20_000.0 };

    #[test]
    fn the_setting_overrides_the_account_and_the_account_sizes_the_limiter_without_it() {
        let set = SendRates::choose(Some(2.0), Some(10.0), Some(5), Some(&QUOTA));
        assert_eq!((set.share, set.ceiling, set.source), (Some(2.0), Some(10.0), RateSource::Settings));
        let divided = SendRates::choose(None, None, Some(7), Some(&QUOTA));
        assert_eq!((divided.share, divided.ceiling, divided.source), (Some(2.0), Some(14.0), RateSource::GetAccount));
        let whole = SendRates::choose(None, None, None, Some(&QUOTA));
        assert_eq!((whole.share, whole.ceiling), (Some(14.0), Some(14.0)));
        let capped = SendRates::choose(Some(20.0), None, None, Some(&QUOTA));
        assert_eq!(capped.share, Some(14.0), "a share above the account's rate starts at the account's rate");
        let unread = SendRates::choose(None, None, Some(7), None);
        assert_eq!((unread.share, unread.source), (None, RateSource::Unlimited));
        let only_share = SendRates::choose(Some(3.0), None, None, None);
        assert_eq!(
            (only_share.share, only_share.ceiling, only_share.source),
            (Some(3.0), Some(3.0), RateSource::Settings)
        );
    }

    #[test]
    fn warns_only_when_the_rate_kept_up_for_a_day_would_pass_the_24_hour_quota() {
        // 50,000 a day is 0.58 mails/s.
        assert_eq!(exhaustion_warning(&QUOTA, 0.5), None);
        let w = exhaustion_warning(&QUOTA, 1.0).expect("1 mail/s is 86,400 a day");
        assert!(w.contains("30000 left") && w.contains("8.3 h"), "{w}");
        let unlimited = SendQuota { max_24_hour_send: None, ..QUOTA };
        assert_eq!(exhaustion_warning(&unlimited, 1000.0), None);
    }
}
