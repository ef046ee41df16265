//! Convergence without events (ARCHITECTURE.md §12): a scheduled sweep lists every resource
//! Crossplane manages in each account and region the function may act on, and converges each
//! one exactly as an event about it would (the handler is the same; the event is made here).
//!
//! A sweep that the invocation's deadline cuts short goes on where it stopped: the function
//! re-invokes itself asynchronously with a [`Continuation`] (the resources of the current page
//! not yet converged, the token of the next page, the totals so far), never from the start.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::error::{HandlerError, IntakeError};
use crate::kinds::KnownKind;
use crate::model::{ManagedResource, ResourceEvent, Signal};
use crate::resolve::{Arn, Guard, Scope};
use crate::runtime::{EventResult, Handler, Invocation, OutcomeKind, run_event};

/// The `source` of the events a sweep makes.
pub const SOURCE: &str = "crossplane-lambda/sweep";

/// One account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub account: String,
    pub region: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Where a sweep looks: every allowed account (the function's own when none is listed) in every
/// allowed region (the function's own when none is listed: "any region" cannot be enumerated).
pub fn targets(guard: &Guard, home: &Scope) -> Vec<Target> {
    let or_home = |listed: &[String], home: &str| {
        if listed.is_empty() {
            vec![home.to_string()]
        } else {
            listed.to_vec()
        }
    };
    let mut targets: Vec<Target> = or_home(&guard.allowed_accounts, &home.account)
        .into_iter()
        .flat_map(|account| {
            or_home(&guard.allowed_regions, &home.region)
                .into_iter()
                .map(move |region| Target {
                    account: account.clone(),
                    region,
                })
        })
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// A sweep request: `{"sweep": {}}` starts one, `{"sweep": {"continuation": …}}` goes on with one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    #[serde(default)]
    pub continuation: Option<Continuation>,
}

impl SweepRequest {
    /// From the value of the payload's `sweep` field.
    pub fn from_value(value: Value) -> Result<Self, IntakeError> {
        crate::intake::typed(value).map_err(|e| e.within("sweep"))
    }
}

/// Where a sweep stopped, and what it has done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// The sweep's id: the request id of its first invocation.
    pub sweep: String,
    /// The invocations this sweep has had before this one.
    pub invocations: u32,
    /// The account and region being swept.
    pub target: Target,
    /// Resources listed and not yet converged, in listing order.
    pub pending: Vec<Listed>,
    /// Where the listing of `target` goes on after `pending`.
    pub listing: Listing,
    /// The totals of the invocations before this one.
    pub totals: Summary,
}

/// The state of one target's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listing {
    /// No page read yet.
    Start,
    /// The next page's token.
    Next(String),
    /// Every page read.
    Done,
}

/// A resource a listing found: its ARN, the `crossplane-kind` tag it carried, and all its tags
/// (not kept in a continuation: read again after one, as they may have changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub arn: String,
    pub kind: String,
    #[serde(skip)]
    pub tags: Option<crate::resolve::Tags>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub resources: Vec<Listed>,
    pub next: Option<String>,
}

/// What a sweep (or one invocation of it) did, resource by resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Resources listed.
    pub seen: u64,
    /// Converged: something was written.
    pub converged: u64,
    /// Already as they should be: nothing written.
    pub unchanged: u64,
    /// Nothing to do (gone, being deleted, not established).
    pub skipped: u64,
    /// Refused by the guard or the ownership rules.
    pub refused: u64,
    /// Failed: left for the next sweep.
    pub failed: u64,
    /// Accounts and regions that could not be listed.
    pub unlisted: u64,
}

impl Summary {
    fn count(&mut self, result: &Result<EventResult, (String, HandlerError)>) {
        let counter = match result {
            Ok(result) => match result.outcome {
                OutcomeKind::Applied => &mut self.converged,
                OutcomeKind::Unchanged | OutcomeKind::Duplicate => &mut self.unchanged,
                OutcomeKind::Skipped => &mut self.skipped,
                OutcomeKind::Refused => &mut self.refused,
            },
            Err(_) => &mut self.failed,
        };
        *counter += 1;
    }

    fn plus(self, other: Summary) -> Summary {
        Summary {
            seen: self.seen + other.seen,
            converged: self.converged + other.converged,
            unchanged: self.unchanged + other.unchanged,
            skipped: self.skipped + other.skipped,
            refused: self.refused + other.refused,
            failed: self.failed + other.failed,
            unlisted: self.unlisted + other.unlisted,
        }
    }
}

/// How a sweep runs (the function's settings, documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    /// `SWEEP_CONCURRENCY` (default 4): resources converged at once.
    pub concurrency: usize,
    /// No resource is started with less than this left before the deadline: the time one
    /// resource may take (its calls, their retries), plus the re-invocation.
    pub reserve: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            concurrency: 4,
            reserve: Duration::from_secs(5),
        }
    }
}

impl SweepSettings {
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut settings = SweepSettings::default();
        if let Some(value) = var("SWEEP_CONCURRENCY") {
            settings.concurrency = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("SWEEP_CONCURRENCY={value:?}: expected 1 to 64"))?;
        }
        Ok(settings)
    }
}

/// Sends the continuation of a sweep to the function itself, asynchronously.
pub trait Requeue: Send + Sync {
    fn requeue(&self, function_arn: &str, payload: Vec<u8>) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// For functions that do not sweep: a continuation has nowhere to go.
impl Requeue for () {
    async fn requeue(&self, _function_arn: &str, _payload: Vec<u8>) -> Result<(), AwsError> {
        Err(AwsError {
            operation: "Requeue",
            retryable: false,
            code: None,
            message: "this function does not sweep".into(),
        })
    }
}

/// [`Requeue`] with Lambda's `Invoke` (`InvocationType=Event`): queued by Lambda, retried by it.
#[cfg(feature = "sweep")]
#[derive(Debug, Clone)]
pub struct LambdaRequeue(pub aws_sdk_lambda::Client);

#[cfg(feature = "sweep")]
impl Requeue for LambdaRequeue {
    async fn requeue(&self, function_arn: &str, payload: Vec<u8>) -> Result<(), AwsError> {
        self.0
            .invoke()
            .function_name(function_arn)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("Invoke", &e))
    }
}

/// The listing a sweep reads: the resources of some kinds that Crossplane manages, a page at a
/// time, in one account and region ([`crate::tagging::TaggingApi`] in production).
pub trait Inventory: Send + Sync {
    fn managed_page(
        &self,
        kinds: &[&'static KnownKind],
        token: Option<&str>,
    ) -> impl Future<Output = Result<Page, AwsError>> + Send;
}

/// What a sweep needs of the function: the handler acting in an account and region, with that
/// account's credentials (a [`crate::fleet::Fleet`] in production).
pub trait Sweepable: Send + Sync {
    type Handler: Handler;
    /// The handler acting in `target`; `home` is where the function runs, `why` names the sweep
    /// or event that needs it (it names the session of an assumed role).
    fn handler_at(
        &self,
        target: &Target,
        home: &Scope,
        why: &str,
    ) -> impl Future<Output = Result<std::sync::Arc<Self::Handler>, HandlerError>> + Send;
}

/// The event a sweep makes for one listed resource: an update of the managed resource whose
/// identity the live resource's Crossplane tags establish (read again during resolution).
pub fn event_for(listed: &Listed, sweep: &str) -> ResourceEvent {
    let mut event = update_of(listed, format!("{sweep}:{}", listed.arn), SOURCE);
    event.listed_tags = listed.tags.clone();
    event
}

/// An update of the managed resource behind a live resource known by its ARN and `crossplane-kind`
/// tag (a hint: the live tags, read again during resolution, decide who manages it).
pub fn update_of(listed: &Listed, id: String, source: &str) -> ResourceEvent {
    let (group, kind) = crate::kinds::from_crossplane_kind_tag(&listed.kind)
        .map(|(known, group)| (group, known.kind.to_string()))
        .unwrap_or_else(|| ("unknown".into(), "Unknown".into()));
    let identifier = Arn::parse(&listed.arn).map_or(listed.arn.as_str(), |arn| arn.resource);
    let resource = ManagedResource {
        version: crate::kinds::lookup(&group, &kind)
            .map_or("", |known| crate::kinds::default_version(&group, known))
            .to_string(),
        group,
        kind,
        namespace: None,
        name: identifier.to_string(),
        uid: None,
        external_name: None,
        region: Arn::parse(&listed.arn)
            .map(|arn| arn.region.to_string())
            .filter(|r| !r.is_empty()),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        conditions: Vec::new(),
        arn: Some(listed.arn.clone()),
        deletion_timestamp: None,
        object: None,
        identity_verified: false,
        labels_known: false,
    };
    ResourceEvent::from_resource(
        id,
        source.to_string(),
        None,
        Signal::Stated(crate::model::Lifecycle::Updated),
        resource,
    )
}

/// Runs one invocation of a sweep: converges what the continuation left, then lists and converges
/// page after page, target after target, until every target is done or the deadline is near;
/// then re-queues the continuation. Answers with the summary.
pub async fn sweep<S, R>(
    fleet: &S,
    request: SweepRequest,
    targets: &[Target],
    settings: SweepSettings,
    requeue: &R,
    invocation: &Invocation,
) -> Result<Value, HandlerError>
where
    S: Sweepable,
    R: Requeue,
{
    let Some(first) = targets.first() else {
        return Err(HandlerError::Permanent(
            "no account and region to sweep".to_string().into(),
        ));
    };
    let mut state = match request.continuation {
        None => Continuation {
            sweep: format!("sweep-{}", invocation.request_id),
            invocations: 0,
            target: first.clone(),
            pending: Vec::new(),
            listing: Listing::Start,
            totals: Summary::default(),
        },
        // A continuation is only as trusted as the payload: it may name only a target this
        // function sweeps (and every resource still passes resolution's guard).
        Some(continuation) if targets.contains(&continuation.target) => continuation,
        Some(continuation) => {
            return Err(HandlerError::Invalid(IntakeError::new(
                "sweep.continuation.target",
                format!(
                    "{} is not an account and region this function sweeps",
                    continuation.target
                ),
            )));
        }
    };
    let mut this = Summary::default();
    let out_of_time = || invocation.remaining() <= settings.reserve;
    let finished = loop {
        if !state.pending.is_empty() {
            let handler = fleet.handler_at(&state.target, &invocation.scope, &state.sweep).await;
            let done = match handler {
                Ok(handler) => converge(&*handler, &state, settings, invocation, &mut this).await,
                Err(error) => {
                    // Credentials for the account could not be had: its resources are left for
                    // the next sweep, as failed.
                    tracing::error!(sweep = %state.sweep, target = %state.target, error = %error.message(), "cannot act in this account and region");
                    this.failed += state.pending.len() as u64;
                    state.pending.len()
                }
            };
            state.pending.drain(..done.min(state.pending.len()));
            if !state.pending.is_empty() {
                break false;
            }
        }
        if out_of_time() {
            break false;
        }
        let token = match &state.listing {
            Listing::Start => None,
            Listing::Next(token) => Some(token.clone()),
            Listing::Done => {
                match targets
                    .iter()
                    .position(|t| *t == state.target)
                    .and_then(|i| targets.get(i + 1))
                {
                    Some(next) => {
                        state.target = next.clone();
                        state.listing = Listing::Start;
                        continue;
                    }
                    None => break true,
                }
            }
        };
        let page = match fleet.handler_at(&state.target, &invocation.scope, &state.sweep).await {
            Ok(handler) => handler.list_managed(token.as_deref()).await,
            Err(error) => Err(error),
        };
        match page {
            Ok(page) => {
                tracing::debug!(sweep = %state.sweep, target = %state.target, listed = page.resources.len(), "listed");
                this.seen += page.resources.len() as u64;
                state.pending = page.resources;
                state.listing = page.next.map_or(Listing::Done, Listing::Next);
            }
            Err(error) => {
                // One account or region that cannot be listed (no role, denied, throttled past
                // every retry) does not stop the others; the next sweep tries it again.
                tracing::error!(sweep = %state.sweep, target = %state.target, error_type = error.error_type(), error = %error.message(), "listing failed");
                this.unlisted += 1;
                state.listing = Listing::Done;
            }
        }
    };
    let totals = state.totals.plus(this);
    let continued = if finished {
        false
    } else {
        let next = Continuation {
            invocations: state.invocations + 1,
            totals,
            ..state.clone()
        };
        let payload = json!({"sweep": {"continuation": next}}).to_string().into_bytes();
        requeue.requeue(&invocation.function_arn, payload).await.map_err(|e| {
            HandlerError::retryable(
                format!("sweep {}: the continuation could not be queued", state.sweep),
                e,
            )
        })?;
        true
    };
    let answer = json!({
        "sweep": state.sweep,
        "invocation": state.invocations + 1,
        "finished": finished,
        "continued": continued,
        "this_invocation": this,
        "totals": totals,
    });
    tracing::info!(
        sweep = %state.sweep,
        invocation = state.invocations + 1,
        finished,
        seen = totals.seen,
        converged = totals.converged,
        unchanged = totals.unchanged,
        skipped = totals.skipped,
        refused = totals.refused,
        failed = totals.failed,
        unlisted = totals.unlisted,
        "sweep summary"
    );
    Ok(answer)
}

/// Converges the pending resources, `concurrency` at a time, starting none once the deadline is
/// near. Returns how many (from the front) were done: the ones started, since they start in order.
async fn converge<H: Handler>(
    handler: &H,
    state: &Continuation,
    settings: SweepSettings,
    invocation: &Invocation,
    summary: &mut Summary,
) -> usize {
    let events: Vec<ResourceEvent> = state
        .pending
        .iter()
        .map(|listed| event_for(listed, &state.sweep))
        .collect();
    let each: Vec<_> = events
        .iter()
        .map(|event| async move {
            if invocation.remaining() <= settings.reserve {
                return None;
            }
            Some(run_event(handler, event, invocation).await)
        })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(each)
        .buffered(settings.concurrency.max(1))
        .collect()
        .await;
    let done = results.iter().take_while(|r| r.is_some()).count();
    for result in results.iter().take(done).flatten() {
        summary.count(result);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(accounts: &[&str], regions: &[&str]) -> Guard {
        Guard {
            allowed_accounts: accounts.iter().map(|s| s.to_string()).collect(),
            allowed_regions: regions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn home() -> Scope {
        Scope {
            account: "111111111111".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn targets_are_the_allowed_accounts_by_regions_or_home() {
        assert_eq!(
            targets(&guard(&[], &[]), &home()),
            vec![Target {
                account: "111111111111".into(),
                region: "us-east-1".into()
            }]
        );
        let both = targets(
            &guard(&["222222222222", "111111111111"], &["eu-west-1", "us-east-1"]),
            &home(),
        );
        let names: Vec<String> = both.iter().map(Target::to_string).collect();
        assert_eq!(
            names,
            [
                "111111111111/eu-west-1",
                "111111111111/us-east-1",
                "222222222222/eu-west-1",
                "222222222222/us-east-1"
            ]
        );
        let regions_only = targets(&guard(&[], &["eu-west-1"]), &home());
        assert_eq!(regions_only.len(), 1);
        assert_eq!(regions_only[0].region, "eu-west-1");
    }

    #[test]
    fn a_request_is_strict_about_its_fields() {
        assert_eq!(SweepRequest::from_value(json!({})).unwrap(), SweepRequest::default());
        let error = SweepRequest::from_value(json!({"continuation": {"sweep": "s"}})).unwrap_err();
        assert!(error.to_string().contains("sweep"), "{error}");
        let error = SweepRequest::from_value(json!({"extra": 1})).unwrap_err();
        assert!(error.to_string().contains("extra"), "{error}");
    }

    #[test]
    fn a_listed_resource_becomes_an_update_whose_identity_resolution_reads() {
        let listed = Listed {
            arn: "arn:aws:rds:eu-west-1:222222222222:db:orders".into(),
            kind: "instance.rds.aws.m.upbound.io".into(),
            tags: None,
        };
        let event = event_for(&listed, "sweep-1");
        assert_eq!(event.lifecycle, crate::model::Lifecycle::Updated);
        assert_eq!(event.id, "sweep-1:arn:aws:rds:eu-west-1:222222222222:db:orders");
        assert_eq!(event.source, SOURCE);
        assert_eq!(event.resource.arn.as_deref(), Some(listed.arn.as_str()));
        assert_eq!(event.resource.region.as_deref(), Some("eu-west-1"));
        assert_eq!(event.resource.kind, "Instance");
        assert!(!event.resource.identity_verified, "the live tags decide who manages it");
        assert_eq!(
            event.listed_tags, None,
            "not listed with its tags: read during resolution"
        );
        let with_tags = Listed {
            tags: Some([("crossplane-name".to_string(), "orders".to_string())].into()),
            ..listed.clone()
        };
        assert_eq!(event_for(&with_tags, "s").listed_tags, with_tags.tags);
        let continued: Listed = serde_json::from_value(serde_json::to_value(&with_tags).unwrap()).unwrap();
        assert_eq!(
            continued.tags, None,
            "a continuation carries no tags: they are read again"
        );
        let bucket = event_for(
            &Listed {
                arn: "arn:aws:s3:::logs".into(),
                kind: "bucket.s3.aws.upbound.io".into(),
                tags: None,
            },
            "s",
        );
        assert_eq!(bucket.resource.region, None);
        assert_eq!(bucket.resource.kind, "Bucket");
    }

    #[test]
    fn summaries_count_each_outcome_and_add_up() {
        let mut summary = Summary::default();
        let result = |outcome| {
            Ok(EventResult {
                event: "e".into(),
                resource: None,
                lifecycle: crate::model::Lifecycle::Updated,
                outcome,
                detail: String::new(),
            })
        };
        for outcome in [
            OutcomeKind::Applied,
            OutcomeKind::Unchanged,
            OutcomeKind::Duplicate,
            OutcomeKind::Skipped,
            OutcomeKind::Refused,
        ] {
            summary.count(&result(outcome));
        }
        summary.count(&Err(("e".into(), HandlerError::Permanent("no".to_string().into()))));
        let expected = Summary {
            seen: 0,
            converged: 1,
            unchanged: 2,
            skipped: 1,
            refused: 1,
            failed: 1,
            unlisted: 0,
        };
        assert_eq!(summary, expected);
        let doubled = summary.plus(Summary {
            seen: 3,
            unlisted: 1,
            ..summary
        });
        assert_eq!(doubled.seen, 3);
        assert_eq!(doubled.converged, 2);
        assert_eq!(doubled.failed, 2);
        assert_eq!(doubled.unlisted, 1);
    }

    #[test]
    fn sweep_concurrency_is_checked() {
        let with = |value: Option<&str>| {
            SweepSettings::from_vars(|name| {
                (name == "SWEEP_CONCURRENCY")
                    .then_some(value)
                    .flatten()
                    .map(str::to_string)
            })
        };
        assert_eq!(with(None).unwrap().concurrency, 4);
        assert_eq!(with(Some("1")).unwrap().concurrency, 1);
        assert_eq!(with(Some("64")).unwrap().concurrency, 64);
        for bad in ["0", "65", "four", ""] {
            let error = with(Some(bad)).unwrap_err();
            assert!(error.contains("SWEEP_CONCURRENCY"), "{error}");
        }
    }
}
