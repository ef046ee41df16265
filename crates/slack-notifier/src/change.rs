//! The identity of one change, as every trigger path can establish it (README, "Exactly once"):
//! from the event, or from one live read, never from a transport's ids or timestamps.
//!
//! | lifecycle | the change is | established from |
//! |---|---|---|
//! | `ready` | one lifetime of the resource | RDS: the database's creation time (`DescribeDBInstances`/`Clusters`); other kinds: the Ready condition's `lastTransitionTime` |
//! | `deleted` | the end of the lifetime announced ready | the lifetime remembered when it was announced (by managed resource, and by ARN for AWS events), proven gone live |
//! | `failed` | one failure episode | the `Synced=False` condition's `lastTransitionTime`, or a Warning event's `firstTimestamp` |
//!
//! A deletion is announced only with proof: the lifetime announced ready is gone (RDS says so,
//! or the database there now is another lifetime), never because an ARN re-derived from the
//! delete event finds nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::crossplane::{CONDITION_READY, CONDITION_SYNCED};
use common::idempotency::{Expiry, Persistence, change_key, fact_key, normalise_time};
use common::model::Lifecycle;
use common::rds::{Databases, Liveness};
use common::resolve::{self, Arn, Guard, TagReader};
use common::runtime::{Invocation, Outcome, OutcomeKind, Resolution, resolve_event};
use common::{HandlerError, ManagedResource, ResourceEvent};
use serde_json::json;

/// What identifying a change reads: tags (resolution), databases (lifetimes, proof of
/// deletion) and the idempotency store (remembered lifetimes). AWS in production, fakes in the
/// unit tests below.
pub struct Lookup<'a, T, D, P> {
    pub tagging: &'a T,
    pub rds: &'a D,
    pub store: &'a P,
    pub guard: &'a Guard,
}

/// One real change, ready to be announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub function: &'static str,
    pub key: String,
    /// The key in readable form (kept in the idempotency record).
    pub description: String,
    pub lifecycle: Lifecycle,
    /// The managed resource, its identity verified (for the message).
    pub resource: ManagedResource,
    pub arn: Option<String>,
    /// The lifetime (`ready`, `deleted`): when the resource was born.
    pub born: Option<String>,
}

/// A change to announce, or why there is none.
#[derive(Debug)]
pub enum Identified {
    Change(Box<Change>),
    NotAnnounced(Outcome),
}

const LIFETIME: &str = "lifetime";
const LIFETIME_BY_ARN: &str = "lifetime-arn";

fn not_announced(kind: OutcomeKind, arn: Option<&str>, why: impl Into<String>) -> Result<Identified, HandlerError> {
    Ok(Identified::NotAnnounced(Outcome::new(kind, arn, why)))
}

fn is_rds(arn: &str) -> bool {
    Arn::parse(arn).is_some_and(|a| a.service == "rds")
}

fn condition_time(resource: &ManagedResource, kind: &str, status: &str) -> Option<String> {
    resource
        .condition(kind)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
}

/// Identifies the change `event` reports, reading what it must.
pub async fn identify<T: TagReader, D: Databases, P: Persistence>(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_, T, D, P>,
) -> Result<Identified, HandlerError> {
    match event.lifecycle {
        Lifecycle::Ready => ready(function, event, invocation, lookup).await,
        Lifecycle::Deleted => deleted(function, event, invocation, lookup).await,
        Lifecycle::Failed | Lifecycle::Updated | Lifecycle::Observed => {
            let resource = &event.resource;
            let arn = resolve::arn_of(resource, &invocation.scope);
            if let Some(arn) = &arn
                && let Err(why) = lookup.guard.check(arn, resource.region.as_deref(), &invocation.scope)
            {
                return not_announced(OutcomeKind::Refused, Some(arn), why);
            }
            // A failure episode starts when Synced turned False (a Warning event's first time);
            // its count and last time change with every repetition.
            let since = if event.lifecycle == Lifecycle::Failed {
                condition_time(resource, CONDITION_SYNCED, "False").or_else(|| event.transition_time.clone())
            } else {
                event.transition_time.clone()
            };
            let Some(since) = since else {
                return not_announced(
                    OutcomeKind::Skipped,
                    arn.as_deref(),
                    "the event says when nothing started: the change cannot be identified",
                );
            };
            let subject = resource.identity();
            let (key, description) = change_key(
                function,
                &subject,
                event.lifecycle,
                &format!("since={}", normalise_time(&since)),
            );
            Ok(Identified::Change(Box::new(Change {
                function,
                key,
                description,
                lifecycle: event.lifecycle,
                resource: resource.clone(),
                arn,
                born: None,
            })))
        }
    }
}

async fn ready<T: TagReader, D: Databases, P: Persistence>(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_, T, D, P>,
) -> Result<Identified, HandlerError> {
    // A stale or forged `ready` for something that is not there, or not Crossplane's, is not
    // announced.
    let resolved = match resolve_event(event, invocation, lookup.guard, lookup.tagging).await? {
        Resolution::Resolved(resolved) => resolved,
        Resolution::Answered(outcome) => return Ok(Identified::NotAnnounced(outcome)),
    };
    let arn = resolved.arn.as_str();
    let born = if is_rds(arn) {
        match lookup.rds.liveness(arn).await? {
            Liveness::Live(db) => db
                .created_at
                .ok_or_else(|| HandlerError::Permanent(format!("RDS does not say when {arn} was created").into()))?,
            Liveness::GoingAway(_) | Liveness::Gone => {
                return not_announced(OutcomeKind::Skipped, Some(arn), "the database is gone or being deleted");
            }
        }
    } else {
        match condition_time(&event.resource, CONDITION_READY, "True") {
            Some(since) => since,
            None => {
                return not_announced(
                    OutcomeKind::Skipped,
                    Some(arn),
                    "the event carries no Ready transition time: the change cannot be identified",
                );
            }
        }
    };
    let born = normalise_time(&born);
    let subject = resolved.resource.identity();
    let (key, description) = change_key(function, &subject, Lifecycle::Ready, &format!("born={born}"));
    Ok(Identified::Change(Box::new(Change {
        function,
        key,
        description,
        lifecycle: Lifecycle::Ready,
        arn: Some(resolved.arn),
        resource: resolved.resource,
        born: Some(born),
    })))
}

async fn deleted<T: TagReader, D: Databases, P: Persistence>(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_, T, D, P>,
) -> Result<Identified, HandlerError> {
    let resource = &event.resource;
    // Which lifetime was announced: by managed resource, or (an AWS event without Crossplane's
    // tags) by ARN.
    let remembered = if resource.identity_verified {
        lookup
            .store
            .recall(&fact_key(function, LIFETIME, &resource.identity()))
            .await?
    } else {
        match &resource.arn {
            Some(arn) => lookup.store.recall(&fact_key(function, LIFETIME_BY_ARN, arn)).await?,
            None => None,
        }
    };
    let Some(facts) = remembered.as_ref().and_then(Lifetime::from_facts) else {
        return if resource.identity_verified {
            not_announced(
                OutcomeKind::Skipped,
                None,
                format!(
                    "no lifetime of {} was announced ready: its deletion is not announced",
                    resource.display_name()
                ),
            )
        } else {
            not_announced(
                OutcomeKind::Refused,
                resource.arn.as_deref(),
                "no managed resource is known for this resource: nothing proves Crossplane manages it",
            )
        };
    };
    let arn = facts.arn.as_str();
    if let Err(why) = lookup.guard.check(arn, None, &invocation.scope) {
        return not_announced(OutcomeKind::Refused, Some(arn), why);
    }
    // The proof: the lifetime announced ready is gone or going.
    if is_rds(arn) {
        if let Liveness::Live(db) = lookup.rds.liveness(arn).await?
            && db.created_at.as_deref().map(normalise_time).as_deref() == Some(facts.born.as_str())
        {
            return not_announced(
                OutcomeKind::Skipped,
                Some(arn),
                format!(
                    "{arn} still exists (status {}): no deletion to announce",
                    db.status.as_deref().unwrap_or("unknown")
                ),
            );
        }
    } else if lookup.tagging.tags_of(arn).await?.is_some() {
        // Only AWS's word counts: a deletionTimestamp in the payload proves nothing.
        return not_announced(
            OutcomeKind::Skipped,
            Some(arn),
            format!("{arn} still exists: no deletion to announce"),
        );
    }
    let (key, description) = change_key(
        function,
        &facts.subject,
        Lifecycle::Deleted,
        &format!("born={}", facts.born),
    );
    let shown = if resource.identity_verified {
        resource.clone()
    } else {
        facts.resource.clone()
    };
    Ok(Identified::Change(Box::new(Change {
        function,
        key,
        description,
        lifecycle: Lifecycle::Deleted,
        resource: shown,
        arn: Some(facts.arn),
        born: Some(facts.born),
    })))
}

/// A lifetime announced ready, as remembered.
struct Lifetime {
    subject: String,
    arn: String,
    born: String,
    resource: ManagedResource,
}

impl Lifetime {
    fn from_facts(facts: &BTreeMap<String, String>) -> Option<Self> {
        let get = |name: &str| facts.get(name).cloned();
        let mut reference = json!({"apiVersion": get("apiVersion")?, "kind": get("kind")?, "name": get("name")?});
        if let Some(namespace) = get("namespace") {
            reference["namespace"] = json!(namespace);
        }
        Some(Lifetime {
            subject: get("subject")?,
            arn: get("arn")?,
            born: get("born")?,
            resource: ManagedResource::from_reference(&reference).ok()?,
        })
    }
}

/// Remembers the lifetime an announcement is about: before a `ready` is posted (while its
/// claim is held, so a posted readiness is always remembered and its deletion can be proven),
/// kept while the resource lives; once its deletion is announced, for as long as completed
/// changes are. Other lifecycles remember nothing.
pub async fn remember_lifetime<P: Persistence>(
    change: &Change,
    store: &P,
    expiry: &Expiry,
) -> Result<(), HandlerError> {
    let expires = match change.lifecycle {
        Lifecycle::Ready => None,
        Lifecycle::Deleted => Some(
            (SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO) + expiry.completed_ttl).as_secs(),
        ),
        Lifecycle::Failed | Lifecycle::Updated | Lifecycle::Observed => return Ok(()),
    };
    let (Some(arn), Some(born)) = (&change.arn, &change.born) else {
        return Ok(());
    };
    let resource = &change.resource;
    let subject = resource.identity();
    let mut facts: BTreeMap<String, String> = [
        ("subject", subject.clone()),
        ("arn", arn.clone()),
        ("born", born.clone()),
        ("apiVersion", format!("{}/{}", resource.group, resource.version)),
        ("kind", resource.kind.clone()),
        ("name", resource.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(namespace) = &resource.namespace {
        facts.insert("namespace".into(), namespace.clone());
    }
    store
        .remember(&fact_key(change.function, LIFETIME, &subject), &facts, expires)
        .await?;
    store
        .remember(&fact_key(change.function, LIFETIME_BY_ARN, arn), &facts, expires)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use common::aws::AwsError;
    use common::idempotency::MemoryStore;
    use common::intake::{Intake, read_payload};
    use common::rds::LiveDatabase;
    use common::resolve::{Scope, Tags};
    use common::testing::{db_arn, ready_event, sample};
    use serde_json::Value;
    use tokio::time::Instant;

    use super::*;

    const ID: &str = "orders-db";

    struct Fakes {
        tags: HashMap<String, Tags>,
        databases: Mutex<HashMap<String, Liveness>>,
    }

    impl TagReader for Fakes {
        async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
            Ok(self.tags.get(arn).cloned())
        }
        async fn find_by_tags(&self, _: &str, _: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
            Ok(Vec::new())
        }
    }

    impl Databases for Fakes {
        async fn liveness(&self, arn: &str) -> Result<Liveness, AwsError> {
            Ok(self
                .databases
                .lock()
                .unwrap()
                .get(arn)
                .cloned()
                .unwrap_or(Liveness::Gone))
        }
    }

    fn database(born: &str, status: &str) -> LiveDatabase {
        LiveDatabase {
            arn: db_arn(ID),
            status: Some(status.into()),
            engine: None,
            host: None,
            port: None,
            dbname: None,
            username: None,
            reader_host: None,
            master_user_secret_arn: None,
            created_at: Some(born.into()),
        }
    }

    /// A managed database `orders-db` in team-a, born at `born`.
    fn world(born: &str) -> Fakes {
        let tags: Tags = [
            ("crossplane-kind", "instance.rds.aws.m.upbound.io"),
            ("crossplane-name", ID),
            ("crossplane-namespace", "team-a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Fakes {
            tags: [(db_arn(ID), tags)].into(),
            databases: Mutex::new([(db_arn(ID), Liveness::Live(database(born, "available")))].into()),
        }
    }

    fn invocation() -> Invocation {
        Invocation {
            request_id: "r".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
            scope: Scope {
                account: common::testing::ACCOUNT.into(),
                region: common::testing::REGION.into(),
            },
            deadline: Instant::now() + Duration::from_secs(30),
            metrics: common::metrics::Metrics::new("slack-notifier", "r"),
        }
    }

    fn event(value: &Value) -> ResourceEvent {
        match read_payload(value.to_string().as_bytes()) {
            Ok(Intake::Direct(mut events)) => events.remove(0),
            other => panic!("{other:?}"),
        }
    }

    async fn identify_with(fakes: &Fakes, store: &MemoryStore, value: &Value) -> Identified {
        let lookup = Lookup {
            tagging: fakes,
            rds: fakes,
            store,
            guard: &Guard::default(),
        };
        identify("slack-notifier", &event(value), &invocation(), &lookup)
            .await
            .unwrap()
    }

    fn change(identified: Identified) -> Change {
        match identified {
            Identified::Change(change) => *change,
            Identified::NotAnnounced(outcome) => panic!("not announced: {outcome:?}"),
        }
    }

    fn not_announced(identified: Identified) -> Outcome {
        match identified {
            Identified::NotAnnounced(outcome) => outcome,
            Identified::Change(change) => panic!("announced: {change:?}"),
        }
    }

    fn deleted_event() -> Value {
        let mut deleted = ready_event(ID);
        deleted["tf"] = serde_json::json!({"action": "delete", "prev_input": null});
        deleted
    }

    #[tokio::test]
    async fn a_ready_of_what_is_not_a_database_is_born_when_it_turned_ready() {
        let bucket = "arn:aws:s3:::logs";
        let mut fakes = world("2026-11-20T09:02:41Z");
        let tags: Tags = [
            ("crossplane-kind", "bucket.s3.aws.m.upbound.io"),
            ("crossplane-name", "logs"),
            ("crossplane-namespace", "team-a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        fakes.tags.insert(bucket.into(), tags);
        let ready = serde_json::json!({
            "specversion": "1.0", "id": "b1", "source": "s", "type": "io.crossplane.managed.ready",
            "data": {"apiVersion": "s3.aws.m.upbound.io/v1beta1", "kind": "Bucket",
                     "metadata": {"name": "logs", "namespace": "team-a"},
                     "status": {"conditions": [{"type": "Ready", "status": "True",
                                                "lastTransitionTime": "2026-11-21T10:00:00Z"}]}}
        });
        let change = change(identify_with(&fakes, &MemoryStore::default(), &ready).await);
        assert_eq!(change.arn.as_deref(), Some(bucket));
        assert_eq!(
            change.born.as_deref(),
            Some("2026-11-21T10:00:00Z"),
            "no RDS to ask: the condition says"
        );
    }

    #[tokio::test]
    async fn a_ready_is_one_lifetime_whatever_its_transition_time() {
        let (fakes, store) = (world("2026-11-20T09:02:41Z"), MemoryStore::default());
        let first = change(identify_with(&fakes, &store, &ready_event(ID)).await);
        let mut flapped = ready_event(ID);
        flapped["data"]["status"]["conditions"][0]["lastTransitionTime"] = "2026-12-01T00:00:00Z".into();
        let again = change(identify_with(&fakes, &store, &flapped).await);
        assert_eq!(first.key, again.key);
        assert_eq!(first.born.as_deref(), Some("2026-11-20T09:02:41Z"));
        let recreated = world("2026-12-02T10:00:00Z");
        let second_life = change(identify_with(&recreated, &store, &ready_event(ID)).await);
        assert_ne!(first.key, second_life.key, "a re-created database is another lifetime");
    }

    #[tokio::test]
    async fn a_ready_for_a_gone_or_foreign_database_is_not_announced() {
        let fakes = world("2026-11-20T09:02:41Z");
        fakes.databases.lock().unwrap().clear();
        let gone = not_announced(identify_with(&fakes, &MemoryStore::default(), &ready_event(ID)).await);
        assert_eq!(gone.kind, OutcomeKind::Skipped);
        let mut foreign = ready_event(ID);
        foreign["data"]["metadata"]["namespace"] = "team-b".into();
        foreign["subject"] = format!("/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-b/instances/{ID}").into();
        let refused = not_announced(identify_with(&world("x"), &MemoryStore::default(), &foreign).await);
        assert_eq!(refused.kind, OutcomeKind::Refused);
    }

    #[tokio::test]
    async fn a_deletion_is_announced_only_for_a_remembered_lifetime_proven_gone() {
        let born = "2026-11-20T09:02:41Z";
        let (fakes, store) = (world(born), MemoryStore::default());
        // Nothing remembered: not announced.
        let unknown = not_announced(identify_with(&fakes, &store, &deleted_event()).await);
        assert_eq!(unknown.kind, OutcomeKind::Skipped, "{unknown:?}");
        let ready = change(identify_with(&fakes, &store, &ready_event(ID)).await);
        remember_lifetime(&ready, &store, &Expiry::default()).await.unwrap();
        // Remembered, but the lifetime is still live (a Ready flap's tf.action=delete).
        let live = not_announced(identify_with(&fakes, &store, &deleted_event()).await);
        assert!(
            live.kind == OutcomeKind::Skipped && live.detail.contains("still exists"),
            "{live:?}"
        );
        // Being deleted, gone, or replaced by another lifetime: announced, keyed by the lifetime.
        for state in [
            Liveness::GoingAway(database(born, "deleting")),
            Liveness::Gone,
            Liveness::Live(database("2026-12-02T10:00:00Z", "available")),
        ] {
            fakes.databases.lock().unwrap().insert(db_arn(ID), state);
            let deletion = change(identify_with(&fakes, &store, &deleted_event()).await);
            let (key, _) = change_key(
                "slack-notifier",
                &ready.resource.identity(),
                Lifecycle::Deleted,
                &format!("born={born}"),
            );
            assert_eq!(deletion.key, key);
        }
    }

    #[tokio::test]
    async fn an_aws_deletion_event_finds_its_managed_resource_by_arn_or_is_refused() {
        let (fakes, store) = (world("2026-11-20T09:02:41Z"), MemoryStore::default());
        let mut rds_deleted = sample("eventbridge.rds-instance-deleted.json");
        rds_deleted["detail"]["SourceArn"] = db_arn(ID).into();
        let refused = not_announced(identify_with(&fakes, &store, &rds_deleted).await);
        assert_eq!(
            refused.kind,
            OutcomeKind::Refused,
            "never announced: nothing proves it is ours"
        );
        let ready = change(identify_with(&fakes, &store, &ready_event(ID)).await);
        remember_lifetime(&ready, &store, &Expiry::default()).await.unwrap();
        fakes.databases.lock().unwrap().clear();
        let deletion = change(identify_with(&fakes, &store, &rds_deleted).await);
        assert_eq!(
            deletion.resource.subject(),
            ready.resource.subject(),
            "the identity comes from the memory"
        );
        assert_eq!(
            deletion.key,
            change(identify_with(&fakes, &store, &deleted_event()).await).key
        );
    }

    #[tokio::test]
    async fn an_observed_change_is_keyed_by_its_own_time_not_a_failed_sync() {
        let (fakes, store) = (world("x"), MemoryStore::default());
        let observed = serde_json::json!({
            "specversion": "1.0", "id": "o1", "source": "s", "type": "io.crossplane.managed.observed",
            "time": "2026-11-22T08:00:00Z",
            "data": {"apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance",
                     "metadata": {"name": ID, "namespace": "team-a"},
                     "status": {"conditions": [{"type": "Synced", "status": "False", "reason": "Pending",
                                                "lastTransitionTime": "2026-11-20T00:00:00Z"}]}}
        });
        let observed = change(identify_with(&fakes, &store, &observed).await);
        assert_eq!(observed.lifecycle, Lifecycle::Observed);
        assert!(
            observed.description.ends_with("since=2026-11-22T08:00:00Z"),
            "{}",
            observed.description
        );
    }

    #[tokio::test]
    async fn an_announced_deletion_keeps_its_lifetime_until_the_memory_expires() {
        let (fakes, store) = (world("2026-11-20T09:02:41Z"), MemoryStore::default());
        let ready = change(identify_with(&fakes, &store, &ready_event(ID)).await);
        remember_lifetime(&ready, &store, &Expiry::default()).await.unwrap();
        fakes.databases.lock().unwrap().clear();
        let deletion = change(identify_with(&fakes, &store, &deleted_event()).await);
        remember_lifetime(&deletion, &store, &Expiry::default()).await.unwrap();
        // A late delivery of the same deletion still finds the lifetime (and so its key).
        let again = change(identify_with(&fakes, &store, &deleted_event()).await);
        assert_eq!(again.key, deletion.key);
    }

    #[tokio::test]
    async fn a_failure_episode_is_keyed_by_its_start() {
        let (fakes, store) = (world("x"), MemoryStore::default());
        let mut warning = sample("k8s-event-exporter.cannot-update.json");
        warning["involvedObject"]["name"] = ID.into();
        let first = change(identify_with(&fakes, &store, &warning).await);
        warning["count"] = 9.into();
        warning["lastTimestamp"] = "2026-11-21T16:00:00Z".into();
        assert_eq!(change(identify_with(&fakes, &store, &warning).await).key, first.key);
        let mut failed = sample("failed.namespaced.json");
        failed["data"]["status"]["conditions"][1]["lastTransitionTime"] = "2026-11-21T15:02:10.000Z".into();
        assert_eq!(
            change(identify_with(&fakes, &store, &failed).await).key,
            first.key,
            "the same episode, at second precision"
        );
        warning["firstTimestamp"] = "2026-11-22T00:00:00Z".into();
        assert_ne!(
            change(identify_with(&fakes, &store, &warning).await).key,
            first.key,
            "a new episode"
        );
    }
}
