//! tagger: makes every Crossplane-managed AWS resource carry the tags the platform requires
//! (ARCHITECTURE.md §6): a policy from SSM Parameter Store plus tags derived from the managed resource,
//! checked against AWS's tag rules, written as a difference only.

pub mod plan;
pub mod policy;
pub mod rules;
pub mod write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use common::aws::CallCounter;
use common::fleet::{Fleet, FleetSettings};
use common::kinds::{KNOWN_KINDS, KnownKind};
use common::model::Lifecycle;
use common::resolve::{Guard, TagReader};
use common::runtime::{Handler, Invocation, Outcome, OutcomeKind, Resolution, resolve_event};
use common::sweep::{Inventory, Page, Requeue};
use common::tagging::{LiveCheck, RdsLiveCheck, TaggingApi};
use common::{HandlerError, ResourceEvent};

use crate::policy::{CachedPolicy, PolicySource, TagPolicy};
use crate::write::{Backoff, TagWriter};

/// Tags by key.
pub type TagSet = BTreeMap<String, String>;

pub const NAME: &str = "tagger";

/// Every AWS operation this function's code calls (as the SDK names it: `Service.Operation`),
/// with the IAM actions it needs. The one declaration the deployment's IAM policy is checked
/// against (`tests/infra`), and that the moto tests check every call made against.
pub const AWS_OPERATIONS: &[(&str, &[&str])] = &[
    // Resolution: the tags of RDS resources, and lookup by Crossplane's tags for the rest.
    ("RDS.ListTagsForResource", &["rds:ListTagsForResource"]),
    ("Resource Groups Tagging API.GetResources", &["tag:GetResources"]),
    // The liveness check before a write.
    ("RDS.DescribeDBInstances", &["rds:DescribeDBInstances"]),
    ("RDS.DescribeDBClusters", &["rds:DescribeDBClusters"]),
    // The policy.
    ("SSM.GetParameter", &["ssm:GetParameter"]),
    // A sweep's continuation: the function invokes itself.
    ("Lambda.Invoke", &["lambda:InvokeFunction"]),
    // The write: the tagging API calls each service's own tagging action on our behalf.
    (
        "Resource Groups Tagging API.TagResources",
        &[
            "tag:TagResources",
            "rds:AddTagsToResource",
            "s3:GetBucketTagging",
            "s3:PutBucketTagging",
            "sqs:TagQueue",
            "dynamodb:TagResource",
            "secretsmanager:TagResource",
        ],
    ),
];

/// The operations of AWS_OPERATIONS made with the function's own credentials, in its own account,
/// whatever account the resource is in: a member account's role does not grant them.
pub const HOME_OPERATIONS: &[&str] = &["SSM.GetParameter", "Lambda.Invoke"];

/// The tagger's configuration, from the environment (documented in the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `TAG_POLICY_PARAMETER`: the SSM parameter holding the policy; unset: derived tags only.
    pub policy_parameter: Option<String>,
    /// `TAG_POLICY_TTL_SECONDS` (default 300).
    pub policy_ttl: Duration,
    /// `ALLOWED_ACCOUNTS`, `ALLOWED_REGIONS`.
    pub guard: Guard,
}

impl Settings {
    pub fn from_env() -> Self {
        Settings {
            policy_parameter: std::env::var("TAG_POLICY_PARAMETER").ok().filter(|p| !p.is_empty()),
            policy_ttl: Duration::from_secs(
                std::env::var("TAG_POLICY_TTL_SECONDS")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(300),
            ),
            guard: Guard::from_env(),
        }
    }
}

/// The tagger, over any tag store and liveness check (AWS in production, fakes in unit tests).
pub struct Tagger<T, L> {
    tags: T,
    live: L,
    policy: Arc<CachedPolicy>,
    guard: Guard,
    backoff: Backoff,
}

impl Tagger<TaggingApi, RdsLiveCheck> {
    /// Builds the SDK clients for the function's own account and region. `counter`, when given,
    /// counts every AWS call.
    pub fn from_sdk_config(sdk: &SdkConfig, settings: Settings, counter: Option<&CallCounter>) -> Self {
        let policy = Arc::new(policy_from(sdk, &settings, counter));
        Self::at(sdk, policy, settings.guard, counter)
    }

    /// The tagger acting where `sdk` points (an account and region), with the policy read once,
    /// in the function's own account, for all of them.
    fn at(sdk: &SdkConfig, policy: Arc<CachedPolicy>, guard: Guard, counter: Option<&CallCounter>) -> Self {
        let rds = common::sdk_client!(aws_sdk_rds, sdk, counter);
        let tagging = common::sdk_client!(aws_sdk_resourcegroupstagging, sdk, counter);
        Tagger::new(
            TaggingApi::new(tagging, rds.clone()),
            RdsLiveCheck::new(rds),
            policy,
            guard,
        )
    }
}

fn policy_from(sdk: &SdkConfig, settings: &Settings, counter: Option<&CallCounter>) -> CachedPolicy {
    let source = match &settings.policy_parameter {
        Some(name) => PolicySource::Ssm {
            client: common::sdk_client!(aws_sdk_ssm, sdk, counter),
            name: name.clone(),
        },
        None => PolicySource::Fixed(TagPolicy::default()),
    };
    CachedPolicy::new(source, settings.policy_ttl)
}

/// The tagger in every account and region it may act in (main.rs): clients built once per
/// execution environment and per account and region; a sweep's continuation re-queued with `requeue`.
pub fn fleet<R: Requeue>(
    sdk: SdkConfig,
    settings: Settings,
    fleet: FleetSettings,
    requeue: R,
    counter: Option<&CallCounter>,
) -> Fleet<Tagger<TaggingApi, RdsLiveCheck>, R> {
    let policy = Arc::new(policy_from(&sdk, &settings, counter));
    let counter = counter.cloned();
    // One guard: the fleet's, which every account's handler checks again.
    let guard = fleet.guard.clone();
    Fleet::new(NAME, sdk, fleet, requeue, move |at| {
        Tagger::at(at, Arc::clone(&policy), guard.clone(), counter.as_ref())
    })
}

impl<T: TagReader + TagWriter, L: LiveCheck> Tagger<T, L> {
    pub fn new(tags: T, live: L, policy: impl Into<Arc<CachedPolicy>>, guard: Guard) -> Self {
        Tagger {
            tags,
            live,
            policy: policy.into(),
            guard,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    async fn tag(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        match event.lifecycle {
            Lifecycle::Ready | Lifecycle::Updated => {}
            Lifecycle::Deleted => {
                return Ok(Outcome::new(OutcomeKind::Skipped, None, "deleted: nothing to tag"));
            }
            Lifecycle::Failed => {
                return Ok(Outcome::new(
                    OutcomeKind::Skipped,
                    None,
                    "failed: tagged once Crossplane reconciles it",
                ));
            }
            Lifecycle::Observed => {
                return Ok(Outcome::new(
                    OutcomeKind::Skipped,
                    None,
                    "observed: no transition to act on",
                ));
            }
        }
        let mut event = std::borrow::Cow::Borrowed(event);
        let (resolved, plan) = loop {
            let resolved = match resolve_event(&event, invocation, &self.guard, &self.tags).await? {
                Resolution::Resolved(resolved) => resolved,
                Resolution::Answered(outcome) => return Ok(outcome),
            };
            let policy = self.policy.get().await?;
            let plan = plan::plan(&resolved.arn, &resolved.resource, &resolved.tags, &policy)
                .map_err(|why| HandlerError::Permanent(why.into()))?;
            if !plan.to_set.is_empty() && event.listed_tags.is_some() {
                // A sweep's listing says something is missing; the listing can lag behind the
                // resource (and its owner): read the tags again before writing anything.
                event.to_mut().listed_tags = None;
                continue;
            }
            break (resolved, plan);
        };
        let arn = resolved.arn.as_str();
        let dropped = if plan.dropped.is_empty() {
            String::new()
        } else {
            format!("; left out {}: {}", plan.dropped.len(), plan.dropped.join("; "))
        };
        if plan.to_set.is_empty() {
            let detail = format!("all {} desired tags already set{dropped}", plan.already);
            return Ok(Outcome::new(OutcomeKind::Unchanged, Some(arn), detail));
        }
        if self.live.is_live(arn).await? == Some(false) {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                Some(arn),
                "the resource is being deleted or is gone",
            ));
        }
        let arns = [resolved.arn.clone()];
        write::write_tags(&self.tags, &arns, &plan.to_set, self.backoff, invocation.deadline).await?;
        let keys = plan.to_set.keys().cloned().collect::<Vec<_>>().join(", ");
        let detail = format!(
            "set {} tags ({keys}), {} already set{dropped}",
            plan.to_set.len(),
            plan.already
        );
        Ok(Outcome::new(OutcomeKind::Applied, Some(arn), detail))
    }
}

impl<T, L> Handler for Tagger<T, L>
where
    T: TagReader + TagWriter + Inventory + 'static,
    L: LiveCheck + 'static,
{
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        self.tag(event, invocation).await
    }

    const SWEEPS: bool = true;

    /// A sweep converges every kind the suite knows.
    async fn list_managed(&self, token: Option<&str>) -> Result<Page, HandlerError> {
        let kinds: Vec<&'static KnownKind> = KNOWN_KINDS.iter().collect();
        Ok(self.tags.managed_page(&kinds, token).await?)
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
                include_str!("policy.rs"),
                include_str!("write.rs"),
                include_str!("../../common/src/tagging.rs"),
                include_str!("../../common/src/rds.rs"),
                include_str!("../../common/src/sweep.rs"),
            ],
        );
    }
}
