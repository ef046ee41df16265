//! The handler's decision branches for sync and remove, through `dispatch`, over fakes of its
//! reads and writes (no AWS): what the moto tests check against the emulator, branch by branch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use common::HandlerError;
use common::aws::AwsError;
use common::kinds::KnownKind;
use common::rds::{Databases, LiveDatabase, Liveness};
use common::resolve::{TagReader, Tags};
use common::runtime::dispatch;
use common::sweep::{Inventory, Listed, Page};
use common::testing::{db_arn, invocation, ready_event};
use serde_json::{Value, json};

use crate::document::Secret;
use crate::parameters::{ParameterStore, Put};
use crate::secrets::{Description, NewSecret, OWNER_TAG, OWNER_VALUE, RESOURCE_TAG, SOURCE_ARN_TAG, SecretStore};
use crate::{DeletePolicy, SecretSyncer, Settings};

const ID: &str = "orders";
const SECRET: &str = "crossplane/team-a/orders/connection";
const PATH: &str = "/crossplane/team-a/orders";
const SUBJECT: &str = "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/orders";
const MASTER: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1";

#[derive(Debug, Clone, Default)]
struct StoredSecret {
    value: String,
    version: u32,
    tags: Vec<(String, String)>,
    scheduled: bool,
}

#[derive(Default)]
struct World {
    databases: BTreeMap<String, Liveness>,
    secrets: BTreeMap<String, StoredSecret>,
    parameters: BTreeMap<String, (String, Vec<(String, String)>)>,
    /// A parameter deleted by someone else between the listing and its tag read.
    vanishes: Option<String>,
    /// Writes fail with this AWS error code.
    conflict: Option<&'static str>,
    /// Every call, by operation.
    calls: Vec<String>,
}

/// Every read and write of the handler, over one shared world.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn call(&self, operation: &str) -> MutexGuard<'_, World> {
        let mut world = self.world();
        world.calls.push(operation.to_string());
        world
    }

    fn writes(&self) -> Vec<String> {
        const READS: &[&str] = &["Describe", "Get", "List"];
        self.world()
            .calls
            .iter()
            .filter(|c| !READS.iter().any(|r| c.starts_with(r)))
            .cloned()
            .collect()
    }

    fn write_error(&self, world: &World, operation: &'static str) -> Result<(), AwsError> {
        match world.conflict {
            Some(code) => Err(aws_error(operation, code)),
            None => Ok(()),
        }
    }
}

fn aws_error(operation: &'static str, code: &str) -> AwsError {
    AwsError {
        operation,
        retryable: false,
        code: Some(code.to_string()),
        message: code.to_string(),
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ours(recorded: Option<&str>) -> Vec<(String, String)> {
    let mut found = tags(&[(OWNER_TAG, OWNER_VALUE), (RESOURCE_TAG, SUBJECT)]);
    found.extend(recorded.map(|arn| (SOURCE_ARN_TAG.to_string(), arn.to_string())));
    found
}

impl TagReader for Fake {
    async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
        let world = self.call("ListTagsForResource(rds)");
        Ok(world.databases.contains_key(arn).then(|| {
            [
                ("crossplane-kind", "instance.rds.aws.m.upbound.io"),
                ("crossplane-name", ID),
                ("crossplane-namespace", "team-a"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        }))
    }

    async fn find_by_tags(&self, _: &str, _: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
        Ok(Vec::new())
    }
}

impl Inventory for Fake {
    async fn managed_page(&self, _: &[&'static KnownKind], _: Option<&str>) -> Result<Page, AwsError> {
        let world = self.call("GetResources");
        let resources = world
            .databases
            .keys()
            .map(|arn| Listed {
                arn: arn.clone(),
                kind: "instance.rds.aws.m.upbound.io".into(),
                tags: None,
            })
            .collect();
        Ok(Page { resources, next: None })
    }
}

impl Databases for Fake {
    async fn liveness(&self, arn: &str) -> Result<Liveness, AwsError> {
        let world = self.call("DescribeDBInstances");
        Ok(world.databases.get(arn).cloned().unwrap_or(Liveness::Gone))
    }
}

impl SecretStore for Fake {
    async fn describe(&self, id: &str) -> Result<Option<Description>, AwsError> {
        let world = self.call("DescribeSecret");
        Ok(world.secrets.get(id).map(|s| Description {
            tags: s.tags.clone(),
            scheduled_for_deletion: s.scheduled,
            current_version: Some(format!("v{}", s.version)),
        }))
    }

    async fn value(&self, id: &str) -> Result<(Secret, Option<String>), AwsError> {
        let world = self.call("GetSecretValue");
        match world.secrets.get(id) {
            Some(s) if !s.scheduled => Ok((Secret::new(s.value.clone()), Some(format!("v{}", s.version)))),
            _ => Err(aws_error("GetSecretValue", "ResourceNotFoundException")),
        }
    }

    async fn create(&self, secret: NewSecret<'_>) -> Result<(), AwsError> {
        let mut world = self.call("CreateSecret");
        self.write_error(&world, "CreateSecret")?;
        if world.secrets.contains_key(secret.name) {
            return Err(aws_error("CreateSecret", "ResourceExistsException"));
        }
        let stored = StoredSecret {
            value: secret.content.expose().to_string(),
            version: 1,
            tags: tags(secret.tags),
            scheduled: false,
        };
        world.secrets.insert(secret.name.to_string(), stored);
        Ok(())
    }

    async fn put_value(&self, id: &str, content: &Secret, _: &str) -> Result<(), AwsError> {
        let mut world = self.call("PutSecretValue");
        self.write_error(&world, "PutSecretValue")?;
        let secret = world
            .secrets
            .get_mut(id)
            .ok_or(aws_error("PutSecretValue", "ResourceNotFoundException"))?;
        secret.value = content.expose().to_string();
        secret.version += 1;
        Ok(())
    }

    async fn restore(&self, id: &str) -> Result<(), AwsError> {
        let mut world = self.call("RestoreSecret");
        if let Some(secret) = world.secrets.get_mut(id) {
            secret.scheduled = false;
        }
        Ok(())
    }

    async fn tag(&self, id: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let mut world = self.call("TagResource");
        if let Some(secret) = world.secrets.get_mut(id) {
            secret.tags.retain(|(k, _)| k != key);
            secret.tags.push((key.to_string(), value.to_string()));
        }
        Ok(())
    }

    async fn delete(&self, id: &str, _: i64) -> Result<(), AwsError> {
        let mut world = self.call("DeleteSecret");
        self.write_error(&world, "DeleteSecret")?;
        match world.secrets.get_mut(id) {
            Some(secret) if !secret.scheduled => {
                secret.scheduled = true;
                Ok(())
            }
            _ => Err(aws_error("DeleteSecret", "InvalidRequestException")),
        }
    }
}

impl ParameterStore for Fake {
    async fn values_under(&self, path: &str) -> Result<BTreeMap<String, Secret>, AwsError> {
        let mut world = self.call("GetParametersByPath");
        let found = world
            .parameters
            .iter()
            // Not recursive, as we call it: only the path's direct children.
            .filter(|(name, _)| {
                name.strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|leaf| !leaf.is_empty() && !leaf.contains('/'))
            })
            .map(|(name, (value, _))| (name.clone(), Secret::new(value.clone())))
            .collect();
        if let Some(name) = world.vanishes.take() {
            world.parameters.remove(&name);
        }
        Ok(found)
    }

    async fn tags(&self, name: &str) -> Result<Option<Vec<(String, String)>>, AwsError> {
        let world = self.call("ListTagsForResource");
        Ok(world.parameters.get(name).map(|(_, tags)| tags.clone()))
    }

    async fn put(&self, put: Put<'_>) -> Result<(), AwsError> {
        let mut world = self.call("PutParameter");
        self.write_error(&world, "PutParameter")?;
        if put.overwrite && !put.tags.is_empty() {
            // SSM refuses tags on an overwrite: they are added separately (AddTagsToResource).
            return Err(aws_error("PutParameter", "ValidationException"));
        }
        match world.parameters.get_mut(put.name) {
            Some(_) if !put.overwrite => Err(aws_error("PutParameter", "ParameterAlreadyExists")),
            Some((value, _)) => {
                *value = put.value.expose().to_string();
                Ok(())
            }
            None => {
                let stored = (put.value.expose().to_string(), tags(put.tags));
                world.parameters.insert(put.name.to_string(), stored);
                Ok(())
            }
        }
    }

    async fn add_tag(&self, name: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let mut world = self.call("AddTagsToResource");
        if let Some((_, tags)) = world.parameters.get_mut(name) {
            tags.retain(|(k, _)| k != key);
            tags.push((key.to_string(), value.to_string()));
        }
        Ok(())
    }

    async fn delete(&self, names: &[String]) -> Result<(), AwsError> {
        let mut world = self.call("DeleteParameters");
        for name in names {
            world.parameters.remove(name);
        }
        Ok(())
    }
}

fn database(id: &str, status: &str) -> LiveDatabase {
    LiveDatabase {
        arn: db_arn(id),
        status: Some(status.into()),
        engine: Some("postgres".into()),
        host: Some(format!("{id}.example")),
        port: Some(5432),
        dbname: Some("orders".into()),
        username: Some("admin".into()),
        reader_host: None,
        master_user_secret_arn: None,
        created_at: None,
    }
}

/// The database `orders`, live.
fn world() -> Fake {
    let fake = Fake::default();
    fake.world()
        .databases
        .insert(db_arn(ID), Liveness::Live(database(ID, "available")));
    fake
}

/// The database `orders`, live, with its RDS-managed master secret holding `password` and
/// carrying `tags`.
fn world_with_master(password: &str, tags: Vec<(String, String)>) -> Fake {
    let fake = world();
    fake.world().databases.insert(
        db_arn(ID),
        Liveness::Live(LiveDatabase {
            master_user_secret_arn: Some(MASTER.into()),
            ..database(ID, "available")
        }),
    );
    let master = StoredSecret {
        value: serde_json::json!({"username": "admin", "password": password}).to_string(),
        version: 1,
        tags,
        ..StoredSecret::default()
    };
    fake.world().secrets.insert(MASTER.into(), master);
    fake
}

fn settings() -> Settings {
    Settings {
        parameter_path_template: Some(PATH.replace("orders", "{name}").replace("team-a", "{namespace}")),
        ..Settings::default()
    }
}

fn delete_settings() -> Settings {
    Settings {
        delete_policy: DeletePolicy::Delete,
        ..settings()
    }
}

fn syncer(fake: &Fake, settings: Settings) -> SecretSyncer<Fake, Fake, Fake, Fake> {
    SecretSyncer::new(fake.clone(), fake.clone(), fake.clone(), fake.clone(), settings)
}

async fn run(syncer: &SecretSyncer<Fake, Fake, Fake, Fake>, event: &Value) -> Result<(String, String), HandlerError> {
    let response = dispatch(syncer, event.to_string().as_bytes(), &invocation(), 1).await?;
    let result = &response["results"][0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok((text(&result["outcome"]), text(&result["detail"])))
}

fn deleted_event() -> Value {
    let mut deleted = ready_event(ID);
    deleted["type"] = json!("io.crossplane.managed.deleted");
    deleted["data"]["metadata"]["deletionTimestamp"] = json!("2026-11-22T08:00:00Z");
    deleted
}

/// Sync: first write, replay, a change, a secret scheduled for deletion.
#[tokio::test]
async fn sync_creates_then_is_unchanged_then_updates_only_what_changed() {
    let fake = world();
    let syncer = syncer(&fake, settings());
    let (outcome, detail) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains(&format!("created secret {SECRET}")), "{detail}");
    assert!(detail.contains(&format!("wrote 7 parameters under {PATH}")), "{detail}");
    assert_eq!(fake.world().parameters.len(), 7);

    fake.world().calls.clear();
    let (outcome, detail) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "unchanged", "{detail}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(
        !fake.world().calls.iter().any(|c| c == "ListTagsForResource"),
        "current parameters' tags are not read"
    );

    // The endpoint moves: one new secret version, the two parameters that changed.
    fake.world().databases.insert(
        db_arn(ID),
        Liveness::Live(LiveDatabase {
            host: Some("moved.example".into()),
            ..database(ID, "available")
        }),
    );
    fake.world().calls.clear();
    let (outcome, detail) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains(&format!("updated secret {SECRET}")), "{detail}");
    assert!(detail.contains("wrote 2 parameters"), "{detail}");
    assert_eq!(fake.writes(), ["PutSecretValue", "PutParameter", "PutParameter"]);
    assert_eq!(fake.world().secrets[SECRET].version, 2);

    // A secret of ours scheduled for deletion is restored, then written.
    if let Some(secret) = fake.world().secrets.get_mut(SECRET) {
        secret.scheduled = true;
        secret.value = "old".into();
    }
    fake.world().calls.clear();
    let (outcome, _) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "applied");
    assert_eq!(fake.writes(), ["RestoreSecret", "PutSecretValue"]);
}

#[tokio::test]
async fn sync_refuses_targets_someone_else_owns_and_writes_nothing() {
    let fake = world();
    let foreign = StoredSecret {
        value: "{}".into(),
        version: 1,
        tags: tags(&[("team", "dba")]),
        scheduled: false,
    };
    fake.world().secrets.insert(SECRET.into(), foreign);
    fake.world()
        .parameters
        .insert(format!("{PATH}/host"), ("dba-owned".into(), tags(&[])));
    let (outcome, detail) = run(&syncer(&fake, settings()), &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "refused");
    assert!(detail.contains(&format!("secret {SECRET} is not ours")), "{detail}");
    assert!(
        detail.contains(&format!("parameter {PATH}/host is not ours")),
        "{detail}"
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn sync_overwrites_another_databases_details_only_once_it_is_gone() {
    let old = db_arn("orders-old");
    let fake = world();
    let written_for_old = StoredSecret {
        value: "old".into(),
        version: 1,
        tags: ours(Some(&old)),
        scheduled: false,
    };
    fake.world().secrets.insert(SECRET.into(), written_for_old);
    fake.world()
        .databases
        .insert(old.clone(), Liveness::Live(database("orders-old", "available")));
    let syncer = syncer(&fake, settings());
    let (outcome, detail) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "refused", "{detail}");
    assert!(
        detail.contains(&format!("written for {old}, which still exists (status available)")),
        "{detail}"
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());

    fake.world()
        .databases
        .insert(old.clone(), Liveness::GoingAway(database("orders-old", "deleting")));
    let (outcome, detail) = run(&syncer, &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    let world = fake.world();
    let secret = &world.secrets[SECRET];
    assert!(
        secret.tags.contains(&(SOURCE_ARN_TAG.to_string(), db_arn(ID))),
        "retagged first"
    );
    let tag_then_put: Vec<&String> = world
        .calls
        .iter()
        .filter(|c| *c == "TagResource" || *c == "PutSecretValue")
        .collect();
    assert_eq!(
        tag_then_put,
        ["TagResource", "PutSecretValue"],
        "the record is written before the value"
    );
}

#[tokio::test]
async fn sync_skips_a_vanished_database_and_fails_on_a_missing_master_secret() {
    let fake = world();
    fake.world()
        .databases
        .insert(db_arn(ID), Liveness::GoingAway(database(ID, "deleting")));
    let (outcome, detail) = run(&syncer(&fake, settings()), &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(fake.writes().is_empty());

    let fake = world();
    let with_password = Settings {
        include_password: true,
        ..settings()
    };
    let failed = run(&syncer(&fake, with_password.clone()), &ready_event(ID)).await;
    assert!(
        matches!(&failed, Err(HandlerError::Permanent(m)) if m.contains("no RDS-managed master user secret")),
        "{failed:?}"
    );

    // The password is published from the master secret, and never in the outcome.
    let fake = world_with_master("s3cr3t-value", Vec::new());
    let result = run(&syncer(&fake, with_password), &ready_event(ID)).await;
    assert!(!format!("{result:?}").contains("s3cr3t-value"));
    assert_eq!(result.unwrap().0, "applied");
    let world = fake.world();
    assert!(world.secrets[SECRET].value.contains("s3cr3t-value"));
    assert_eq!(world.parameters[&format!("{PATH}/password")].0, "s3cr3t-value");
}

#[tokio::test]
async fn sync_retries_write_conflicts_then_gives_a_retryable_failure() {
    let fake = world();
    fake.world().conflict = Some("ResourceExistsException");
    let failed = run(&syncer(&fake, settings()), &ready_event(ID)).await;
    assert!(
        matches!(&failed, Err(HandlerError::Retryable(m)) if m.contains("another invocation is writing the same targets")),
        "{failed:?}"
    );
    let source = failed.as_ref().err().and_then(std::error::Error::source);
    assert!(
        source.is_some_and(|s| s.is::<AwsError>()),
        "the conflict is the failure's source"
    );
    let creates = fake.world().calls.iter().filter(|c| *c == "CreateSecret").count();
    assert_eq!(creates, 3, "re-read and re-planned, three attempts");

    // Any other write failure is not a conflict: it fails at once.
    let fake = world();
    fake.world().conflict = Some("AccessDeniedException");
    let failed = run(&syncer(&fake, settings()), &ready_event(ID)).await;
    assert!(matches!(&failed, Err(HandlerError::Permanent(_))), "{failed:?}");
    assert_eq!(fake.world().calls.iter().filter(|c| *c == "CreateSecret").count(), 1);
}

/// Remove: retain, the recorded database still there, gone, twice, unrecorded, someone else's.
#[tokio::test]
async fn remove_deletes_only_ours_and_only_on_proof() {
    let fake = world();
    run(&syncer(&fake, settings()), &ready_event(ID)).await.unwrap();

    fake.world().calls.clear();
    let (outcome, detail) = run(&syncer(&fake, settings()), &deleted_event()).await.unwrap();
    assert_eq!(
        (outcome.as_str(), detail.contains("retained")),
        ("skipped", true),
        "{detail}"
    );
    assert!(fake.world().calls.is_empty(), "retain makes no call");

    let syncer = syncer(&fake, delete_settings());
    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("which still exists"), "{detail}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());

    fake.world()
        .databases
        .insert(db_arn(ID), Liveness::GoingAway(database(ID, "deleting")));
    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("scheduled for deletion in 7 days"), "{detail}");
    assert!(
        detail.contains(&format!("deleted 7 parameters under {PATH}")),
        "{detail}"
    );
    assert!(fake.world().secrets[SECRET].scheduled);
    assert!(fake.world().parameters.is_empty());

    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "unchanged", "deleting twice is harmless: {detail}");
}

#[tokio::test]
async fn remove_leaves_unrecorded_and_foreign_targets_alone() {
    let fake = world();
    fake.world().databases.remove(&db_arn(ID));
    let unrecorded = StoredSecret {
        value: "{}".into(),
        version: 1,
        tags: ours(None),
        scheduled: false,
    };
    fake.world().secrets.insert(SECRET.into(), unrecorded);
    let syncer = syncer(&fake, delete_settings());
    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("records no database"), "{detail}");
    assert!(fake.writes().is_empty());

    fake.world().secrets.insert(
        SECRET.into(),
        StoredSecret {
            tags: tags(&[("team", "dba")]),
            ..StoredSecret::default()
        },
    );
    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "refused", "{detail}");
    assert!(detail.contains("is not ours"), "{detail}");

    // Ours go, someone else's stay, and the outcome says which.
    fake.world()
        .parameters
        .insert(format!("{PATH}/host"), ("x".into(), ours(Some(&db_arn(ID)))));
    let (outcome, detail) = run(&syncer, &deleted_event()).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(
        detail.contains("deleted 1 parameters") && detail.contains("left alone: secret"),
        "{detail}"
    );
    assert!(!fake.world().secrets[SECRET].scheduled);
}

/// A concurrent deletion removes a parameter between the listing and its tag read: it is
/// absent, not a permanent failure (the flake of `concurrent_deletes_of_one_database_converge`).
#[tokio::test]
async fn a_parameter_that_disappears_mid_read_is_absent() {
    let fake = world();
    let syncer_for = |settings| syncer(&fake, settings);
    run(&syncer_for(settings()), &ready_event(ID)).await.unwrap();
    fake.world().databases.remove(&db_arn(ID));
    fake.world().vanishes = Some(format!("{PATH}/host"));
    let (outcome, detail) = run(&syncer_for(delete_settings()), &deleted_event()).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("deleted 6 parameters"), "{detail}");

    // The same during a sync: the vanished parameter is written again, as new.
    let fake = world();
    run(&syncer(&fake, settings()), &ready_event(ID)).await.unwrap();
    if let Some((value, _)) = fake.world().parameters.get_mut(&format!("{PATH}/host")) {
        *value = "stale".into();
    }
    fake.world().vanishes = Some(format!("{PATH}/host"));
    fake.world().calls.clear();
    let (outcome, detail) = run(&syncer(&fake, settings()), &ready_event(ID)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert_eq!(
        fake.world().parameters[&format!("{PATH}/host")].1,
        ours(Some(&db_arn(ID)))
    );
}

#[tokio::test]
async fn scheduling_a_deletion_that_aws_refuses_succeeds_only_if_it_is_scheduled_or_gone() {
    use crate::secrets::schedule_delete;
    let fake = world();
    fake.world().secrets.insert(SECRET.into(), StoredSecret::default());
    schedule_delete(&fake, SECRET, 7).await.unwrap();
    assert!(fake.world().secrets[SECRET].scheduled);
    // Again (another delivery): AWS refuses, the secret is already scheduled: done.
    schedule_delete(&fake, SECRET, 7).await.unwrap();
    // Gone meanwhile: done.
    fake.world().secrets.clear();
    schedule_delete(&fake, SECRET, 7).await.unwrap();
    // Refused while the secret is still there and not scheduled: the refusal stands.
    fake.world().secrets.insert(SECRET.into(), StoredSecret::default());
    fake.world().conflict = Some("InvalidRequestException");
    let err = schedule_delete(&fake, SECRET, 7).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("InvalidRequestException"));
    assert!(!fake.world().secrets[SECRET].scheduled);
}

#[tokio::test]
async fn applying_parameters_counts_every_write_and_every_stale_removal() {
    use crate::parameters::{apply, plan};
    let fake = world();
    let arn = db_arn(ID);
    fake.world()
        .parameters
        .insert(format!("{PATH}/old-key"), ("x".into(), ours(Some(&arn))));
    let entries = [("host", Secret::new("h")), ("port", Secret::new("5432"))].into();
    let planned = plan(&fake, PATH, SUBJECT, &arn, &entries).await.unwrap();
    assert_eq!((planned.writes.len(), planned.stale.len()), (2, 1));
    assert_eq!(apply(&fake, &planned, SUBJECT, &arn, "d", None).await.unwrap(), 3);
    let names: Vec<String> = fake.world().parameters.keys().cloned().collect();
    assert_eq!(names, [format!("{PATH}/host"), format!("{PATH}/port")]);
}

/// A rotation event about `secret`, as EventBridge delivers it.
fn rotation(secret: &str) -> Value {
    let mut event = common::testing::sample("eventbridge.secretsmanager-rotation-succeeded.json");
    event["detail"]["additionalEventData"]["SecretId"] = json!(secret);
    event
}

/// Rotation: the owner named by the secret's RDS tags is re-synced with the new password; a
/// replay writes nothing; a secret no database owns is skipped.
#[tokio::test]
async fn a_rotation_resyncs_the_database_that_owns_the_secret_and_a_replay_writes_nothing() {
    let fake = world_with_master(
        "before-rotation",
        tags(&[("aws:rds:primaryDBInstanceArn", &db_arn(ID))]),
    );
    let with_password = Settings {
        include_password: true,
        ..settings()
    };
    let syncer = syncer(&fake, with_password);
    assert_eq!(run(&syncer, &ready_event(ID)).await.unwrap().0, "applied");

    if let Some(master) = fake.world().secrets.get_mut(MASTER) {
        master.value = r#"{"username":"admin","password":"after-rotation"}"#.into();
    }
    let (outcome, detail) = run(&syncer, &rotation(MASTER)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(
        detail.starts_with("after rotation of its master user secret: updated secret"),
        "{detail}"
    );
    assert!(!detail.contains("after-rotation"), "{detail}");
    assert!(fake.world().secrets[SECRET].value.contains("after-rotation"));
    assert_eq!(fake.world().parameters[&format!("{PATH}/password")].0, "after-rotation");

    fake.world().calls.clear();
    let (outcome, detail) = run(&syncer, &rotation(MASTER)).await.unwrap();
    assert_eq!(outcome, "unchanged", "{detail}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());

    // Without INCLUDE_PASSWORD nothing published holds the password: nothing to read or write.
    fake.world().calls.clear();
    let (outcome, detail) = run(&self::syncer(&fake, settings()), &rotation(MASTER)).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("INCLUDE_PASSWORD is off"), "{detail}");
    assert!(fake.world().calls.is_empty(), "{:?}", fake.world().calls);

    let stranger = "arn:aws:secretsmanager:us-east-1:123456789012:secret:someone-else-AbCdEf";
    fake.world().secrets.insert(stranger.into(), StoredSecret::default());
    let (outcome, detail) = run(&syncer, &rotation(stranger)).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("no RDS database owns it"), "{detail}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}
