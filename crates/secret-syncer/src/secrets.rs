//! The Secrets Manager target: one secret holding the JSON document.
//! Read before write; writes carry a `ClientRequestToken` derived from the content; only
//! secrets carrying our ownership tags for this very managed resource are touched.

use aws_sdk_secretsmanager::Client as SecretsClient;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
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
        (Some(OWNER_VALUE), Some(r)) if r == subject => Ok(()),
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

/// A secret at a name: absent, someone else's, or ours for this managed resource.
enum Described {
    Absent,
    NotOwned(String),
    Ours {
        described: Box<DescribeSecretOutput>,
        recorded_arn: Option<String>,
    },
}

async fn describe_ours(client: &SecretsClient, name: &str, subject: &str) -> Result<Described, AwsError> {
    let described = match client.describe_secret().secret_id(name).send().await {
        Ok(described) => described,
        Err(e) => {
            let error = AwsError::from_sdk("DescribeSecret", &e);
            return if error.is_code("ResourceNotFoundException") {
                Ok(Described::Absent)
            } else {
                Err(error)
            };
        }
    };
    let tags = || {
        described
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
    };
    Ok(match owned_by_us(tags(), subject) {
        Ok(()) => Described::Ours {
            recorded_arn: recorded_arn(tags()),
            described: Box::new(described),
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
pub async fn plan(
    client: &SecretsClient,
    name: &str,
    subject: &str,
    source_arn: &str,
    content: &Secret,
) -> Result<SecretPlan, AwsError> {
    let (described, recorded) = match describe_ours(client, name, subject).await? {
        Described::Absent => return Ok(SecretPlan::Create),
        Described::NotOwned(why) => return Ok(SecretPlan::NotOwned(why)),
        Described::Ours {
            described,
            recorded_arn,
        } => (described, recorded_arn),
    };
    let retag = recorded.as_deref() != Some(source_arn);
    let other = recorded.filter(|r| r != source_arn);
    let current_version = described.version_ids_to_stages().and_then(|versions| {
        versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .map(|(id, _)| id.clone())
    });
    if described.deleted_date().is_some() {
        return Ok(SecretPlan::Update {
            previous: current_version,
            restore: true,
            recorded_arn: other,
            retag,
        });
    }
    let value = client
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetSecretValue", &e))?;
    if value.secret_string() == Some(content.expose()) {
        // The document names its database: equal content means it was written for this one.
        return Ok(if retag {
            SecretPlan::RecordSource
        } else {
            SecretPlan::Unchanged
        });
    }
    Ok(SecretPlan::Update {
        previous: value.version_id().map(str::to_string).or(current_version),
        restore: false,
        recorded_arn: other,
        retag,
    })
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
    client: &SecretsClient,
    target: &SecretTarget,
    plan: &SecretPlan,
    content: &Secret,
) -> Result<bool, AwsError> {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    match plan {
        SecretPlan::Unchanged | SecretPlan::NotOwned(_) => Ok(false),
        SecretPlan::Create => {
            client
                .create_secret()
                .name(&target.name)
                .description(&target.description)
                .secret_string(content.expose())
                .client_request_token(request_token(content, None))
                .set_kms_key_id(target.kms_key_id.clone())
                .tags(tag(OWNER_TAG, OWNER_VALUE))
                .tags(tag(RESOURCE_TAG, &target.subject))
                .tags(tag(SOURCE_ARN_TAG, &target.source_arn))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("CreateSecret", &e))?;
            Ok(true)
        }
        SecretPlan::RecordSource => {
            tag_source(client, target).await?;
            Ok(true)
        }
        SecretPlan::Update {
            previous,
            restore,
            retag,
            ..
        } => {
            if *restore {
                client
                    .restore_secret()
                    .secret_id(&target.name)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("RestoreSecret", &e))?;
            }
            client
                .put_secret_value()
                .secret_id(&target.name)
                .secret_string(content.expose())
                .client_request_token(request_token(content, previous.as_deref()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("PutSecretValue", &e))?;
            if *retag {
                tag_source(client, target).await?;
            }
            Ok(true)
        }
    }
}

async fn tag_source(client: &SecretsClient, target: &SecretTarget) -> Result<(), AwsError> {
    client
        .tag_resource()
        .secret_id(&target.name)
        .tags(Tag::builder().key(SOURCE_ARN_TAG).value(&target.source_arn).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("TagResource", &e))?;
    Ok(())
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
pub async fn inspect_for_delete(client: &SecretsClient, name: &str, subject: &str) -> Result<DeleteTarget, AwsError> {
    Ok(match describe_ours(client, name, subject).await? {
        Described::Absent => DeleteTarget::Absent,
        Described::NotOwned(why) => DeleteTarget::NotOwned(why),
        Described::Ours { described, .. } if described.deleted_date().is_some() => DeleteTarget::AlreadyScheduled,
        Described::Ours { recorded_arn, .. } => DeleteTarget::Ours { recorded_arn },
    })
}

/// Schedules our secret for deletion with a recovery window (7–30 days).
pub async fn schedule_delete(client: &SecretsClient, name: &str, recovery_days: i64) -> Result<(), AwsError> {
    client
        .delete_secret()
        .secret_id(name)
        .recovery_window_in_days(recovery_days)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DeleteSecret", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
