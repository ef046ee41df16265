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

use aws_sdk_rds::Client as RdsClient;
use common::crossplane::{CONDITION_READY, CONDITION_SYNCED};
use common::idempotency::{DynamoStore, Expiry, Persistence, change_key, fact_key, normalise_time};
use common::model::Lifecycle;
use common::rds::{self, Liveness};
use common::resolve::{self, Arn, Guard, TagReader};
use common::runtime::{Invocation, Outcome, OutcomeKind, unresolved};
use common::tagging::TaggingApi;
use common::{HandlerError, ManagedResource, ResourceEvent};
use serde_json::json;

/// What identifying a change reads.
pub struct Lookup<'a> {
    pub tagging: &'a TaggingApi,
    pub rds: &'a RdsClient,
    pub store: &'a DynamoStore,
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
pub async fn identify(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_>,
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
            let subject = resource.subject();
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

async fn ready(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_>,
) -> Result<Identified, HandlerError> {
    // A stale or forged `ready` for something that is not there, or not Crossplane's, is not
    // announced.
    let resolved = match resolve::resolve(&event.resource, &invocation.scope, lookup.guard, lookup.tagging).await {
        Ok(resolved) => resolved,
        Err(why) => return unresolved(why).map(Identified::NotAnnounced),
    };
    let arn = resolved.arn.as_str();
    let born = if is_rds(arn) {
        match rds::liveness(lookup.rds, arn).await? {
            Liveness::Live(db) => db
                .created_at
                .ok_or_else(|| HandlerError::Permanent(format!("RDS does not say when {arn} was created")))?,
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
    let subject = resolved.resource.subject();
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

async fn deleted(
    function: &'static str,
    event: &ResourceEvent,
    invocation: &Invocation,
    lookup: &Lookup<'_>,
) -> Result<Identified, HandlerError> {
    let resource = &event.resource;
    // Which lifetime was announced: by managed resource, or (an AWS event without Crossplane's
    // tags) by ARN.
    let remembered = if resource.identity_verified {
        lookup
            .store
            .recall(&fact_key(function, LIFETIME, &resource.subject()))
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
        if let Liveness::Live(db) = rds::liveness(lookup.rds, arn).await?
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
    } else if lookup.tagging.tags_of(arn).await?.is_some() && resource.deletion_timestamp.is_none() {
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

/// Remembers what an announcement established: the lifetime announced ready (kept while the
/// resource lives), or, once its deletion is announced, for as long as completed changes are.
pub async fn after_announcing(change: &Change, lookup: &Lookup<'_>, expiry: &Expiry) -> Result<(), HandlerError> {
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
    let subject = resource.subject();
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
    lookup
        .store
        .remember(&fact_key(change.function, LIFETIME, &subject), &facts, expires)
        .await?;
    lookup
        .store
        .remember(&fact_key(change.function, LIFETIME_BY_ARN, arn), &facts, expires)
        .await?;
    Ok(())
}
