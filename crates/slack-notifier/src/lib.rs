//! slack-notifier: tells a Slack channel, exactly once per real change, that a Crossplane-managed
//! AWS resource is ready, deleted or failed (ARCHITECTURE.md). Exactly once comes from the
//! shared claim protocol ([`common::idempotency`]) around the post, keyed by the change's
//! identity ([`change`]), which every trigger path agrees on.

pub mod answer;
pub mod change;
pub mod message;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use common::aws::CallCounter;
use common::fleet::{Fleet, FleetSettings};
use common::idempotency::{Config, DynamoStore, Effect, Expiry, Idempotency, OnUncertain, Ran};
use common::model::Lifecycle;
use common::resolve::{Arn, Guard};
use common::runtime::{Handler, Invocation, Outcome};
use common::tagging::TaggingApi;
use common::{HandlerError, ResourceEvent};

use crate::change::{Change, Identified};
use crate::message::Facts;
use crate::webhook::{Allowlist, Poster, WebhookSource};

pub const NAME: &str = "slack-notifier";

/// Every AWS operation this function's code calls (as the SDK names it: `Service.Operation`),
/// with the IAM actions it needs. The one declaration the deployment's IAM policy is checked
/// against (`tests/infra`), and that the moto tests check every call made against.
pub const AWS_OPERATIONS: &[(&str, &[&str])] = &[
    ("RDS.ListTagsForResource", &["rds:ListTagsForResource"]),
    ("RDS.DescribeDBInstances", &["rds:DescribeDBInstances"]),
    ("RDS.DescribeDBClusters", &["rds:DescribeDBClusters"]),
    ("Resource Groups Tagging API.GetResources", &["tag:GetResources"]),
    ("Secrets Manager.GetSecretValue", &["secretsmanager:GetSecretValue"]),
    ("DynamoDB.PutItem", &["dynamodb:PutItem"]),
    ("DynamoDB.GetItem", &["dynamodb:GetItem"]),
    ("DynamoDB.UpdateItem", &["dynamodb:UpdateItem"]),
    ("DynamoDB.DeleteItem", &["dynamodb:DeleteItem"]),
];

/// The AWS_OPERATIONS always made with the function's own (home) credentials, never a member's.
pub const HOME_OPERATIONS: &[&str] = &[
    "Secrets Manager.GetSecretValue",
    "DynamoDB.PutItem",
    "DynamoDB.GetItem",
    "DynamoDB.UpdateItem",
    "DynamoDB.DeleteItem",
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
    /// `IDEMPOTENCY_TTL_SECONDS` (default 7 days), `IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS` (900),
    /// `SLACK_ON_UNCERTAIN_DELIVERY` (default `assume-delivered`), and how long a duplicate
    /// waits for another invocation's claim (2 s).
    pub idempotency: Config,
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
            idempotency: Config::default(),
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
        settings.idempotency.expiry = Expiry {
            completed_ttl: seconds("IDEMPOTENCY_TTL_SECONDS", 7 * 24 * 3600)?,
            max_in_progress: seconds("IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS", 900)?,
        };
        if let Some(policy) = var("SLACK_ON_UNCERTAIN_DELIVERY") {
            settings.idempotency.on_uncertain = OnUncertain::parse(&policy)
                .ok_or_else(|| format!("SLACK_ON_UNCERTAIN_DELIVERY={policy:?}: expected assume-delivered or retry"))?;
        }
        settings.guard = Guard::from_env();
        Ok(settings)
    }
}

/// The notifier in one account and region: its reads of the resource there, and what every
/// account and region shares.
pub struct SlackNotifier {
    tagging: TaggingApi,
    rds: aws_sdk_rds::Client,
    home: Arc<Home>,
}

/// What the notifier keeps in its own account whatever account a resource is in: the
/// idempotency table, the webhook, and the pacing of posts to the one Slack channel.
struct Home {
    idempotency: Idempotency<DynamoStore>,
    webhook: WebhookSource,
    poster: Poster,
    settings: Settings,
}

impl Home {
    fn new(sdk: &SdkConfig, settings: Settings, counter: Option<&CallCounter>) -> Result<Self, String> {
        settings.idempotency.check()?;
        Ok(Home {
            idempotency: Idempotency::new(
                DynamoStore::new(
                    common::sdk_client!(aws_sdk_dynamodb, sdk, counter),
                    settings.table.clone(),
                ),
                settings.idempotency,
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
}

/// The notifier in every account and region it may act in (main.rs): it reads a resource with
/// that account's credentials, and announces through its own table, webhook and pacing.
pub fn fleet(
    sdk: SdkConfig,
    settings: Settings,
    fleet: FleetSettings,
    counter: Option<&CallCounter>,
) -> Result<Fleet<SlackNotifier>, String> {
    // One guard: the fleet's, which every account's handler checks again.
    let settings = Settings {
        guard: fleet.guard.clone(),
        ..settings
    };
    let home = Arc::new(Home::new(&sdk, settings, counter)?);
    let counter = counter.cloned();
    Ok(Fleet::new(NAME, sdk, fleet, (), move |at| {
        SlackNotifier::at(at, Arc::clone(&home), counter.as_ref())
    }))
}

impl SlackNotifier {
    /// Builds the SDK and HTTP clients for the function's own account and region. `counter` counts every AWS call.
    pub fn from_sdk_config(sdk: &SdkConfig, settings: Settings, counter: Option<&CallCounter>) -> Result<Self, String> {
        let home = Arc::new(Home::new(sdk, settings, counter)?);
        Ok(Self::at(sdk, home, counter))
    }

    fn at(sdk: &SdkConfig, home: Arc<Home>, counter: Option<&CallCounter>) -> Self {
        let rds = common::sdk_client!(aws_sdk_rds, sdk, counter);
        SlackNotifier {
            tagging: TaggingApi::new(
                common::sdk_client!(aws_sdk_resourcegroupstagging, sdk, counter),
                rds.clone(),
            ),
            rds,
            home,
        }
    }

    async fn notify(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        if let Some(skipped) = answer::unwanted(&self.home.settings.notify_on, event.lifecycle) {
            return Ok(skipped);
        }
        let lookup = change::Lookup {
            tagging: &self.tagging,
            rds: &self.rds,
            store: self.home.idempotency.store(),
            guard: &self.home.settings.guard,
        };
        let change = match change::identify(NAME, event, invocation, &lookup).await? {
            Identified::Change(change) => *change,
            Identified::NotAnnounced(outcome) => return Ok(outcome),
        };
        let webhook = self.home.webhook.get().await?;
        let Change {
            key,
            description,
            resource,
            arn,
            ..
        } = &change;
        let arn = arn.as_deref();
        let account = arn
            .and_then(Arn::parse)
            .map(|a| a.account.to_string())
            .filter(|a| !a.is_empty());
        let payload = message::build(&Facts {
            event,
            resource,
            arn,
            account: account.as_deref().or(Some(invocation.scope.account.as_str())),
        });
        let owner = format!("{}:{}", invocation.request_id, event.id);
        let ran = self
            .home
            .idempotency
            .run(key, description, &owner, invocation.deadline, |deadline| {
                let (webhook, payload, change, store) = (&webhook, &payload, &change, lookup.store);
                let expiry = &self.home.settings.idempotency.expiry;
                async move {
                    // A readiness is remembered before it is posted: if remembering fails, nothing
                    // is posted and the claim is released for a retry.
                    if change.lifecycle == Lifecycle::Ready
                        && let Err(error) = change::remember_lifetime(change, store, expiry).await
                    {
                        return Effect::Failed(error);
                    }
                    let posted = self
                        .home
                        .poster
                        .post(webhook, payload, deadline, &invocation.metrics)
                        .await;
                    answer::effect(posted, event.lifecycle, description)
                }
            })
            .await?;
        // An announced deletion ends the lifetime: its memory now expires like a record.
        let lifetime_not_expiring = match &ran {
            Ran::Acted { .. } if change.lifecycle == Lifecycle::Deleted => change::remember_lifetime(
                &change,
                lookup.store,
                &self.home.settings.idempotency.expiry,
            )
            .await
            .err()
            .map(|error| {
                tracing::warn!(event = %event.id, error = %error, "announced, but the lifetime's expiry was not set");
                error.to_string()
            }),
            _ => None,
        };
        Ok(answer::answer(ran, arn, &webhook, lifetime_not_expiring.as_deref()))
    }

    /// The claim protocol (tests reach its records through it).
    pub fn idempotency(&self) -> &Idempotency<DynamoStore> {
        &self.home.idempotency
    }

    /// The change `event` reports, as the notifier identifies it (tests compute keys with it).
    pub async fn identify(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Identified, HandlerError> {
        let lookup = change::Lookup {
            tagging: &self.tagging,
            rds: &self.rds,
            store: self.home.idempotency.store(),
            guard: &self.home.settings.guard,
        };
        change::identify(NAME, event, invocation, &lookup).await
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
                include_str!("change.rs"),
                include_str!("../../common/src/tagging.rs"),
                include_str!("../../common/src/rds.rs"),
                include_str!("../../common/src/idempotency/dynamodb.rs"),
            ],
        );
    }
}
