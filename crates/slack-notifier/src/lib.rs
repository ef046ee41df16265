//! slack-notifier: tells a Slack channel, exactly once per real change, that a Crossplane-managed
//! AWS resource is ready, deleted or failed (DESIGN.md §6). Exactly once comes from the shared
//! idempotency store ([`common::idempotency`]), keyed by the change's meaning.

pub mod message;
pub mod webhook;

use std::time::Duration;

use aws_config::SdkConfig;
use common::aws::CallCounter;
use common::idempotency::{self, Claim, Expiry, Store};
use common::model::Lifecycle;
use common::resolve::{self, Arn, Guard};
use common::runtime::{Handler, Invocation, Outcome, OutcomeKind};
use common::tagging::TaggingApi;
use common::{HandlerError, ResourceEvent};
use tokio::time::Instant;

use crate::message::Facts;
use crate::webhook::{Allowlist, Poster, WebhookSource};

pub const NAME: &str = "slack-notifier";

/// Every AWS operation this function's code calls (as the SDK names it: `Service.Operation`),
/// with the IAM actions it needs. The one declaration the deployment's IAM policy is checked
/// against (`tests/infra`), and that the moto tests check every call made against.
pub const AWS_OPERATIONS: &[(&str, &[&str])] = &[
    ("RDS.ListTagsForResource", &["rds:ListTagsForResource"]),
    ("Resource Groups Tagging API.GetResources", &["tag:GetResources"]),
    ("Secrets Manager.GetSecretValue", &["secretsmanager:GetSecretValue"]),
    ("DynamoDB.PutItem", &["dynamodb:PutItem"]),
    ("DynamoDB.GetItem", &["dynamodb:GetItem"]),
    ("DynamoDB.UpdateItem", &["dynamodb:UpdateItem"]),
    ("DynamoDB.DeleteItem", &["dynamodb:DeleteItem"]),
];

/// The configuration, from the environment (documented in the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SLACK_WEBHOOK_SECRET`: the Secrets Manager secret holding the webhook URL.
    pub webhook_secret: String,
    /// `SLACK_WEBHOOK_CACHE_SECONDS` (default 300).
    pub webhook_ttl: Duration,
    /// `SLACK_ALLOWED_HOSTS`, `SLACK_ALLOW_LOOPBACK_HTTP`.
    pub allowlist: Allowlist,
    /// `SLACK_MIN_INTERVAL_MS` (default 1000): at most one message per interval per webhook.
    pub min_interval: Duration,
    /// `NOTIFY_ON` (default `ready,deleted,failed`).
    pub notify_on: Vec<Lifecycle>,
    /// `IDEMPOTENCY_TABLE`: the DynamoDB table (partition key `id`, TTL attribute `expires_at`).
    pub table: String,
    /// `IDEMPOTENCY_TTL_SECONDS` (default 7 days), `IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS` (900).
    pub expiry: Expiry,
    /// How long a duplicate waits for another invocation's claim to complete (default 2 s).
    pub wait_for_other: Duration,
    pub guard: Guard,
}

impl Settings {
    pub fn new(webhook_secret: impl Into<String>, table: impl Into<String>) -> Self {
        Settings {
            webhook_secret: webhook_secret.into(),
            webhook_ttl: Duration::from_secs(300),
            allowlist: Allowlist::default(),
            min_interval: Duration::from_millis(1000),
            notify_on: vec![Lifecycle::Ready, Lifecycle::Deleted, Lifecycle::Failed],
            table: table.into(),
            expiry: Expiry::default(),
            wait_for_other: Duration::from_secs(2),
            guard: Guard::default(),
        }
    }

    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let required = |name: &str| var(name).ok_or_else(|| format!("{name} must be set"));
        let seconds = |name: &str, default: u64| -> Result<Duration, String> {
            match var(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{name}={v:?} is not a number of seconds")),
            }
        };
        let mut settings = Settings::new(required("SLACK_WEBHOOK_SECRET")?, required("IDEMPOTENCY_TABLE")?);
        settings.webhook_ttl = seconds("SLACK_WEBHOOK_CACHE_SECONDS", 300)?;
        if let Some(hosts) = var("SLACK_ALLOWED_HOSTS") {
            settings.allowlist.hosts = hosts
                .split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect();
        }
        settings.allowlist.loopback_http = var("SLACK_ALLOW_LOOPBACK_HTTP").is_some_and(|v| v == "true");
        if let Some(ms) = var("SLACK_MIN_INTERVAL_MS") {
            settings.min_interval = Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("SLACK_MIN_INTERVAL_MS={ms:?} is not a number"))?,
            );
        }
        if let Some(list) = var("NOTIFY_ON") {
            settings.notify_on = list
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    Lifecycle::parse(l)
                        .ok_or_else(|| format!("NOTIFY_ON: {l:?} is not ready, updated, deleted, failed or observed"))
                })
                .collect::<Result<_, _>>()?;
        }
        settings.expiry = Expiry {
            completed_ttl: seconds("IDEMPOTENCY_TTL_SECONDS", 7 * 24 * 3600)?,
            max_in_progress: seconds("IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS", 900)?,
        };
        settings.guard = Guard::from_env();
        Ok(settings)
    }
}

pub struct SlackNotifier {
    tagging: TaggingApi,
    store: Store,
    webhook: WebhookSource,
    poster: Poster,
    settings: Settings,
}

impl SlackNotifier {
    /// Builds the SDK and HTTP clients once (cold start). `counter` counts every AWS call.
    pub fn from_sdk_config(sdk: &SdkConfig, settings: Settings, counter: Option<&CallCounter>) -> Result<Self, String> {
        Ok(SlackNotifier {
            tagging: TaggingApi::new(
                common::sdk_client!(aws_sdk_resourcegroupstagging, sdk, counter),
                common::sdk_client!(aws_sdk_rds, sdk, counter),
            ),
            store: Store::new(
                common::sdk_client!(aws_sdk_dynamodb, sdk, counter),
                settings.table.clone(),
                settings.expiry,
            ),
            webhook: WebhookSource::new(
                common::sdk_client!(aws_sdk_secretsmanager, sdk, counter),
                settings.webhook_secret.clone(),
                settings.allowlist.clone(),
                settings.webhook_ttl,
            ),
            poster: Poster::new(settings.min_interval)?,
            settings,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the resource is: for `ready`, resolved and checked live (a stale or forged event
    /// for something that is not there, or not Crossplane's, is not announced); for `deleted`
    /// and `failed` the resource may not exist, so only the ARN's account and region are checked.
    async fn locate(
        &self,
        event: &ResourceEvent,
        invocation: &Invocation,
    ) -> Result<Result<Option<String>, Outcome>, HandlerError> {
        let resource = &event.resource;
        if event.lifecycle == Lifecycle::Ready {
            return match resolve::resolve(resource, &invocation.scope, &self.settings.guard, &self.tagging).await {
                Ok(resolved) => Ok(Ok(Some(resolved.arn))),
                Err(why) => common::runtime::unresolved(why).map(Err),
            };
        }
        let arn = resolve::arn_of(resource, &invocation.scope);
        if let Some(arn) = &arn
            && let Err(why) = self
                .settings
                .guard
                .check(arn, resource.region.as_deref(), &invocation.scope)
        {
            return Ok(Err(Outcome::new(OutcomeKind::Refused, Some(arn), why)));
        }
        Ok(Ok(arn))
    }

    async fn notify(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        if !self.settings.notify_on.contains(&event.lifecycle) {
            let detail = format!("{}: not one of NOTIFY_ON", event.lifecycle.as_str());
            return Ok(Outcome::new(OutcomeKind::Skipped, None, detail));
        }
        let arn = match self.locate(event, invocation).await? {
            Ok(arn) => arn,
            Err(outcome) => return Ok(outcome),
        };
        let webhook = self.webhook.get().await?;
        let key = idempotency::key_for(NAME, event);
        let description = format!(
            "{} {} {}",
            event.resource.subject(),
            event.lifecycle.as_str(),
            event.transition_time.as_deref().unwrap_or("-")
        );
        let owner = format!("{}:{}", invocation.request_id, event.id);
        let token = match self
            .store
            .claim(&key, &description, &owner, invocation.remaining())
            .await?
        {
            Claim::Acquired(token) => token,
            Claim::Completed(result) => {
                return Ok(Outcome::new(
                    OutcomeKind::Duplicate,
                    arn.as_deref(),
                    format!("already notified: {result}"),
                ));
            }
            Claim::InProgress { .. } => return self.wait_for_other(&key, arn.as_deref(), invocation).await,
        };
        let account = arn
            .as_deref()
            .and_then(Arn::parse)
            .map(|a| a.account.to_string())
            .filter(|a| !a.is_empty());
        let payload = message::build(&Facts {
            event,
            arn: arn.as_deref(),
            account: account.as_deref().or(Some(invocation.scope.account.as_str())),
        });
        match self.poster.post(&webhook, &payload, invocation.deadline).await {
            Ok(()) => {
                let result = format!("posted {} for {description}", event.lifecycle.as_str());
                self.store.complete(&token, &result).await?;
                Ok(Outcome::new(
                    OutcomeKind::Applied,
                    arn.as_deref(),
                    format!("posted to Slack ({webhook})"),
                ))
            }
            Err(error) => {
                // Give the change back, so a retry (or a fixed configuration) can post it.
                if let Err(release) = self.store.release(&token).await {
                    tracing::warn!(error = %release, "could not release the idempotency claim; it expires on its own");
                }
                Err(error)
            }
        }
    }

    /// Another invocation is posting this very change: wait briefly for it to finish.
    async fn wait_for_other(
        &self,
        key: &str,
        arn: Option<&str>,
        invocation: &Invocation,
    ) -> Result<Outcome, HandlerError> {
        let until = Instant::now() + self.settings.wait_for_other.min(invocation.remaining() / 4);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(Claim::Completed(result)) = self.store.peek(key).await? {
                return Ok(Outcome::new(
                    OutcomeKind::Duplicate,
                    arn,
                    format!("notified by another invocation: {result}"),
                ));
            }
        }
        Err(HandlerError::Retryable(
            "another invocation is posting this change; retry to confirm it was sent".into(),
        ))
    }
}

impl Handler for SlackNotifier {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        self.notify(event, invocation).await
    }
}

#[cfg(test)]
mod declaration_tests {
    /// Every operation in AWS_OPERATIONS is called by this function's code (the moto tests
    /// check the converse: every call made is declared).
    #[test]
    fn every_declared_operation_is_called() {
        common::testing::assert_declared_operations_are_called(
            super::AWS_OPERATIONS,
            &[
                include_str!("lib.rs"),
                include_str!("webhook.rs"),
                include_str!("../../common/src/tagging.rs"),
                include_str!("../../common/src/idempotency.rs"),
            ],
        );
    }
}
