//! The Slack incoming webhook: its URL from Secrets Manager (cached), checked against the
//! allowlist before any request, and posting with Slack's answers handled (ARCHITECTURE.md §6).
//! The URL is itself a secret: it never reaches a log line, an error or an outcome.

use std::fmt;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsClient;
use common::HandlerError;
use common::aws::AwsError;
use common::cache::TtlCache;
use common::metrics::{Metrics, SLACK_ANSWERS};
use reqwest::{StatusCode, Url};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A webhook URL that passed the allowlist. `Debug`/`Display` show only the host.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook(Url);

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({}/***)", self.0.host_str().unwrap_or("?"))
    }
}

impl fmt::Display for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/***", self.0.host_str().unwrap_or("?"))
    }
}

/// Which webhook URLs are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    /// `SLACK_ALLOWED_HOSTS` (default `hooks.slack.com`): exact host names, `https` only.
    pub hosts: Vec<String>,
    /// `SLACK_ALLOW_LOOPBACK_HTTP=true`: also `http://127.0.0.1:*` (the local test bed only).
    pub loopback_http: bool,
}

impl Default for Allowlist {
    fn default() -> Self {
        Allowlist {
            hosts: vec!["hooks.slack.com".to_string()],
            loopback_http: false,
        }
    }
}

impl Allowlist {
    /// Accepts `raw` if it is an `https` URL on an allowed host. The error never repeats the URL.
    pub fn check(&self, raw: &str) -> Result<Webhook, String> {
        let url = Url::parse(raw.trim()).map_err(|_| "the webhook URL in the secret is not a URL".to_string())?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let loopback = self.loopback_http && url.scheme() == "http" && host == "127.0.0.1";
        if url.scheme() != "https" && !loopback {
            return Err(format!("the webhook URL must use https, not {}", url.scheme()));
        }
        if !loopback && !self.hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(&host)) {
            return Err(format!(
                "webhook host {host} is not on the allowlist ({})",
                self.hosts.join(", ")
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the webhook URL must not carry credentials".to_string());
        }
        Ok(Webhook(url))
    }
}

/// The webhook URL, read from a Secrets Manager secret (a bare URL, or JSON with `url` or
/// `webhook_url`), cached for a TTL.
#[derive(Debug)]
pub struct WebhookSource {
    client: SecretsClient,
    secret_id: String,
    allowlist: Allowlist,
    cached: TtlCache<Webhook>,
}

impl WebhookSource {
    pub fn new(client: SecretsClient, secret_id: String, allowlist: Allowlist, ttl: Duration) -> Self {
        WebhookSource {
            client,
            secret_id,
            allowlist,
            cached: TtlCache::new(ttl),
        }
    }

    pub async fn get(&self) -> Result<Webhook, HandlerError> {
        self.cached.get_or_load(|| self.load()).await
    }

    async fn load(&self) -> Result<Webhook, HandlerError> {
        let value = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                let error = AwsError::from_sdk("GetSecretValue", &e);
                if error.is_code("ResourceNotFoundException") {
                    HandlerError::permanent(format!("the webhook secret {} does not exist", self.secret_id), error)
                } else {
                    error.into()
                }
            })?;
        let text = value.secret_string().unwrap_or_default();
        let raw = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => json
                .get("url")
                .or_else(|| json.get("webhook_url"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    HandlerError::Permanent(
                        format!("the webhook secret {} holds JSON without a url field", self.secret_id).into(),
                    )
                })?,
            Err(_) => text.to_string(),
        };
        let webhook = self
            .allowlist
            .check(&raw)
            .map_err(|why| HandlerError::Permanent(format!("webhook secret {}: {why}", self.secret_id).into()))?;
        Ok(webhook)
    }
}

/// Why a post did not succeed: certainly not delivered (a retry may post), or perhaps
/// delivered (the request left and no answer came back: a retry may post a second message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undelivered {
    Certainly(HandlerError),
    Perhaps(HandlerError),
}

impl Undelivered {
    pub fn error(&self) -> &HandlerError {
        match self {
            Undelivered::Certainly(e) | Undelivered::Perhaps(e) => e,
        }
    }
}

/// Whether a failed request may have reached Slack: not when the connection (or its TLS
/// handshake) was never made; perhaps on a timeout or a reset after it was made.
fn classify(error: reqwest::Error, webhook: &Webhook) -> Undelivered {
    let never_sent = error.is_connect() || error.is_builder();
    // Never the URL: it is the webhook's secret. The causes say what happened.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    // The cause is the error without its URL.
    if never_sent {
        Undelivered::Certainly(HandlerError::retryable(
            format!("could not connect to Slack ({webhook}): {text}"),
            error,
        ))
    } else {
        Undelivered::Perhaps(HandlerError::retryable(
            format!("no answer from Slack ({webhook}) after sending the message: {text}"),
            error,
        ))
    }
}

/// Posts to Slack no faster than one message per interval (Slack allows about one a second
/// per webhook), so the records of an SQS batch do not trip its rate limit.
#[derive(Debug)]
pub struct Poster {
    http: reqwest::Client,
    min_interval: Duration,
    next_slot: Mutex<Instant>,
    /// Time kept in hand at the end of the invocation.
    reserve: Duration,
}

/// The longest one request to Slack may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many 429 answers are honoured within one invocation.
const MAX_RATE_LIMITED: u32 = 3;

impl Poster {
    pub fn new(min_interval: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("crossplane-lambda-slack-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Poster {
            http,
            min_interval,
            next_slot: Mutex::new(Instant::now()),
            reserve: Duration::from_millis(500),
        })
    }

    /// Books the next free slot of the rate limit and waits for it. A slot that starts too late to
    /// post before `deadline` is not booked: `false`. Booked and then abandoned, it would push every
    /// later post further out, and the slots are shared by every invocation running at once.
    async fn pace(&self, deadline: Instant) -> bool {
        let start = {
            let mut next = self.next_slot.lock().await;
            let start = (*next).max(Instant::now());
            if start + self.reserve >= deadline {
                return false;
            }
            *next = start + self.min_interval;
            start
        };
        tokio::time::sleep_until(start).await;
        true
    }

    /// Posts `payload`. 200 `ok`: done. 429: waits `Retry-After` if it fits before `deadline`,
    /// else retryable. 5xx, timeouts, connection errors: retryable. Other 4xx: permanent, with
    /// Slack's error string.
    pub async fn post(
        &self,
        webhook: &Webhook,
        payload: &serde_json::Value,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<(), Undelivered> {
        let answered = |class: &str| metrics.count(SLACK_ANSWERS, &[("Class", class)], 1.0);
        let certainly = |e: HandlerError| Undelivered::Certainly(e);
        let body = serde_json::to_vec(payload)
            .map_err(|e| certainly(HandlerError::permanent(format!("could not encode the message: {e}"), e)))?;
        let mut rate_limited = 0;
        loop {
            if !self.pace(deadline).await {
                return Err(certainly(HandlerError::Retryable(
                    "no time left to post to Slack: the rate limit's next free slot comes too late".into(),
                )));
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(self.reserve);
            if left.is_zero() {
                return Err(certainly(HandlerError::Retryable(
                    "no time left to post to Slack".into(),
                )));
            }
            let response = self
                .http
                .post(webhook.0.clone())
                .header("content-type", "application/json")
                .body(body.clone())
                .timeout(left.min(REQUEST_TIMEOUT))
                .send()
                .await
                .map_err(|e| classify(e, webhook))
                .inspect_err(|undelivered| {
                    answered(match undelivered {
                        Undelivered::Certainly(_) => "unreachable",
                        Undelivered::Perhaps(_) => "uncertain",
                    })
                })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = response.text().await.unwrap_or_default();
            let said: String = text.chars().take(200).collect();
            match status {
                StatusCode::OK => {
                    answered("ok");
                    return Ok(());
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    answered("rate_limited");
                    let wait = Duration::from_secs(retry_after.unwrap_or(1));
                    rate_limited += 1;
                    if rate_limited > MAX_RATE_LIMITED || Instant::now() + wait + self.reserve >= deadline {
                        return Err(certainly(HandlerError::Retryable(
                            format!(
                                "Slack rate-limited the webhook; Retry-After {}s does not fit in the time left",
                                wait.as_secs()
                            )
                            .into(),
                        )));
                    }
                    tracing::info!(
                        retry_after_s = wait.as_secs(),
                        "Slack rate-limited the webhook: waiting"
                    );
                    let mut next = self.next_slot.lock().await;
                    *next = (*next).max(Instant::now() + wait);
                }
                s if s.is_server_error() => {
                    answered("server_error");
                    return Err(certainly(HandlerError::Retryable(
                        format!("Slack answered {s}: {said}").into(),
                    )));
                }
                s => {
                    answered("client_error");
                    return Err(certainly(HandlerError::Permanent(
                        format!("Slack refused the message ({s}): {said}").into(),
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(start_paused = true)]
    async fn a_slot_too_late_for_the_deadline_is_not_booked() {
        use tokio::time::{Duration, Instant};
        let poster = super::Poster::new(Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        assert!(
            poster.pace(start + Duration::from_secs(10)).await,
            "the first slot is now"
        );
        assert_eq!(Instant::now(), start);
        // The next slot is at 1 s; with 0.5 s to post it would end past a deadline at 1.2 s.
        assert!(!poster.pace(start + Duration::from_millis(1200)).await);
        assert_eq!(Instant::now(), start, "no wait for a slot not taken");
        // Not booked: the next caller gets the slot at 1 s, not at 2 s.
        assert!(poster.pace(start + Duration::from_secs(10)).await);
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
    }

    use super::*;

    #[test]
    fn the_allowlist() {
        let list = Allowlist::default();
        assert!(list.check("https://hooks.slack.com/services/T0/B0/XYZ").is_ok());
        let err = list.check("https://evil.example.com/services/T0/B0/XYZ").unwrap_err();
        assert!(err.contains("evil.example.com") && !err.contains("XYZ"), "{err}");
        assert!(
            list.check("http://hooks.slack.com/services/T0/B0/XYZ")
                .unwrap_err()
                .contains("https")
        );
        assert!(
            list.check("http://127.0.0.1:8080/services/x").is_err(),
            "loopback only when enabled"
        );
        assert!(list.check("https://user:pw@hooks.slack.com/x").is_err());
        assert!(list.check("not a url").unwrap_err().contains("not a URL"));
        let local = Allowlist {
            loopback_http: true,
            ..Allowlist::default()
        };
        assert!(local.check("http://127.0.0.1:8080/services/x").is_ok());
        assert!(local.check("http://10.0.0.1:8080/services/x").is_err());
    }

    #[test]
    fn a_webhook_never_prints_its_path() {
        let webhook = Allowlist::default()
            .check("https://hooks.slack.com/services/T0/B0/SECRETPART")
            .unwrap();
        assert_eq!(
            format!("{webhook} {webhook:?}"),
            "hooks.slack.com/*** Webhook(hooks.slack.com/***)"
        );
    }
}
