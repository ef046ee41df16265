//! secret-syncer: publishes the connection details of Crossplane-managed RDS instances and
//! clusters to a Secrets Manager secret and/or SSM parameters (ARCHITECTURE.md §6), idempotently,
//! touching only what it owns, and never letting a secret value reach a log, error or outcome.

pub mod document;
pub mod names;
pub mod parameters;
pub mod removal;
pub mod secrets;
pub mod sync;

use aws_config::SdkConfig;
use aws_sdk_rds::Client as RdsClient;
use aws_sdk_secretsmanager::Client as SecretsClient;
use aws_sdk_ssm::Client as SsmClient;
use std::collections::BTreeMap;

use common::aws::{AwsError, CallCounter};
use common::fleet::{Fleet, FleetSettings};
use common::kinds::{KNOWN_KINDS, KnownKind};
use common::model::Lifecycle;
use common::rds::Databases;
use common::resolve::{Arn, Guard, TagReader};
use common::runtime::{Handler, Invocation, Outcome, OutcomeKind, Resolution, resolve_event};
use common::sweep::{Inventory, Listed, Page, Requeue};
use common::tagging::TaggingApi;
use common::{HandlerError, ManagedResource, ResourceEvent};

use crate::document::{ConnectionDetails, Secret};
use crate::names::NameError;
use crate::parameters::ParameterStore;
use crate::removal::{Removal, Standing};
use crate::secrets::{SecretPlan, SecretStore, SecretTarget};

/// How many times concurrent first writes are re-read and re-planned before giving up.
const CONFLICT_ATTEMPTS: u32 = 3;

/// AWS's answers when another invocation wrote the same target first: re-read and converge.
fn is_write_conflict(error: &AwsError) -> bool {
    ["ParameterAlreadyExists", "ResourceExistsException", "TooManyUpdates"]
        .iter()
        .any(|code| error.is_code(code))
}

/// The target names of one resource, or why this event cannot establish them.
enum Targets {
    Named {
        secret: Option<String>,
        parameters: Option<String>,
    },
    NotEstablished(String),
}

pub const NAME: &str = "secret-syncer";

/// Every AWS operation this function's code calls (as the SDK names it: `Service.Operation`),
/// with the IAM actions it needs. The one declaration the deployment's IAM policy is checked
/// against (`tests/infra`), and that the moto tests check every call made against.
pub const AWS_OPERATIONS: &[(&str, &[&str])] = &[
    ("RDS.ListTagsForResource", &["rds:ListTagsForResource"]),
    ("Resource Groups Tagging API.GetResources", &["tag:GetResources"]),
    ("RDS.DescribeDBInstances", &["rds:DescribeDBInstances"]),
    ("RDS.DescribeDBClusters", &["rds:DescribeDBClusters"]),
    ("Secrets Manager.DescribeSecret", &["secretsmanager:DescribeSecret"]),
    ("Secrets Manager.GetSecretValue", &["secretsmanager:GetSecretValue"]),
    (
        "Secrets Manager.CreateSecret",
        &["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
    ),
    ("Secrets Manager.PutSecretValue", &["secretsmanager:PutSecretValue"]),
    ("Secrets Manager.RestoreSecret", &["secretsmanager:RestoreSecret"]),
    ("Secrets Manager.DeleteSecret", &["secretsmanager:DeleteSecret"]),
    ("Secrets Manager.TagResource", &["secretsmanager:TagResource"]),
    ("SSM.GetParametersByPath", &["ssm:GetParametersByPath"]),
    ("SSM.ListTagsForResource", &["ssm:ListTagsForResource"]),
    ("SSM.PutParameter", &["ssm:PutParameter", "ssm:AddTagsToResource"]),
    ("SSM.AddTagsToResource", &["ssm:AddTagsToResource"]),
    ("SSM.DeleteParameters", &["ssm:DeleteParameters"]),
    // A sweep's continuation: the function invokes itself.
    ("Lambda.Invoke", &["lambda:InvokeFunction"]),
];

/// The operations of AWS_OPERATIONS made with the function's own credentials, in its own account,
/// whatever account the database is in: a member account's role does not grant them.
pub const HOME_OPERATIONS: &[&str] = &["Lambda.Invoke"];

/// The operations of AWS_OPERATIONS made on the master user secrets RDS manages (`rds!…`, not
/// ours): the password (`INCLUDE_PASSWORD`) and, after a rotation, the owner's tags. The policies
/// grant exactly these on `rds!*` secrets (tests/infra checks it).
pub const MASTER_SECRET_OPERATIONS: &[&str] = &["Secrets Manager.DescribeSecret", "Secrets Manager.GetSecretValue"];

/// The tags RDS puts on the master user secret it manages, naming the database that owns it.
const RDS_SECRET_OWNER_TAGS: &[&str] = &["aws:rds:primaryDBInstanceArn", "aws:rds:primaryDBClusterArn"];
pub const DEFAULT_SECRET_TEMPLATE: &str = "crossplane/{namespace}/{name}/connection";

/// What to do with the published details when the database is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Keep them (the default): deleting credentials is not undone easily.
    Retain,
    /// Delete the secret with a recovery window, and the parameters.
    Delete,
}

/// The configuration, from the environment (documented in the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SECRET_NAME_TEMPLATE`; empty disables the Secrets Manager target.
    pub secret_name_template: Option<String>,
    /// `SECRET_KMS_KEY_ID`
    pub secret_kms_key_id: Option<String>,
    /// `SSM_PATH_TEMPLATE`; unset disables the SSM target.
    pub parameter_path_template: Option<String>,
    /// `SSM_KMS_KEY_ID`, for the `SecureString` password parameter.
    pub parameter_kms_key_id: Option<String>,
    /// `INCLUDE_PASSWORD=true`: read the password from the RDS-managed master secret.
    pub include_password: bool,
    /// `DELETE_POLICY=retain|delete`
    pub delete_policy: DeletePolicy,
    /// `SECRET_RECOVERY_WINDOW_DAYS` (7–30, default 7)
    pub recovery_window_days: i64,
    pub guard: Guard,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secret_name_template: Some(DEFAULT_SECRET_TEMPLATE.to_string()),
            secret_kms_key_id: None,
            parameter_path_template: None,
            parameter_kms_key_id: None,
            include_password: false,
            delete_policy: DeletePolicy::Retain,
            recovery_window_days: 7,
            guard: Guard::default(),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok();
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let delete_policy = match var("DELETE_POLICY").unwrap_or_default().to_ascii_lowercase().as_str() {
            "" | "retain" => DeletePolicy::Retain,
            "delete" => DeletePolicy::Delete,
            other => {
                return Err(format!("DELETE_POLICY={other:?}: expected retain or delete"));
            }
        };
        let recovery_window_days = match var("SECRET_RECOVERY_WINDOW_DAYS") {
            None => 7,
            Some(days) => days
                .parse::<i64>()
                .ok()
                .filter(|d| (7..=30).contains(d))
                .ok_or_else(|| format!("SECRET_RECOVERY_WINDOW_DAYS={days:?}: expected 7 to 30"))?,
        };
        Ok(Settings {
            secret_name_template: match var("SECRET_NAME_TEMPLATE") {
                None => Some(DEFAULT_SECRET_TEMPLATE.to_string()),
                Some(t) if t.trim().is_empty() => None,
                Some(t) => Some(t),
            },
            secret_kms_key_id: non_empty("SECRET_KMS_KEY_ID"),
            parameter_path_template: non_empty("SSM_PATH_TEMPLATE"),
            parameter_kms_key_id: non_empty("SSM_KMS_KEY_ID"),
            include_password: var("INCLUDE_PASSWORD").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            delete_policy,
            recovery_window_days,
            guard: Guard::from_env(),
        })
    }
}

/// The handler, over its reads and writes: the SDK clients in production (the defaults), fakes
/// in unit tests.
pub struct SecretSyncer<T = TaggingApi, D = RdsClient, S = SecretsClient, P = SsmClient> {
    tagging: T,
    rds: D,
    secrets: S,
    ssm: P,
    settings: Settings,
}

/// The secret-syncer in every account and region it may act in (main.rs): clients built once per
/// execution environment and per account and region; a sweep's continuation re-queued with
/// `requeue`. Connection details are published in the database's own account and region.
pub fn fleet<R: Requeue>(
    sdk: SdkConfig,
    settings: Settings,
    fleet: FleetSettings,
    requeue: R,
    counter: Option<&CallCounter>,
) -> Fleet<SecretSyncer, R> {
    let counter = counter.cloned();
    // One guard: the fleet's, which every account's handler checks again.
    let settings = Settings {
        guard: fleet.guard.clone(),
        ..settings
    };
    Fleet::new(NAME, sdk, fleet, requeue, move |at| {
        SecretSyncer::from_sdk_config(at, settings.clone(), counter.as_ref())
    })
}

impl SecretSyncer {
    /// Builds the SDK clients for the account and region `sdk` points to. `counter`, when given, counts every AWS call.
    pub fn from_sdk_config(sdk: &SdkConfig, settings: Settings, counter: Option<&CallCounter>) -> Self {
        let rds = common::sdk_client!(aws_sdk_rds, sdk, counter);
        SecretSyncer {
            tagging: TaggingApi::new(
                common::sdk_client!(aws_sdk_resourcegroupstagging, sdk, counter),
                rds.clone(),
            ),
            rds,
            secrets: common::sdk_client!(aws_sdk_secretsmanager, sdk, counter),
            ssm: common::sdk_client!(aws_sdk_ssm, sdk, counter),
            settings,
        }
    }
}

impl<T: TagReader, D: Databases, S: SecretStore, P: ParameterStore> SecretSyncer<T, D, S, P> {
    /// The handler over the given tag reader, databases, Secrets Manager and Parameter Store.
    pub fn new(tagging: T, rds: D, secrets: S, ssm: P, settings: Settings) -> Self {
        SecretSyncer {
            tagging,
            rds,
            secrets,
            ssm,
            settings,
        }
    }

    fn targets(&self, resource: &ManagedResource) -> Result<Targets, HandlerError> {
        let render = |template: &Option<String>, check: fn(&str) -> Result<(), String>| {
            template
                .as_deref()
                .map(|t| {
                    names::render(t, resource).and_then(|name| check(&name).map(|()| name).map_err(NameError::Invalid))
                })
                .transpose()
        };
        match (
            render(&self.settings.secret_name_template, names::check_secret_name),
            render(&self.settings.parameter_path_template, names::check_parameter_path),
        ) {
            (Ok(secret), Ok(parameters)) => Ok(Targets::Named { secret, parameters }),
            (Err(NameError::Invalid(why)), _) | (_, Err(NameError::Invalid(why))) => {
                Err(HandlerError::Permanent(why.into()))
            }
            (Err(NameError::NotEstablished(why)), _) | (_, Err(NameError::NotEstablished(why))) => {
                Ok(Targets::NotEstablished(why))
            }
        }
    }

    async fn sync(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        let resolved = match resolve_event(event, invocation, &self.settings.guard, &self.tagging).await? {
            Resolution::Resolved(resolved) => resolved,
            Resolution::Answered(outcome) => return Ok(outcome),
        };
        let arn = resolved.arn.as_str();
        let Some(mut details) = self.rds.liveness(arn).await?.live().map(ConnectionDetails::from) else {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                Some(arn),
                "the database is gone or being deleted",
            ));
        };
        let (secret_name, parameter_path) = match self.targets(&resolved.resource)? {
            Targets::Named { secret, parameters } => (secret, parameters),
            Targets::NotEstablished(why) => return Ok(Outcome::new(OutcomeKind::Skipped, Some(arn), why)),
        };
        if self.settings.include_password {
            details.password = Some(
                self.master_password(details.database.master_user_secret_arn.as_deref(), arn)
                    .await?,
            );
        }
        let write = Write {
            event: &event.id,
            arn,
            subject: resolved.resource.subject(),
            secret_name: secret_name.as_deref(),
            parameter_path: parameter_path.as_deref(),
            details: &details,
        };
        // Concurrent first syncs of one database race to create the same targets: the loser
        // re-reads and converges on what the winner wrote (or retries later), never fails hard.
        let mut attempt = 1;
        loop {
            match self.plan_and_apply(&write, invocation).await {
                Err(conflict) if is_write_conflict(&conflict) => {
                    if attempt >= CONFLICT_ATTEMPTS {
                        return Err(HandlerError::retryable(
                            format!("another invocation is writing the same targets: {conflict}"),
                            conflict,
                        ));
                    }
                    tracing::info!(event = %event.id, resource = arn, error = %conflict, "write conflict: re-reading");
                    attempt += 1;
                }
                result => return Ok(result?),
            }
        }
    }

    /// Plans every target before writing any (a refusal anywhere changes nothing anywhere),
    /// then writes only the difference.
    async fn plan_and_apply(&self, write: &Write<'_>, invocation: &Invocation) -> Result<Outcome, AwsError> {
        let Write {
            event,
            arn,
            subject,
            secret_name,
            parameter_path,
            details,
        } = write;
        let content = details.document();
        let entries = details.entries();
        let secret_plan = match secret_name {
            Some(name) => Some(secrets::plan(&self.secrets, name, subject, arn, &content).await?),
            None => None,
        };
        let parameter_plan = match parameter_path {
            Some(path) => Some(parameters::plan(&self.ssm, path, subject, arn, &entries).await?),
            None => None,
        };
        let mut standings = BTreeMap::new();
        for other in sync::other_databases(secret_plan.as_ref(), parameter_plan.as_ref()) {
            let standing = self.standing(&other, invocation).await?;
            standings.insert(other, standing);
        }
        if let Some(why) = sync::refusal(secret_plan.as_ref(), parameter_plan.as_ref(), &standings, arn) {
            return Ok(Outcome::new(OutcomeKind::Refused, Some(arn), why));
        }

        let mut done = Vec::new();
        if let (Some(name), Some(plan)) = (secret_name, &secret_plan) {
            let target = SecretTarget {
                name: name.to_string(),
                kms_key_id: self.settings.secret_kms_key_id.clone(),
                subject: subject.clone(),
                source_arn: arn.to_string(),
                description: written_by(subject, event),
            };
            if secrets::apply(&self.secrets, &target, plan, &content).await? {
                let verb = if *plan == SecretPlan::Create {
                    "created"
                } else {
                    "updated"
                };
                done.push(format!("{verb} secret {name}"));
            }
        }
        if let (Some(path), Some(plan)) = (parameter_path, &parameter_plan)
            && !plan.is_unchanged()
        {
            let n = parameters::apply(
                &self.ssm,
                plan,
                subject,
                arn,
                &written_by(subject, event),
                self.settings.parameter_kms_key_id.as_deref(),
            )
            .await?;
            done.push(format!("wrote {n} parameters under {path}"));
        }
        let published = [
            secret_name.map(|n| format!("secret {n}")),
            parameter_path.map(|p| format!("parameters {p}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ");
        Ok(if done.is_empty() {
            Outcome::new(
                OutcomeKind::Unchanged,
                Some(arn),
                format!("{published} already up to date"),
            )
        } else {
            Outcome::new(OutcomeKind::Applied, Some(arn), done.join("; "))
        })
    }

    /// A master user secret was rotated: re-sync the database that owns it (named by the tags
    /// RDS puts on the secrets it manages, else found by its `MasterUserSecret`), so a published
    /// password follows the rotation. A secret no database owns is none of ours.
    async fn after_rotation(
        &self,
        secret: &str,
        event: &ResourceEvent,
        invocation: &Invocation,
    ) -> Result<Outcome, HandlerError> {
        if !self.settings.include_password {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                Some(secret),
                "rotated secret: INCLUDE_PASSWORD is off, so no published detail holds the password",
            ));
        }
        let tagged = self.secrets.describe(secret).await?.and_then(|description| {
            description
                .tags
                .into_iter()
                .find(|(key, _)| RDS_SECRET_OWNER_TAGS.contains(&key.as_str()))
                .map(|(_, arn)| arn)
        });
        let owner = match tagged {
            Some(arn) => Some(arn),
            None => self.rds.owner_of_secret(secret).await?,
        };
        let Some(database) = owner else {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                Some(secret),
                "rotated secret: no RDS database owns it",
            ));
        };
        let cluster = Arn::parse(&database).is_some_and(|arn| arn.resource.starts_with("cluster:"));
        let listed = Listed {
            arn: database,
            kind: if cluster {
                "cluster.rds.aws.m.upbound.io"
            } else {
                "instance.rds.aws.m.upbound.io"
            }
            .to_string(),
            tags: None,
        };
        let owner_event = common::sweep::update_of(&listed, event.id.clone(), &event.source);
        let outcome = self.sync(&owner_event, invocation).await?;
        Ok(Outcome {
            detail: format!("after rotation of its master user secret: {}", outcome.detail),
            ..outcome
        })
    }

    /// Where the database at `arn` stands; one outside the guard cannot be checked.
    async fn standing(&self, arn: &str, invocation: &Invocation) -> Result<Standing, AwsError> {
        if let Err(why) = self.settings.guard.check(arn, None, &invocation.scope) {
            return Ok(Standing::Unchecked(why));
        }
        Ok(Standing::of(&self.rds.liveness(arn).await?))
    }

    /// The password from the RDS-managed master user secret. Errors never carry the value.
    async fn master_password(&self, secret_arn: Option<&str>, arn: &str) -> Result<Secret, HandlerError> {
        let secret_arn = secret_arn.ok_or_else(|| {
            HandlerError::Permanent(
                format!("INCLUDE_PASSWORD is set but {arn} has no RDS-managed master user secret").into(),
            )
        })?;
        let (value, _) = self.secrets.value(secret_arn).await?;
        // The parse error is dropped: it could quote the value.
        let parsed: Option<serde_json::Value> = serde_json::from_str(value.expose()).ok();
        parsed
            .as_ref()
            .and_then(|v| v.get("password"))
            .and_then(serde_json::Value::as_str)
            .map(Secret::new)
            .ok_or_else(|| {
                HandlerError::Permanent(
                    format!("the master user secret {secret_arn} holds no JSON password field").into(),
                )
            })
    }

    /// Deletion on proof: only targets that are ours for this managed resource, and only once
    /// the database each one recorded (its `source-arn` tag) is gone or being deleted. The
    /// event's own ARN proves nothing (a reference builds it from the object's name).
    async fn remove(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        let resource = &event.resource;
        if !resource.identity_verified {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                None,
                "the deleted resource's managed resource is unknown",
            ));
        }
        if self.settings.delete_policy == DeletePolicy::Retain {
            return Ok(Outcome::new(
                OutcomeKind::Skipped,
                None,
                "deleted: connection details retained (DELETE_POLICY=retain)",
            ));
        }
        let subject = resource.subject();
        let (secret_name, parameter_path) = match self.targets(resource)? {
            Targets::Named { secret, parameters } => (secret, parameters),
            Targets::NotEstablished(why) => return Ok(Outcome::new(OutcomeKind::Skipped, None, why)),
        };
        let found = removal::Found {
            secret: match secret_name {
                Some(name) => {
                    let target = secrets::inspect_for_delete(&self.secrets, &name, &subject).await?;
                    Some((name, target))
                }
                None => None,
            },
            parameters: match parameter_path {
                Some(path) => {
                    let found = parameters::inspect_for_delete(&self.ssm, &path, &subject).await?;
                    Some((path, found))
                }
                None => None,
            },
        };
        // The proof, once per database, in the order the decision walks the targets; the first
        // one still there settles it.
        let mut standings = BTreeMap::new();
        for arn in removal::databases_to_check(&found) {
            let standing = self.standing(&arn, invocation).await?;
            let settled = standing.still_there().is_some();
            standings.insert(arn, standing);
            if settled {
                break;
            }
        }
        let (secret, parameter_names, left_alone, database) = match removal::decide(&found, &standings) {
            Removal::Skip { database, detail } => {
                return Ok(Outcome::new(OutcomeKind::Skipped, database.as_deref(), detail));
            }
            Removal::Refuse(why) => return Ok(Outcome::new(OutcomeKind::Refused, None, why)),
            Removal::NothingLeft => {
                return Ok(Outcome::new(
                    OutcomeKind::Unchanged,
                    None,
                    "nothing of ours left to delete",
                ));
            }
            Removal::Delete {
                secret,
                parameters,
                left_alone,
                database,
            } => (secret, parameters, left_alone, database),
        };
        let mut done = Vec::new();
        if let Some(name) = &secret {
            secrets::schedule_delete(&self.secrets, name, self.settings.recovery_window_days).await?;
            done.push(format!(
                "secret {name} scheduled for deletion in {} days",
                self.settings.recovery_window_days
            ));
        }
        if let Some((path, _)) = &found.parameters
            && !parameter_names.is_empty()
        {
            parameters::delete(&self.ssm, &parameter_names).await?;
            done.push(format!("deleted {} parameters under {path}", parameter_names.len()));
        }
        let mut detail = done.join("; ");
        if !left_alone.is_empty() {
            detail = format!("{detail}; left alone: {}", left_alone.join("; "));
        }
        Ok(Outcome::new(OutcomeKind::Applied, database.as_deref(), detail))
    }
}

/// The description a written target carries: whose details, and the event that wrote them
/// (so a write found in AWS leads back to the change that caused it). SSM allows 1,024
/// characters; an event id is cut to fit.
fn written_by(subject: &str, event: &str) -> String {
    let event: String = event.chars().take(200).collect();
    let subject: String = subject.chars().take(700).collect();
    format!("Connection details of {subject}, written by crossplane-lambda secret-syncer for event {event}")
}

/// What one sync writes.
struct Write<'a> {
    /// The event that caused the write: recorded in each target's description.
    event: &'a str,
    arn: &'a str,
    subject: String,
    secret_name: Option<&'a str>,
    parameter_path: Option<&'a str>,
    details: &'a ConnectionDetails,
}

/// Only RDS instances and clusters have connection details to publish.
fn is_database(resource: &ManagedResource) -> bool {
    common::kinds::split_group(&resource.group).is_some_and(|(service, _)| service == "rds")
        && matches!(resource.kind.as_str(), "Instance" | "Cluster")
}

impl<T, D, S, P> Handler for SecretSyncer<T, D, S, P>
where
    T: TagReader + Inventory + 'static,
    D: Databases + 'static,
    S: SecretStore + 'static,
    P: ParameterStore + 'static,
{
    fn name(&self) -> &'static str {
        NAME
    }

    const SWEEPS: bool = true;

    /// A sweep converges RDS instances and clusters: the kinds with connection details. The
    /// listing's tags are dropped: it can lag behind a database and its owner, and who owns it
    /// decides where its password goes, so resolution reads them from RDS itself.
    async fn list_managed(&self, token: Option<&str>) -> Result<Page, HandlerError> {
        let databases: Vec<&'static KnownKind> = KNOWN_KINDS.iter().filter(|k| k.service == "rds").collect();
        let mut page = self.tagging.managed_page(&databases, token).await?;
        for listed in &mut page.resources {
            listed.tags = None;
        }
        Ok(page)
    }

    async fn handle(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        if let Some(secret) = &event.rotated_secret {
            return self.after_rotation(secret, event, invocation).await;
        }
        if !is_database(&event.resource) {
            let detail = format!("{} has no connection details to publish", event.resource.display_name());
            return Ok(Outcome::new(OutcomeKind::Skipped, None, detail));
        }
        match event.lifecycle {
            Lifecycle::Ready | Lifecycle::Updated => self.sync(event, invocation).await,
            Lifecycle::Deleted => self.remove(event, invocation).await,
            Lifecycle::Failed => Ok(Outcome::new(
                OutcomeKind::Skipped,
                None,
                "failed: published once Crossplane reconciles it",
            )),
            Lifecycle::Observed => Ok(Outcome::new(
                OutcomeKind::Skipped,
                None,
                "observed: no transition to act on",
            )),
        }
    }
}

#[cfg(test)]
mod handler_tests;

#[cfg(test)]
mod declaration_tests {
    /// The operations on RDS-managed secrets and the home ones are declared operations.
    #[test]
    fn master_secret_and_home_operations_are_declared() {
        for operation in super::MASTER_SECRET_OPERATIONS.iter().chain(super::HOME_OPERATIONS) {
            assert!(
                super::AWS_OPERATIONS.iter().any(|(name, _)| name == operation),
                "{operation} is not in AWS_OPERATIONS"
            );
        }
    }

    /// Every operation in AWS_OPERATIONS is called by this function's code (the moto tests
    /// check the converse: every call made is declared).
    #[test]
    fn every_declared_operation_is_called() {
        common::testing::assert_declared_operations_are_called(
            super::AWS_OPERATIONS,
            &[
                include_str!("lib.rs"),
                include_str!("secrets.rs"),
                include_str!("parameters.rs"),
                include_str!("../../common/src/tagging.rs"),
                include_str!("../../common/src/rds.rs"),
                include_str!("../../common/src/sweep.rs"),
            ],
        );
    }
}
