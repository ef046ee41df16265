//! The Secrets Manager target: one secret holding the JSON document.
//! Read before write; writes carry a `ClientRequestToken` derived from the content; only
//! secrets carrying our ownership tags for this very managed resource are touched.

use std::future::Future;

use aws_sdk_secretsmanager::Client as SecretsClient;
use aws_sdk_secretsmanager::types::Tag;
use common::aws::AwsError;

use crate::document::{Secret, request_token};

/// Marks what secret-syncer created and may change or delete.
pub const OWNER_TAG: &str = "crossplane-lambda.io/managed-by";
pub const OWNER_VALUE: &str = "secret-syncer";
/// The managed resource (its API path) a secret or parameter belongs to.
pub const RESOURCE_TAG: &str = "crossplane-lambda.io/resource";
/// The database (its ARN) whose details a secret or parameter holds: the recorded identity a
/// deletion or an overwrite must prove gone, never an ARN re-derived from an event.
pub const SOURCE_ARN_TAG: &str = "crossplane-lambda.io/source-arn";

/// Whether tags say that secret-syncer owns this for the managed resource `subject`.
pub fn owned_by_us<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>, subject: &str) -> Result<(), String> {
    let (mut owner, mut resource) = (None, None);
    for (key, value) in tags.by_ref() {
        match key {
            OWNER_TAG => owner = Some(value),
            RESOURCE_TAG => resource = Some(value),
            _ => {}
        }
    }
    match (owner, resource) {
        // The same managed resource, in whatever API version the writer named it.
        (Some(OWNER_VALUE), Some(r)) if common::model::same_resource(r, subject) => Ok(()),
        (Some(OWNER_VALUE), Some(r)) => Err(format!("it belongs to {r}")),
        _ => Err(format!("it does not carry the {OWNER_TAG}={OWNER_VALUE} tag")),
    }
}

/// The database ARN recorded in `tags`, if any.
pub fn recorded_arn<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> Option<String> {
    tags.find(|(key, _)| *key == SOURCE_ARN_TAG)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// A secret as `DescribeSecret` tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    pub tags: Vec<(String, String)>,
    pub scheduled_for_deletion: bool,
    /// The version staged `AWSCURRENT`.
    pub current_version: Option<String>,
}

/// A new secret.
#[derive(Debug, Clone, Copy)]
pub struct NewSecret<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub content: &'a Secret,
    pub request_token: &'a str,
    pub kms_key_id: Option<&'a str>,
    pub tags: &'a [(&'a str, &'a str)],
}

/// Secrets Manager as secret-syncer uses it: the SDK client in production, a fake in unit
/// tests. Implementations only translate calls; every decision is in [`decide`] and
/// `removal.rs`.
pub trait SecretStore: Send + Sync {
    /// `None` when there is no secret of that name.
    fn describe(&self, id: &str) -> impl Future<Output = Result<Option<Description>, AwsError>> + Send;
    /// The secret's current value (its string) and version.
    fn value(&self, id: &str) -> impl Future<Output = Result<(Secret, Option<String>), AwsError>> + Send;
    fn create(&self, secret: NewSecret<'_>) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_value(
        &self,
        id: &str,
        content: &Secret,
        request_token: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn restore(&self, id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag(&self, id: &str, key: &str, value: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Schedules the deletion with a recovery window.
    fn delete(&self, id: &str, recovery_days: i64) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl SecretStore for SecretsClient {
    async fn describe(&self, id: &str) -> Result<Option<Description>, AwsError> {
        let described = match self.describe_secret().secret_id(id).send().await {
            Ok(described) => described,
            Err(e) => {
                let error = AwsError::from_sdk("DescribeSecret", &e);
                return if error.is_code("ResourceNotFoundException") {
                    Ok(None)
                } else {
                    Err(error)
                };
            }
        };
        Ok(Some(Description {
            tags: described
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            scheduled_for_deletion: described.deleted_date().is_some(),
            current_version: described.version_ids_to_stages().and_then(|versions| {
                versions
                    .iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(id, _)| id.clone())
            }),
        }))
    }

    async fn value(&self, id: &str) -> Result<(Secret, Option<String>), AwsError> {
        let value = self
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", &e))?;
        Ok((
            Secret::new(value.secret_string().unwrap_or_default()),
            value.version_id().map(str::to_string),
        ))
    }

    async fn create(&self, secret: NewSecret<'_>) -> Result<(), AwsError> {
        let mut request = self
            .create_secret()
            .name(secret.name)
            .description(secret.description)
            .secret_string(secret.content.expose())
            .client_request_token(secret.request_token)
            .set_kms_key_id(secret.kms_key_id.map(str::to_string));
        for (key, value) in secret.tags {
            request = request.tags(Tag::builder().key(*key).value(*value).build());
        }
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CreateSecret", &e))?;
        Ok(())
    }

    async fn put_value(&self, id: &str, content: &Secret, request_token: &str) -> Result<(), AwsError> {
        self.put_secret_value()
            .secret_id(id)
            .secret_string(content.expose())
            .client_request_token(request_token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutSecretValue", &e))?;
        Ok(())
    }

    async fn restore(&self, id: &str) -> Result<(), AwsError> {
        self.restore_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("RestoreSecret", &e))?;
        Ok(())
    }

    async fn tag(&self, id: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.tag_resource()
            .secret_id(id)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResource", &e))?;
        Ok(())
    }

    async fn delete(&self, id: &str, recovery_days: i64) -> Result<(), AwsError> {
        self.delete_secret()
            .secret_id(id)
            .recovery_window_in_days(recovery_days)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteSecret", &e))?;
        Ok(())
    }
}

/// A secret at a name: absent, someone else's, or ours for this managed resource.
enum Described {
    Absent,
    NotOwned(String),
    Ours {
        described: Description,
        recorded_arn: Option<String>,
    },
}

async fn describe_ours(store: &impl SecretStore, name: &str, subject: &str) -> Result<Described, AwsError> {
    let Some(described) = store.describe(name).await? else {
        return Ok(Described::Absent);
    };
    let tags = || described.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    Ok(match owned_by_us(tags(), subject) {
        Ok(()) => Described::Ours {
            recorded_arn: recorded_arn(tags()),
            described,
        },
        Err(why) => Described::NotOwned(format!("secret {name} is not ours: {why}")),
    })
}

/// What writing the document to the secret takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    Create,
    /// Put a new version over `previous`; `restore` a secret scheduled for deletion first.
    /// `recorded_arn`: the database the secret was written for, when it is not this one (or
    /// unknown): the overwrite needs that database gone, and the tag is rewritten.
    Update {
        previous: Option<String>,
        restore: bool,
        recorded_arn: Option<String>,
        retag: bool,
    },
    Unchanged,
    /// The value is current but the secret does not record this database yet (written before
    /// the suite recorded it): only the tag is written.
    RecordSource,
    /// Someone else's secret: refuse, change nothing.
    NotOwned(String),
}

impl SecretPlan {
    /// The other database this secret was written for, which must be gone before an overwrite.
    pub fn other_database(&self) -> Option<&str> {
        match self {
            SecretPlan::Update { recorded_arn, .. } => recorded_arn.as_deref(),
            _ => None,
        }
    }
}

/// Plans the write of `content` for the database `source_arn`.
/// The secret at a target name, as read: the inputs of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Absent,
    NotOwned(String),
    /// Ours; `value` (with its version) is read unless the secret is scheduled for deletion.
    Ours {
        recorded_arn: Option<String>,
        scheduled_for_deletion: bool,
        current_version: Option<String>,
        value: Option<(Secret, Option<String>)>,
    },
}

/// Reads what [`decide`] needs: one `DescribeSecret`, and the value of a secret of ours that is
/// not scheduled for deletion.
pub async fn read(store: &impl SecretStore, name: &str, subject: &str) -> Result<SecretState, AwsError> {
    let (described, recorded_arn) = match describe_ours(store, name, subject).await? {
        Described::Absent => return Ok(SecretState::Absent),
        Described::NotOwned(why) => return Ok(SecretState::NotOwned(why)),
        Described::Ours {
            described,
            recorded_arn,
        } => (described, recorded_arn),
    };
    let scheduled_for_deletion = described.scheduled_for_deletion;
    let value = if scheduled_for_deletion {
        None
    } else {
        Some(store.value(name).await?)
    };
    Ok(SecretState::Ours {
        recorded_arn,
        scheduled_for_deletion,
        current_version: described.current_version,
        value,
    })
}

/// What writing `content` for the database `source_arn` takes, given what is there. Pure.
pub fn decide(state: &SecretState, source_arn: &str, content: &Secret) -> SecretPlan {
    let SecretState::Ours {
        recorded_arn,
        scheduled_for_deletion,
        current_version,
        value,
    } = state
    else {
        return match state {
            SecretState::NotOwned(why) => SecretPlan::NotOwned(why.clone()),
            _ => SecretPlan::Create,
        };
    };
    let retag = recorded_arn.as_deref() != Some(source_arn);
    let other = recorded_arn.clone().filter(|r| r != source_arn);
    match value {
        Some((current, _)) if !scheduled_for_deletion && current == content => {
            // The document names its database: equal content means it was written for this one.
            if retag {
                SecretPlan::RecordSource
            } else {
                SecretPlan::Unchanged
            }
        }
        _ => SecretPlan::Update {
            previous: value
                .as_ref()
                .and_then(|(_, version)| version.clone())
                .or_else(|| current_version.clone()),
            restore: *scheduled_for_deletion,
            recorded_arn: other,
            retag,
        },
    }
}

/// Plans the write of `content` for the database `source_arn`: [`read`], then [`decide`].
pub async fn plan(
    store: &impl SecretStore,
    name: &str,
    subject: &str,
    source_arn: &str,
    content: &Secret,
) -> Result<SecretPlan, AwsError> {
    Ok(decide(&read(store, name, subject).await?, source_arn, content))
}

/// Where and how to write the secret.
#[derive(Debug, Clone)]
pub struct SecretTarget {
    pub name: String,
    pub kms_key_id: Option<String>,
    pub subject: String,
    pub source_arn: String,
    /// Whose details, and the event that wrote them.
    pub description: String,
}

pub async fn apply(
    store: &impl SecretStore,
    target: &SecretTarget,
    plan: &SecretPlan,
    content: &Secret,
) -> Result<bool, AwsError> {
    match plan {
        SecretPlan::Unchanged | SecretPlan::NotOwned(_) => Ok(false),
        SecretPlan::Create => {
            store
                .create(NewSecret {
                    name: &target.name,
                    description: &target.description,
                    content,
                    request_token: &request_token(content, None),
                    kms_key_id: target.kms_key_id.as_deref(),
                    tags: &[
                        (OWNER_TAG, OWNER_VALUE),
                        (RESOURCE_TAG, &target.subject),
                        (SOURCE_ARN_TAG, &target.source_arn),
                    ],
                })
                .await?;
            Ok(true)
        }
        SecretPlan::RecordSource => {
            store.tag(&target.name, SOURCE_ARN_TAG, &target.source_arn).await?;
            Ok(true)
        }
        SecretPlan::Update {
            previous,
            restore,
            retag,
            ..
        } => {
            if *restore {
                store.restore(&target.name).await?;
            }
            // The record of which database the value describes is written first: a value is
            // never left recording a database it does not describe (the proof a deletion reads).
            if *retag {
                store.tag(&target.name, SOURCE_ARN_TAG, &target.source_arn).await?;
            }
            store
                .put_value(&target.name, content, &request_token(content, previous.as_deref()))
                .await?;
            Ok(true)
        }
    }
}

/// The secret at a name, as a deletion sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    Absent,
    /// Ours, and already scheduled for deletion.
    AlreadyScheduled,
    NotOwned(String),
    /// Ours; `recorded_arn` is the database it was written for (`None`: written before the
    /// suite recorded it, so its database cannot be proven gone).
    Ours {
        recorded_arn: Option<String>,
    },
}

/// What deleting the secret at `name` would touch.
pub async fn inspect_for_delete(store: &impl SecretStore, name: &str, subject: &str) -> Result<DeleteTarget, AwsError> {
    Ok(match describe_ours(store, name, subject).await? {
        Described::Absent => DeleteTarget::Absent,
        Described::NotOwned(why) => DeleteTarget::NotOwned(why),
        Described::Ours { described, .. } if described.scheduled_for_deletion => DeleteTarget::AlreadyScheduled,
        Described::Ours { recorded_arn, .. } => DeleteTarget::Ours { recorded_arn },
    })
}

/// Schedules our secret for deletion with a recovery window (7–30 days).
/// Another delivery of the same deletion may have scheduled it first (or this call's answer
/// was lost and the SDK retried it): then AWS refuses, and the secret, read again, is already
/// scheduled or gone, which is what was wanted.
pub async fn schedule_delete(store: &impl SecretStore, name: &str, recovery_days: i64) -> Result<(), AwsError> {
    let Err(error) = store.delete(name, recovery_days).await else {
        return Ok(());
    };
    match store.describe(name).await {
        Ok(Some(described)) if described.scheduled_for_deletion => Ok(()),
        Ok(None) => Ok(()),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db:orders";
    const OTHER: &str = "arn:aws:rds:us-east-1:123456789012:db:orders-old";

    fn ours(recorded: Option<&str>, scheduled: bool, value: Option<&str>) -> SecretState {
        SecretState::Ours {
            recorded_arn: recorded.map(str::to_string),
            scheduled_for_deletion: scheduled,
            current_version: Some("v-current".into()),
            value: value.map(|v| (Secret::new(v), Some("v-read".into()))),
        }
    }

    #[test]
    fn every_decision_of_the_secret_plan() {
        let content = Secret::new("doc");
        let update = |previous: &str, restore, recorded: Option<&str>, retag| SecretPlan::Update {
            previous: Some(previous.into()),
            restore,
            recorded_arn: recorded.map(str::to_string),
            retag,
        };
        let cases = [
            ("nothing there", SecretState::Absent, SecretPlan::Create),
            (
                "someone else's",
                SecretState::NotOwned("it belongs to x".into()),
                SecretPlan::NotOwned("it belongs to x".into()),
            ),
            ("current", ours(Some(ARN), false, Some("doc")), SecretPlan::Unchanged),
            (
                "current, unrecorded",
                ours(None, false, Some("doc")),
                SecretPlan::RecordSource,
            ),
            (
                "changed",
                ours(Some(ARN), false, Some("old")),
                update("v-read", false, None, false),
            ),
            (
                "changed, unrecorded",
                ours(None, false, Some("old")),
                update("v-read", false, None, true),
            ),
            (
                "written for another database",
                ours(Some(OTHER), false, Some("old")),
                update("v-read", false, Some(OTHER), true),
            ),
            (
                "scheduled for deletion",
                ours(Some(ARN), true, None),
                update("v-current", true, None, false),
            ),
        ];
        for (case, state, expected) in cases {
            assert_eq!(decide(&state, ARN, &content), expected, "{case}");
        }
        assert_eq!(
            decide(&ours(Some(OTHER), false, Some("old")), ARN, &content).other_database(),
            Some(OTHER),
            "an overwrite of another database's details needs that database gone"
        );
    }

    #[test]
    fn ownership_needs_both_tags_for_this_resource() {
        let subject = "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/a/instances/db";
        let ours = [(OWNER_TAG, OWNER_VALUE), (RESOURCE_TAG, subject)];
        assert!(owned_by_us(ours.into_iter(), subject).is_ok());
        let other = [(OWNER_TAG, OWNER_VALUE), (RESOURCE_TAG, "/apis/x/v1/things/y")];
        assert!(
            owned_by_us(other.into_iter(), subject)
                .unwrap_err()
                .contains("belongs to /apis/x")
        );
        let foreign = [("team", "dba")];
        assert!(
            owned_by_us(foreign.into_iter(), subject)
                .unwrap_err()
                .contains(OWNER_TAG)
        );
    }
}
