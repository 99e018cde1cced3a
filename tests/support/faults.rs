//! An HTTP fault injector in front of a real service: it forwards every request unchanged unless
//! a rule matches, and then answers with the fault instead (or delays the forward). The faults
//! have the exact shape AWS uses (restJson1: status, `x-amzn-ErrorType` header, JSON `message`),
//! so the real SDK parses and retries them as it would in production.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Action {
    /// 429 TooManyRequestsException, as SES answers above the sending rate.
    Throttle,
    /// 500 with no error type: a server fault the SDK retries.
    ServerError,
    /// 400 MessageRejected with this message.
    Reject(String),
    /// 400 SendingPausedException: the account cannot send.
    SendingPaused,
    /// Forward after this delay.
    Delay(Duration),
    /// Forward at once (the service acts on the request), then hold the response this long: the
    /// caller may be killed before it learns the outcome.
    Hold(Duration),
    /// Throttle (429) every request beyond this many per second, like an SES sending quota.
    Quota(f64),
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Applies when the request body contains this text (None: every request).
    pub body_contains: Option<String>,
    pub action: Action,
    /// How many more times the rule fires (None: always).
    pub remaining: Option<usize>,
    /// The share of matching requests (0.0-1.0) the rule fires on; the others fall through to
    /// the next rule (None: every matching request).
    pub probability: Option<f64>,
}

impl Rule {
    pub fn always(action: Action) -> Self {
        Self { body_contains: None, action, remaining: None, probability: None }
    }
    pub fn matching(text: &str, action: Action) -> Self {
        Self { body_contains: Some(text.to_owned()), action, remaining: None, probability: None }
    }
    /// Fires on this share of the requests it matches, at random.
    pub fn sometimes(mut self, probability: f64) -> Self {
        self.probability = Some(probability.clamp(0.0, 1.0));
        self
    }
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }
}

#[derive(Default)]
struct Shared {
    /// Token bucket for `Action::Quota`: (tokens, last refill).
    quota: Option<(f64, std::time::Instant)>,
    /// When each request arrived, in order (parallel to `requests`).
    arrivals: Vec<std::time::Instant>,
    rules: Vec<Rule>,
    /// Bodies of every request seen, for assertions on what the SDK sent (not kept once
    /// `track_accepted` is on: a long run would hold every mail in memory).
    requests: Vec<String>,
    faulted: usize,
    forwarded: usize,
    /// Requests answered 429 by `Action::Quota` (part of `faulted`).
    over_quota: usize,
    /// With `track_accepted`: the key of every request the upstream answered 2xx, and when.
    key_of: Option<fn(&str) -> Option<String>>,
    accepted: Vec<(String, std::time::Instant)>,
    /// With `witness_sends`: where each `SendEmail` the upstream accepted is announced, at the
    /// moment it was accepted (before any `Hold`), as SES's own Send event would be.
    witness: Option<tokio::sync::mpsc::UnboundedSender<AcceptedSend>>,
}

/// One `SendEmail` the upstream (SES) accepted: what SES's Send event says about the mail.
#[derive(Debug, Clone)]
pub struct AcceptedSend {
    /// The SES message id from the response.
    pub message_id: String,
    /// The request's `EmailTags`, name and value.
    pub tags: Vec<(String, String)>,
    /// The request's `Destination.ToAddresses`.
    pub to: Vec<String>,
    pub at: std::time::SystemTime,
}

impl AcceptedSend {
    /// From a `SendEmail` request body and the upstream's answer; `None` for anything else.
    fn parse(request: &str, response: &[u8]) -> Option<Self> {
        let req: serde_json::Value = serde_json::from_str(request).ok()?;
        let res: serde_json::Value = serde_json::from_slice(response).ok()?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
        };
        Some(Self {
            message_id: res["MessageId"].as_str()?.to_owned(),
            tags: req["EmailTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t["Name"].as_str()?.to_owned(), t["Value"].as_str()?.to_owned())))
                .collect(),
            to: strings(&req["Destination"]["ToAddresses"]),
            at: std::time::SystemTime::now(),
        })
    }

    /// The value of the tag `name`, if the mail carries it.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    shared: Arc<Mutex<Shared>>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            shared: Arc::clone(&shared),
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        };
        let app = axum::Router::new().fallback(handle).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, rule: Rule) {
        self.shared.lock().unwrap().rules.push(rule);
    }

    pub fn clear(&self) {
        self.shared.lock().unwrap().rules.clear();
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Arrival times of the requests whose body contains `text`.
    pub fn arrivals_of(&self, text: &str) -> Vec<std::time::Instant> {
        let s = self.shared.lock().unwrap();
        s.requests.iter().zip(&s.arrivals).filter(|(r, _)| r.contains(text)).map(|(_, t)| *t).collect()
    }

    /// (faulted, forwarded) request counts.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.shared.lock().unwrap();
        (s.faulted, s.forwarded)
    }

    /// Requests throttled by an `Action::Quota` rule.
    pub fn over_quota(&self) -> usize {
        self.shared.lock().unwrap().over_quota
    }

    /// From now on keep, instead of every request body, only `key_of(body)` and the time of each
    /// request the upstream accepted (2xx). For runs too long to hold every body.
    pub fn track_accepted(&self, key_of: fn(&str) -> Option<String>) {
        let mut s = self.shared.lock().unwrap();
        s.key_of = Some(key_of);
        s.requests.clear();
        s.arrivals.clear();
    }

    /// How many requests the upstream accepted so far (with `track_accepted`).
    pub fn accepted_count(&self) -> usize {
        self.shared.lock().unwrap().accepted.len()
    }

    /// From now on, announce every `SendEmail` the upstream accepts, the moment it does (before a
    /// `Hold` keeps the answer from the caller): what SES publishes as its Send event.
    pub fn witness_sends(&self) -> tokio::sync::mpsc::UnboundedReceiver<AcceptedSend> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.shared.lock().unwrap().witness = Some(tx);
        rx
    }

    /// Every accepted request's key and time, in order (with `track_accepted`).
    pub fn accepted(&self) -> Vec<(String, std::time::Instant)> {
        self.shared.lock().unwrap().accepted.clone()
    }
}

/// The recipient of an SES v2 `SendEmail` request body, for `track_accepted`.
pub fn ses_recipient(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["Destination"]["ToAddresses"][0].as_str().map(str::to_owned)
}

fn aws_error(status: u16, error_type: Option<&str>, message: &str) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string());
    if let Some(t) = error_type {
        b = b.header("x-amzn-errortype", t);
    }
    b.body(Body::from(serde_json::json!({ "message": message }).to_string())).expect("response")
}

async fn handle(State(proxy): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let action = {
        let mut s = proxy.shared.lock().unwrap();
        if s.key_of.is_none() {
            s.requests.push(text.clone());
            s.arrivals.push(std::time::Instant::now());
        }
        let hit = s.rules.iter_mut().find(|r| {
            r.remaining != Some(0)
                && r.body_contains.as_deref().is_none_or(|needle| text.contains(needle))
                && r.probability.is_none_or(|p| rand::random::<f64>() < p)
        });
        let mut action = hit.map(|r| {
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            r.action.clone()
        });
        if let Some(Action::Quota(per_sec)) = action {
            let now = std::time::Instant::now();
            let (tokens, at) = s.quota.unwrap_or((per_sec, now));
            let tokens = (tokens + now.duration_since(at).as_secs_f64() * per_sec).min(per_sec);
            if tokens >= 1.0 {
                s.quota = Some((tokens - 1.0, now));
                action = None;
            } else {
                s.quota = Some((tokens, now));
                s.over_quota += 1;
                action = Some(Action::Throttle);
            }
        }
        match &action {
            Some(Action::Delay(_) | Action::Hold(_)) | None => s.forwarded += 1,
            Some(_) => s.faulted += 1,
        }
        action
    };
    match action {
        Some(Action::Throttle) => {
            return aws_error(429, Some("TooManyRequestsException"), "Maximum sending rate exceeded.");
        }
        Some(Action::ServerError) => return aws_error(500, None, "Internal failure"),
        Some(Action::Reject(message)) => return aws_error(400, Some("MessageRejected"), &message),
        Some(Action::SendingPaused) => {
            return aws_error(400, Some("SendingPausedException"), "Sending is paused for this account.");
        }
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::Hold(_) | Action::Quota(_)) | None => {}
    }
    let uri = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut forward = hyper::Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        if k != "host" {
            forward = forward.header(k, v);
        }
    }
    let forward = match forward.body(Body::from(bytes)) {
        Ok(f) => f,
        Err(e) => return aws_error(500, None, &format!("fault proxy: {e}")),
    };
    // Forwarded, the request runs to its end on its own task: a caller killed while SES is
    // answering (the soak SIGKILLs workers) closes its connection, and hyper then drops this
    // handler; SES has accepted the mail all the same, so its witness and its acceptance must not
    // be dropped with the handler (they were: the emulator held a mail the witness never saw).
    let upstream = tokio::spawn(forward_and_witness(proxy.clone(), forward, text));
    let response = match upstream.await {
        Ok(response) => response,
        Err(e) => return aws_error(502, None, &format!("fault proxy: forwarding failed: {e}")),
    };
    if let Some(Action::Hold(d)) = action {
        tokio::time::sleep(d).await;
    }
    response.unwrap_or_else(|e| aws_error(502, None, &format!("fault proxy: upstream unreachable: {e}")))
}

/// Forwards one request upstream and, when the upstream accepts it, announces it to the witness
/// and logs its acceptance (with `track_accepted`) at that moment: what SES itself knows as soon
/// as it answers, whether or not the caller lives to read the answer.
async fn forward_and_witness(
    proxy: Proxy,
    forward: hyper::Request<Body>,
    text: String,
) -> Result<Response, hyper_util::client::legacy::Error> {
    let res = proxy.client.request(forward).await?;
    if !res.status().is_success() {
        let (parts, body) = res.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    // The answer is read whole (a small JSON document) so its MessageId can be announced now,
    // while SES has accepted the mail and the caller does not know it yet.
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = proxy.shared.lock().unwrap();
    if let Some(witness) = &s.witness
        && let Some(sent) = AcceptedSend::parse(&text, &bytes)
    {
        let _ = witness.send(sent);
    }
    if let Some(key) = s.key_of.and_then(|key_of| key_of(&text)) {
        s.accepted.push((key, std::time::Instant::now()));
    }
    drop(s);
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
