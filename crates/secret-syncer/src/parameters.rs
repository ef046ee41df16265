//! The SSM Parameter Store target: one parameter per key under a path, `SecureString` for the
//! password. Read before write (one `GetParametersByPath`); only parameters carrying our
//! ownership tags for this managed resource are overwritten or deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

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

/// One parameter to put.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
    pub name: &'a str,
    pub value: &'a Secret,
    pub description: &'a str,
    /// `SecureString` (with `kms_key_id`), else `String`.
    pub secure: bool,
    pub kms_key_id: Option<&'a str>,
    /// Overwrite an existing parameter (then without tags: SSM refuses tags with overwrite).
    pub overwrite: bool,
    /// The tags a new parameter is created with.
    pub tags: &'a [(&'a str, &'a str)],
}

/// The Parameter Store as this target uses it: SSM in production, a fake in unit tests.
/// Implementations only translate calls; every decision is in [`decide`] and `removal.rs`.
pub trait ParameterStore: Send + Sync {
    /// Every parameter directly under `path`, by name, with its (decrypted) value.
    fn values_under(&self, path: &str) -> impl Future<Output = Result<BTreeMap<String, Secret>, AwsError>> + Send;
    /// The tags of the parameter `name`, or `None` when it does not exist (any more).
    fn tags(&self, name: &str) -> impl Future<Output = Result<Option<Vec<(String, String)>>, AwsError>> + Send;
    fn put(&self, put: Put<'_>) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn add_tag(&self, name: &str, key: &str, value: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes at most 10 parameters (SSM's limit per call).
    fn delete(&self, names: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl ParameterStore for SsmClient {
    async fn values_under(&self, path: &str) -> Result<BTreeMap<String, Secret>, AwsError> {
        let mut found = BTreeMap::new();
        let mut pages = self
            .get_parameters_by_path()
            .path(path)
            .with_decryption(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("GetParametersByPath", &e))?;
            for parameter in page.parameters() {
                if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                    found.insert(name.to_string(), Secret::new(value));
                }
            }
        }
        Ok(found)
    }

    async fn tags(&self, name: &str) -> Result<Option<Vec<(String, String)>>, AwsError> {
        match self
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
        {
            Ok(tags) => Ok(Some(
                tags.tag_list()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            Err(e) => {
                let error = AwsError::from_sdk("ListTagsForResource", &e);
                if GONE_CODES.iter().any(|code| error.is_code(code)) {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn put(&self, put: Put<'_>) -> Result<(), AwsError> {
        let mut request = self
            .put_parameter()
            .name(put.name)
            .value(put.value.expose())
            .description(put.description)
            .r#type(if put.secure {
                ParameterType::SecureString
            } else {
                ParameterType::String
            });
        if put.secure {
            request = request.set_key_id(put.kms_key_id.map(str::to_string));
        }
        if put.overwrite {
            request = request.overwrite(true);
        }
        for (key, value) in put.tags {
            request = request.tags(tag(key, value)?);
        }
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutParameter", &e))?;
        Ok(())
    }

    async fn add_tag(&self, name: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .tags(tag(key, value)?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AddTagsToResource", &e))?;
        Ok(())
    }

    async fn delete(&self, names: &[String]) -> Result<(), AwsError> {
        self.delete_parameters()
            .set_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteParameters", &e))?;
        Ok(())
    }
}

/// SSM's answers for a parameter that does not exist: one deleted by a concurrent invocation
/// between the listing and the tag read is absent, not a failure.
const GONE_CODES: &[&str] = &["InvalidResourceId", "ParameterNotFound"];

/// Whose a parameter is, by its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Ours for this managed resource; the database it records, if any.
    Ours { recorded_arn: Option<String> },
    /// Someone else's, and why.
    NotOurs(String),
}

/// Whose the parameter `name` is, for the managed resource `subject`; `None` when it is gone.
async fn ownership(store: &impl ParameterStore, name: &str, subject: &str) -> Result<Option<Ownership>, AwsError> {
    let Some(tags) = store.tags(name).await? else {
        return Ok(None);
    };
    let pairs = || tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    Ok(Some(match owned_by_us(pairs(), subject) {
        Ok(()) => Ownership::Ours {
            recorded_arn: recorded_arn(pairs()),
        },
        Err(why) => Ownership::NotOurs(why),
    }))
}

/// A parameter found under the path, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Secret,
    /// Whose it is; `None` when it was not asked (its value is already what would be written:
    /// there is nothing to decide).
    pub ownership: Option<Ownership>,
}

/// The parameters under a path, by name, as read: the inputs of [`decide`]. A parameter that
/// disappeared while being read is not in it.
pub type ParametersState = BTreeMap<String, Found>;

/// Reads what [`decide`] needs: one `GetParametersByPath`, and the tags of each parameter whose
/// value differs from `entries`' or whose key `entries` no longer has.
pub async fn read(
    store: &impl ParameterStore,
    path: &str,
    subject: &str,
    entries: &BTreeMap<&'static str, Secret>,
) -> Result<ParametersState, AwsError> {
    let mut state = ParametersState::new();
    for (name, value) in store.values_under(path).await? {
        let current = entries.get(key_of(&name)).is_some_and(|wanted| *wanted == value);
        let ownership = if current {
            None
        } else {
            match ownership(store, &name, subject).await? {
                Some(ownership) => Some(ownership),
                None => continue,
            }
        };
        state.insert(name, Found { value, ownership });
    }
    Ok(state)
}

/// The key of the parameter `name` (its last path segment).
fn key_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

/// What writing `entries` under `path` for the database `source_arn` takes, given what is
/// there. Pure.
pub fn decide(
    state: &ParametersState,
    path: &str,
    source_arn: &str,
    entries: &BTreeMap<&'static str, Secret>,
) -> ParametersPlan {
    let mut plan = ParametersPlan::default();
    for (key, value) in entries {
        let name = format!("{path}/{key}");
        match state.get(&name) {
            None => plan.writes.push(write(name, key, value, false, false)),
            Some(found) if found.value == *value => {}
            Some(Found { ownership, .. }) => match ownership {
                Some(Ownership::Ours { recorded_arn: recorded }) => {
                    let retag = recorded.as_deref() != Some(source_arn);
                    plan.other_databases
                        .extend(recorded.clone().filter(|r| r != source_arn));
                    plan.writes.push(write(name, key, value, true, retag));
                }
                Some(Ownership::NotOurs(why)) => plan.not_owned.push(format!("parameter {name} is not ours: {why}")),
                // Not read: the value was current when read; nothing to decide.
                None => {}
            },
        }
    }
    for (name, found) in state {
        if !entries.contains_key(key_of(name)) && matches!(found.ownership, Some(Ownership::Ours { .. })) {
            plan.stale.push(name.clone());
        }
    }
    plan
}

/// Plans the write of `entries` under `path` for the database `source_arn`: [`read`], then
/// [`decide`].
pub async fn plan(
    store: &impl ParameterStore,
    path: &str,
    subject: &str,
    source_arn: &str,
    entries: &BTreeMap<&'static str, Secret>,
) -> Result<ParametersPlan, AwsError> {
    Ok(decide(
        &read(store, path, subject, entries).await?,
        path,
        source_arn,
        entries,
    ))
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
    store: &impl ParameterStore,
    plan: &ParametersPlan,
    subject: &str,
    source_arn: &str,
    description: &str,
    kms_key_id: Option<&str>,
) -> Result<usize, AwsError> {
    let new_tags = [
        (OWNER_TAG, OWNER_VALUE),
        (RESOURCE_TAG, subject),
        (SOURCE_ARN_TAG, source_arn),
    ];
    for parameter in &plan.writes {
        // The record of which database the value describes is written first (see secrets.rs).
        if parameter.retag {
            store.add_tag(&parameter.name, SOURCE_ARN_TAG, source_arn).await?;
        }
        store
            .put(Put {
                name: &parameter.name,
                value: &parameter.value,
                description,
                secure: parameter.secure,
                kms_key_id,
                overwrite: parameter.exists,
                tags: if parameter.exists { &[] } else { &new_tags },
            })
            .await?;
    }
    delete(store, &plan.stale).await?;
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

/// Our parameters under the path, each with the database it records (`None`: written before
/// the suite recorded it), and the ones that are not ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteTargets {
    pub ours: Vec<(String, Option<String>)>,
    pub not_ours: Vec<String>,
}

/// Reads whose each parameter under `path` is, for a deletion. A parameter that disappears
/// while being read (a concurrent deletion) is absent.
pub async fn inspect_for_delete(
    store: &impl ParameterStore,
    path: &str,
    subject: &str,
) -> Result<DeleteTargets, AwsError> {
    let existing = store.values_under(path).await?;
    let mut found = DeleteTargets::default();
    for name in existing.keys() {
        match ownership(store, name, subject).await? {
            Some(Ownership::Ours { recorded_arn }) => found.ours.push((name.clone(), recorded_arn)),
            Some(Ownership::NotOurs(why)) => found.not_ours.push(format!("parameter {name} is not ours: {why}")),
            None => {}
        }
    }
    Ok(found)
}

/// Deletes the named parameters (ours, proven), ten per call: DeleteParameters' limit.
pub async fn delete(store: &impl ParameterStore, names: &[String]) -> Result<(), AwsError> {
    for chunk in names.chunks(10) {
        store.delete(chunk).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db:orders";
    const OTHER: &str = "arn:aws:rds:us-east-1:123456789012:db:orders-old";
    const PATH: &str = "/crossplane/team-a/orders";

    fn entries() -> BTreeMap<&'static str, Secret> {
        [("host", Secret::new("h")), ("password", Secret::new("pw"))].into()
    }

    fn found(key: &str, value: &str, ownership: Option<Ownership>) -> (String, Found) {
        (
            format!("{PATH}/{key}"),
            Found {
                value: Secret::new(value),
                ownership,
            },
        )
    }

    fn ours(recorded: Option<&str>) -> Option<Ownership> {
        Some(Ownership::Ours {
            recorded_arn: recorded.map(str::to_string),
        })
    }

    /// (name, exists, retag, secure) of each write.
    fn writes(plan: &ParametersPlan) -> Vec<(String, bool, bool, bool)> {
        plan.writes
            .iter()
            .map(|w| (w.name.clone(), w.exists, w.retag, w.secure))
            .collect()
    }

    #[test]
    fn every_decision_of_the_parameters_plan() {
        let name = |key: &str| format!("{PATH}/{key}");
        type Case = (
            &'static str,
            Vec<(String, Found)>,
            Vec<(String, bool, bool, bool)>,
            Vec<String>,
            Vec<String>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing there: both created, the password secure",
                vec![],
                vec![
                    (name("host"), false, false, false),
                    (name("password"), false, false, true),
                ],
                vec![],
                vec![],
                vec![],
            ),
            (
                "all current: unchanged, ownership not needed",
                vec![found("host", "h", None), found("password", "pw", None)],
                vec![],
                vec![],
                vec![],
                vec![],
            ),
            (
                "current, even if recorded for another database: not rewritten",
                vec![
                    found("host", "h", ours(Some(OTHER))),
                    found("password", "pw", ours(Some(ARN))),
                ],
                vec![],
                vec![],
                vec![],
                vec![],
            ),
            (
                "ours, changed: overwritten",
                vec![found("host", "old", ours(Some(ARN))), found("password", "pw", None)],
                vec![(name("host"), true, false, false)],
                vec![],
                vec![],
                vec![],
            ),
            (
                "ours, changed, unrecorded: overwritten and tagged",
                vec![found("host", "old", ours(None)), found("password", "pw", None)],
                vec![(name("host"), true, true, false)],
                vec![],
                vec![],
                vec![],
            ),
            (
                "ours for another database: overwritten, that database must be gone",
                vec![found("host", "old", ours(Some(OTHER))), found("password", "pw", None)],
                vec![(name("host"), true, true, false)],
                vec![],
                vec![],
                vec![OTHER],
            ),
            (
                "someone else's: refused",
                vec![
                    found("host", "theirs", Some(Ownership::NotOurs("it belongs to x".into()))),
                    found("password", "pw", None),
                ],
                vec![],
                vec![],
                vec![format!("parameter {PATH}/host is not ours: it belongs to x")],
                vec![],
            ),
            (
                "a key the document no longer has: ours deleted, someone else's left",
                vec![
                    found("host", "h", None),
                    found("password", "pw", None),
                    found("port", "5432", ours(Some(ARN))),
                    found("team", "dba", Some(Ownership::NotOurs("no tag".into()))),
                ],
                vec![],
                vec![name("port")],
                vec![],
                vec![],
            ),
        ];
        for (case, state, expected_writes, stale, not_owned, others) in cases {
            let state: ParametersState = state.into_iter().collect();
            let plan = decide(&state, PATH, ARN, &entries());
            assert_eq!(writes(&plan), expected_writes, "{case}");
            assert_eq!(plan.stale, stale, "{case}");
            assert_eq!(plan.not_owned, not_owned, "{case}");
            assert_eq!(
                plan.other_databases.iter().map(String::as_str).collect::<Vec<_>>(),
                others,
                "{case}"
            );
            assert_eq!(
                plan.is_unchanged(),
                expected_writes.is_empty() && plan.stale.is_empty(),
                "{case}"
            );
        }
    }
}
