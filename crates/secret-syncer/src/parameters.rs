//! The SSM Parameter Store target: one parameter per key under a path, `SecureString` for the
//! password. Read before write (one `GetParametersByPath`); only parameters carrying our
//! ownership tags for this managed resource are overwritten or deleted.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ssm::Client as SsmClient;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use common::aws::AwsError;

use crate::document::{PASSWORD_KEY, Secret};
use crate::secrets::{OWNER_TAG, OWNER_VALUE, RESOURCE_TAG, SOURCE_ARN_TAG, owned_by_us, recorded_arn};

/// One parameter to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterWrite {
    pub name: String,
    pub value: Secret,
    pub secure: bool,
    /// It exists (and is ours): overwrite, without tags (SSM refuses tags with overwrite).
    pub exists: bool,
    /// It exists but does not record this database: its source tag is rewritten.
    pub retag: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParametersPlan {
    pub writes: Vec<ParameterWrite>,
    /// Our parameters under the path for keys the document no longer has.
    pub stale: Vec<String>,
    /// Parameters that are someone else's: refuse, change nothing.
    pub not_owned: Vec<String>,
    /// Other databases our parameters to be overwritten were written for: each must be gone.
    pub other_databases: BTreeSet<String>,
}

impl ParametersPlan {
    pub fn is_unchanged(&self) -> bool {
        self.writes.is_empty() && self.stale.is_empty()
    }
}

async fn read_path(client: &SsmClient, path: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let mut found = BTreeMap::new();
    let mut pages = client
        .get_parameters_by_path()
        .path(path)
        .with_decryption(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("GetParametersByPath", &e))?;
        for parameter in page.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                found.insert(name.to_string(), value.to_string());
            }
        }
    }
    Ok(found)
}

/// Whose a parameter is, by its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ownership {
    /// Ours for this managed resource; the database it records, if any.
    Ours { recorded_arn: Option<String> },
    /// Someone else's, and why.
    NotOurs(String),
}

/// Whose the parameter `name` is, for the managed resource `subject`.
async fn ours(client: &SsmClient, name: &str, subject: &str) -> Result<Ownership, AwsError> {
    let tags = client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", &e))?;
    let pairs = || tags.tag_list().iter().map(|t| (t.key(), t.value()));
    Ok(match owned_by_us(pairs(), subject) {
        Ok(()) => Ownership::Ours {
            recorded_arn: recorded_arn(pairs()),
        },
        Err(why) => Ownership::NotOurs(why),
    })
}

pub async fn plan(
    client: &SsmClient,
    path: &str,
    subject: &str,
    source_arn: &str,
    entries: &BTreeMap<&'static str, Secret>,
) -> Result<ParametersPlan, AwsError> {
    let existing = read_path(client, path).await?;
    let mut plan = ParametersPlan::default();
    for (key, value) in entries {
        let name = format!("{path}/{key}");
        match existing.get(&name) {
            Some(current) if current == value.expose() => {}
            Some(_) => match ours(client, &name, subject).await? {
                Ownership::Ours { recorded_arn: recorded } => {
                    let retag = recorded.as_deref() != Some(source_arn);
                    plan.other_databases.extend(recorded.filter(|r| r != source_arn));
                    plan.writes.push(write(name, key, value, true, retag));
                }
                Ownership::NotOurs(why) => plan.not_owned.push(format!("parameter {name} is not ours: {why}")),
            },
            None => plan.writes.push(write(name, key, value, false, false)),
        }
    }
    for name in existing.keys() {
        let key = name.rsplit('/').next().unwrap_or_default();
        if !entries.contains_key(key) && matches!(ours(client, name, subject).await?, Ownership::Ours { .. }) {
            plan.stale.push(name.clone());
        }
    }
    Ok(plan)
}

fn write(name: String, key: &str, value: &Secret, exists: bool, retag: bool) -> ParameterWrite {
    ParameterWrite {
        name,
        value: value.clone(),
        secure: key == PASSWORD_KEY,
        exists,
        retag,
    }
}

fn tag(key: &str, value: &str) -> Result<Tag, AwsError> {
    Tag::builder().key(key).value(value).build().map_err(|e| tag_error(&e))
}

pub async fn apply(
    client: &SsmClient,
    plan: &ParametersPlan,
    subject: &str,
    source_arn: &str,
    description: &str,
    kms_key_id: Option<&str>,
) -> Result<usize, AwsError> {
    for parameter in &plan.writes {
        let mut request = client
            .put_parameter()
            .name(&parameter.name)
            .value(parameter.value.expose())
            .description(description)
            .r#type(if parameter.secure {
                ParameterType::SecureString
            } else {
                ParameterType::String
            });
        if parameter.secure {
            request = request.set_key_id(kms_key_id.map(str::to_string));
        }
        // The record of which database the value describes is written first (see secrets.rs).
        if parameter.retag {
            client
                .add_tags_to_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&parameter.name)
                .tags(tag(SOURCE_ARN_TAG, source_arn)?)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("AddTagsToResource", &e))?;
        }
        request = if parameter.exists {
            request.overwrite(true)
        } else {
            request
                .tags(tag(OWNER_TAG, OWNER_VALUE)?)
                .tags(tag(RESOURCE_TAG, subject)?)
                .tags(tag(SOURCE_ARN_TAG, source_arn)?)
        };
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutParameter", &e))?;
    }
    delete_names(client, &plan.stale).await?;
    Ok(plan.writes.len() + plan.stale.len())
}

fn tag_error(e: &dyn std::error::Error) -> AwsError {
    AwsError {
        operation: "PutParameter",
        retryable: false,
        code: None,
        message: format!("could not build a tag: {e}"),
    }
}

async fn delete_names(client: &SsmClient, names: &[String]) -> Result<(), AwsError> {
    // DeleteParameters takes at most 10 names.
    for chunk in names.chunks(10) {
        client
            .delete_parameters()
            .set_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteParameters", &e))?;
    }
    Ok(())
}

/// Our parameters under the path, each with the database it records (`None`: written before
/// the suite recorded it), and the ones that are not ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteTargets {
    pub ours: Vec<(String, Option<String>)>,
    pub not_ours: Vec<String>,
}

pub async fn inspect_for_delete(client: &SsmClient, path: &str, subject: &str) -> Result<DeleteTargets, AwsError> {
    let existing = read_path(client, path).await?;
    let mut found = DeleteTargets::default();
    for name in existing.keys() {
        match ours(client, name, subject).await? {
            Ownership::Ours { recorded_arn } => found.ours.push((name.clone(), recorded_arn)),
            Ownership::NotOurs(why) => found.not_ours.push(format!("parameter {name} is not ours: {why}")),
        }
    }
    Ok(found)
}

/// Deletes the named parameters (ours, proven).
pub async fn delete(client: &SsmClient, names: &[String]) -> Result<(), AwsError> {
    delete_names(client, names).await
}
