//! Convergence without events (ARCHITECTURE.md §12): a scheduled sweep lists every resource
//! Crossplane manages in each account and region the function may act on, and converges each
//! one exactly as an event about it would (the handler is the same; the event is made here).
//!
//! A sweep that the invocation's deadline cuts short goes on where it stopped: the function
//! re-invokes itself asynchronously with a [`Continuation`] (the resources of the current page
//! not yet converged, the token of the next page, the totals so far), never from the start.

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
            seen: self.seen.saturating_add(other.seen),
            converged: self.converged.saturating_add(other.converged),
            unchanged: self.unchanged.saturating_add(other.unchanged),
            skipped: self.skipped.saturating_add(other.skipped),
            refused: self.refused.saturating_add(other.refused),
            failed: self.failed.saturating_add(other.failed),
            unlisted: self.unlisted.saturating_add(other.unlisted),
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
    ResourceEvent::from_resource(
        id,
        source.to_string(),
        None,
        Signal::Stated(crate::model::Lifecycle::Updated),
        ManagedResource::known_by_arn(&listed.arn, &listed.kind),
    )
}

/// A sweep that has run this many invocations is stopped: a chain that long is a fault (a
/// continuation forged or replayed in a loop), not a large estate (each invocation converges
/// hundreds of resources).
pub const MAX_INVOCATIONS: u32 = 1000;

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
        // function sweeps, and only resources in that target (every one still passes
        // resolution's guard).
        Some(continuation) => check_continuation(continuation, targets)?,
    };
    if state.invocations >= MAX_INVOCATIONS {
        return Err(HandlerError::Permanent(
            format!("sweep {} stopped after {MAX_INVOCATIONS} invocations", state.sweep).into(),
        ));
    }
    // Each resource must be done, its retries included, before the reserve: what is left of it
    // is the continuation's.
    let bounded = Invocation {
        deadline: invocation
            .deadline
            .checked_sub(settings.reserve)
            .unwrap_or(invocation.deadline),
        ..invocation.clone()
    };
    let mut this = Summary::default();
    let mut progressed = false;
    let out_of_time = || invocation.remaining() <= settings.reserve;
    let finished = loop {
        if !state.pending.is_empty() {
            let done = match fleet.handler_at(&state.target, &invocation.scope, &state.sweep).await {
                Ok(handler) => converge(&*handler, &state, settings.concurrency, &bounded, &mut this).await,
                Err(error) => {
                    // Credentials for the account could not be had: its resources are left for
                    // the next sweep, as failed.
                    tracing::error!(sweep = %state.sweep, target = %state.target, error = %error.message(), "cannot act in this account and region");
                    this.failed = this.failed.saturating_add(state.pending.len() as u64);
                    state.pending.len()
                }
            };
            progressed |= done > 0;
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
            Listing::Done => match targets
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
            },
        };
        let page = match fleet.handler_at(&state.target, &invocation.scope, &state.sweep).await {
            Ok(handler) => handler.list_managed(token.as_deref()).await,
            Err(error) => Err(error),
        };
        progressed = true;
        match page {
            Ok(page) => {
                tracing::debug!(sweep = %state.sweep, target = %state.target, listed = page.resources.len(), "listed");
                this.seen = this.seen.saturating_add(page.resources.len() as u64);
                state.pending = page.resources;
                state.listing = page.next.map_or(Listing::Done, Listing::Next);
            }
            Err(error) if token.is_some() && error.message().contains(TOKEN_EXPIRED) => {
                // A continuation that waited longer than a page token lives: list this account
                // and region again (what was converged is unchanged now, and costs no write).
                tracing::warn!(sweep = %state.sweep, target = %state.target, "page token expired: listing again");
                state.listing = Listing::Start;
            }
            Err(error) => {
                // One account or region that cannot be listed (no role, denied, throttled past
                // every retry) does not stop the others; the next sweep tries it again.
                tracing::error!(sweep = %state.sweep, target = %state.target, error_type = error.error_type(), error = %error.message(), "listing failed");
                this.unlisted = this.unlisted.saturating_add(1);
                state.listing = Listing::Done;
            }
        }
    };
    let totals = state.totals.plus(this);
    let invocation_number = state.invocations.saturating_add(1);
    let continued = if finished {
        false
    } else if !progressed {
        // Nothing could be started: a continuation would be the same one, forever.
        return Err(HandlerError::Permanent(
            format!(
                "sweep {}: {} ms left at the start, within the sweep's reserve of {} ms: raise the function's timeout",
                state.sweep,
                invocation.remaining().as_millis(),
                settings.reserve.as_millis()
            )
            .into(),
        ));
    } else {
        let next = Continuation {
            invocations: invocation_number,
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
        "invocation": invocation_number,
        "finished": finished,
        "continued": continued,
        "this_invocation": this,
        "totals": totals,
    });
    tracing::info!(
        sweep = %state.sweep,
        invocation = invocation_number,
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

/// The error code (its stem) of a `GetResources` page token that has expired (they live 15
/// minutes): the error's message starts with it.
const TOKEN_EXPIRED: &str = "PaginationTokenExpired";

/// A continuation may name only a target of this function, and pending resources only in it
/// (an S3 bucket's ARN names neither account nor region).
fn check_continuation(continuation: Continuation, targets: &[Target]) -> Result<Continuation, HandlerError> {
    let invalid = |why: String| HandlerError::Invalid(IntakeError::new("sweep.continuation", why));
    if !targets.contains(&continuation.target) {
        return Err(invalid(format!(
            "target {} is not an account and region this function sweeps",
            continuation.target
        )));
    }
    let elsewhere = continuation.pending.iter().find(|listed| {
        Arn::parse(&listed.arn).is_none_or(|arn| {
            let in_target = |part: &str, of_target: &str| part.is_empty() || part == of_target;
            !in_target(arn.account, &continuation.target.account) || !in_target(arn.region, &continuation.target.region)
        })
    });
    if let Some(listed) = elsewhere {
        return Err(invalid(format!(
            "pending {} is not in {}",
            listed.arn, continuation.target
        )));
    }
    Ok(continuation)
}

/// Converges the pending resources, `concurrency` at a time, starting none past the (bounded)
/// invocation's deadline. Returns how many (from the front) were done: the ones started, since
/// they start in order.
async fn converge<H: Handler>(
    handler: &H,
    state: &Continuation,
    concurrency: usize,
    bounded: &Invocation,
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
            if bounded.remaining().is_zero() {
                return None;
            }
            Some(run_event(handler, event, bounded).await)
        })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(each)
        .buffered(concurrency.max(1))
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

    /// A handler in one account and region over a fixed listing: it records what it converges,
    /// each resource taking `work` (of the paused test clock).
    struct FakeHandler {
        pages: Vec<Vec<String>>,
        handled: Arc<Mutex<Vec<String>>>,
        work: Duration,
    }

    impl Handler for FakeHandler {
        const SWEEPS: bool = true;

        fn name(&self) -> &'static str {
            "fake"
        }

        async fn handle(&self, event: &ResourceEvent, _: &Invocation) -> Result<crate::runtime::Outcome, HandlerError> {
            tokio::time::sleep(self.work).await;
            let arn = event.resource.arn.clone().unwrap_or_default();
            self.handled.lock().unwrap().push(arn.clone());
            Ok(crate::runtime::Outcome::new(OutcomeKind::Applied, Some(&arn), "done"))
        }

        async fn list_managed(&self, token: Option<&str>) -> Result<Page, HandlerError> {
            let index: usize = token
                .map_or(Ok(0), str::parse)
                .map_err(|_| HandlerError::Permanent("bad token".to_string().into()))?;
            let resources = self.pages.get(index).cloned().unwrap_or_default();
            Ok(Page {
                resources: resources
                    .into_iter()
                    .map(|arn| Listed {
                        arn,
                        kind: "table.dynamodb.aws.upbound.io".into(),
                        tags: None,
                    })
                    .collect(),
                next: (index + 1 < self.pages.len()).then(|| (index + 1).to_string()),
            })
        }
    }

    /// Handlers for some targets; any other target cannot be reached (no role there).
    struct FakeFleet(BTreeMap<Target, Arc<FakeHandler>>);

    impl Sweepable for FakeFleet {
        type Handler = FakeHandler;
        async fn handler_at(&self, target: &Target, _: &Scope, _: &str) -> Result<Arc<FakeHandler>, HandlerError> {
            self.0
                .get(target)
                .cloned()
                .ok_or_else(|| HandlerError::Permanent(format!("no role in {target}").into()))
        }
    }

    #[derive(Default)]
    struct Captured(Mutex<Vec<Vec<u8>>>);

    impl Requeue for Captured {
        async fn requeue(&self, _: &str, payload: Vec<u8>) -> Result<(), AwsError> {
            self.0.lock().unwrap().push(payload);
            Ok(())
        }
    }

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    fn target(account: &str) -> Target {
        Target {
            account: account.into(),
            region: "us-east-1".into(),
        }
    }

    fn invocation_with(left: Duration) -> Invocation {
        Invocation {
            request_id: "r1".into(),
            function_arn: "arn:aws:lambda:us-east-1:111111111111:function:f".into(),
            scope: home(),
            deadline: tokio::time::Instant::now() + left,
            metrics: crate::metrics::Metrics::new("f", "r1"),
        }
    }

    fn fleet(handled: &Arc<Mutex<Vec<String>>>) -> (FakeFleet, Vec<Target>, Vec<String>) {
        let arn = |account: &str, n: usize| format!("arn:aws:dynamodb:us-east-1:{account}:table/t{n}");
        let mut by_target = BTreeMap::new();
        let mut all = Vec::new();
        for account in ["111111111111", "222222222222"] {
            let arns: Vec<String> = (0..6).map(|n| arn(account, n)).collect();
            all.extend(arns.iter().cloned());
            let handler = FakeHandler {
                pages: vec![arns[..3].to_vec(), arns[3..].to_vec()],
                handled: Arc::clone(handled),
                work: Duration::from_secs(1),
            };
            by_target.insert(target(account), Arc::new(handler));
        }
        // The third target has no handler: it cannot be listed.
        let targets = vec![target("111111111111"), target("222222222222"), target("333333333333")];
        (FakeFleet(by_target), targets, all)
    }

    fn continuation(captured: &Captured) -> Option<SweepRequest> {
        let payload = captured.0.lock().unwrap().pop()?;
        match crate::intake::read_payload(&payload) {
            Ok(crate::intake::Intake::Sweep(request)) => Some(request),
            other => panic!("not a sweep: {other:?}"),
        }
    }

    const SETTINGS: SweepSettings = SweepSettings {
        concurrency: 2,
        reserve: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn a_sweep_cut_short_goes_on_where_it_stopped_and_does_each_resource_once() {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let (fleet, targets, all) = fleet(&handled);
        let captured = Captured::default();
        let mut request = SweepRequest::default();
        let mut answers = Vec::new();
        loop {
            let answer = sweep(
                &fleet,
                request,
                &targets,
                SETTINGS,
                &captured,
                &invocation_with(Duration::from_secs(4)),
            )
            .await
            .unwrap();
            answers.push(answer);
            match continuation(&captured) {
                Some(next) => request = next,
                None => break,
            }
            assert!(answers.len() < 50, "no end: {answers:?}");
        }
        assert!(answers.len() >= 3, "{answers:?}");
        assert_eq!(*handled.lock().unwrap(), all, "every resource once, in listing order");
        let last = answers.last().unwrap();
        assert_eq!(last["finished"], true);
        assert_eq!(last["totals"]["seen"], 12);
        assert_eq!(last["totals"]["converged"], 12);
        assert_eq!(last["totals"]["unlisted"], 1, "the unreachable target, once: {last}");
        assert_eq!(last["invocation"].as_u64(), Some(answers.len() as u64));
        assert!(answers.iter().all(|a| a["sweep"] == "sweep-r1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_with_no_time_past_its_reserve_fails_instead_of_requeueing_itself() {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let (fleet, targets, _) = fleet(&handled);
        let captured = Captured::default();
        let short = invocation_with(SETTINGS.reserve / 2);
        let error = sweep(&fleet, SweepRequest::default(), &targets, SETTINGS, &captured, &short)
            .await
            .unwrap_err();
        assert!(error.message().contains("raise the function's timeout"), "{error}");
        assert!(captured.0.lock().unwrap().is_empty(), "no continuation");
        assert!(handled.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_forged_continuation_is_refused_before_any_call() {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let (fleet, targets, _) = fleet(&handled);
        let captured = Captured::default();
        let forged = |target: Target, pending: &str, invocations: u32| SweepRequest {
            continuation: Some(Continuation {
                sweep: "s".into(),
                invocations,
                target,
                pending: vec![Listed {
                    arn: pending.into(),
                    kind: "table.dynamodb.aws.upbound.io".into(),
                    tags: None,
                }],
                listing: Listing::Done,
                totals: Summary::default(),
            }),
        };
        let cases = [
            (
                forged(
                    target("999999999999"),
                    "arn:aws:dynamodb:us-east-1:999999999999:table/x",
                    1,
                ),
                "is not an account and region this function sweeps",
            ),
            (
                forged(
                    target("111111111111"),
                    "arn:aws:dynamodb:us-east-1:222222222222:table/x",
                    1,
                ),
                "is not in 111111111111/us-east-1",
            ),
            (
                forged(
                    target("111111111111"),
                    "arn:aws:dynamodb:eu-west-1:111111111111:table/x",
                    1,
                ),
                "is not in 111111111111/us-east-1",
            ),
            (
                forged(
                    target("111111111111"),
                    "arn:aws:dynamodb:us-east-1:111111111111:table/x",
                    MAX_INVOCATIONS,
                ),
                "stopped after",
            ),
        ];
        for (request, why) in cases {
            let error = sweep(
                &fleet,
                request,
                &targets,
                SETTINGS,
                &captured,
                &invocation_with(Duration::from_secs(60)),
            )
            .await
            .unwrap_err();
            assert!(error.message().contains(why), "{why}: {error}");
        }
        // A bucket's ARN names neither account nor region: it may be pending anywhere.
        let bucket = forged(target("111111111111"), "arn:aws:s3:::logs", 1);
        let answer = sweep(
            &fleet,
            bucket,
            &targets,
            SETTINGS,
            &captured,
            &invocation_with(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert_eq!(
            answer["this_invocation"]["converged"],
            1 + 6,
            "the bucket, then the next target: {answer}"
        );
        assert!(handled.lock().unwrap().iter().any(|arn| arn == "arn:aws:s3:::logs"));
    }
}
