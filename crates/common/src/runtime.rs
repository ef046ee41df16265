//! Runs a [`Handler`] under the Lambda runtime and answers each transport as ARCHITECTURE.md §7 says:
//! direct invocations get `{"handler", "results"}` or a typed function error, SQS batches get
//! `batchItemFailures`, Function URL requests get an HTTP status.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderMap;
use aws_lambda_events::http::header::{CONTENT_TYPE, HeaderValue};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use base64::Engine;
use futures_util::StreamExt;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{LambdaEvent, LambdaInvocation, service_fn};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{HandlerError, IntakeError};
use crate::intake::{self, Intake};
use crate::metrics::{self, About, Metrics};
use crate::model::{Lifecycle, ResourceEvent};
use crate::resolve::{Arn, Scope};
use crate::sweep::{Page, SweepRequest};

/// What a handler did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Applied,
    Unchanged,
    Skipped,
    Duplicate,
    Refused,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Applied => "applied",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub resource: Option<String>,
    pub detail: String,
}

impl Outcome {
    pub fn new(kind: OutcomeKind, resource: Option<&str>, detail: impl Into<String>) -> Self {
        Outcome {
            kind,
            resource: resource.map(str::to_string),
            detail: detail.into(),
        }
    }
}

/// What a handler answers when resolution found nothing to act on: nothing there is `skipped`,
/// the guard's refusal is `refused`, an ambiguity is a permanent failure, AWS's own errors keep
/// their class.
pub fn unresolved(why: crate::resolve::Unresolved) -> Result<Outcome, HandlerError> {
    use crate::resolve::Unresolved;
    match why {
        Unresolved::NotFound(why) => Ok(Outcome::new(OutcomeKind::Skipped, None, why)),
        Unresolved::Refused(why) => Ok(Outcome::new(OutcomeKind::Refused, None, why)),
        Unresolved::Ambiguous(why) => Err(HandlerError::Permanent(why.into())),
        Unresolved::Aws(e) => Err(e.into()),
    }
}

/// What resolving an event's resource gave a handler: the resource to act on, or the answer
/// already decided ([`unresolved`]'s).
#[derive(Debug)]
pub enum Resolution {
    Resolved(Box<crate::resolve::Resolved>),
    Answered(Outcome),
}

/// Every handler's preamble (ARCHITECTURE.md §5): resolve the event's resource, and turn a
/// resolution that found nothing to act on into the handler's answer ([`unresolved`]).
/// `Err` only for failures.
pub async fn resolve_event(
    event: &ResourceEvent,
    invocation: &Invocation,
    guard: &crate::resolve::Guard,
    reader: &impl crate::resolve::TagReader,
) -> Result<Resolution, HandlerError> {
    let reader = crate::resolve::PrefetchedTags {
        arn: event.resource.arn.as_deref(),
        tags: event.listed_tags.as_ref(),
        reader,
    };
    match crate::resolve::resolve(&event.resource, &invocation.scope, guard, &reader).await {
        Ok(resolved) => Ok(Resolution::Resolved(Box::new(resolved))),
        Err(why) => unresolved(why).map(Resolution::Answered),
    }
}

/// One entry of `results`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventResult {
    pub event: String,
    pub resource: Option<String>,
    pub lifecycle: Lifecycle,
    pub outcome: OutcomeKind,
    pub detail: String,
}

/// The answer to a direct invocation (shown by Crossplane in `status.atProvider.result`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub handler: String,
    pub results: Vec<EventResult>,
}

/// One invocation: its request id, where the function runs, when it must be done, and its
/// metrics (flushed once, when it ends).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// The ARN the function was invoked by (with its qualifier): where a sweep's continuation goes.
    pub function_arn: String,
    pub scope: Scope,
    pub deadline: Instant,
    pub metrics: Metrics,
}

impl Invocation {
    /// From the runtime's context: the account comes from the function's own ARN
    /// (`AWS_ACCOUNT_ID` overrides it, for local runs), the region from `AWS_REGION`.
    pub fn from_context(context: &lambda_runtime::Context, function: &str) -> Self {
        let arn = Arn::parse(&context.invoked_function_arn);
        let account = std::env::var("AWS_ACCOUNT_ID")
            .ok()
            .filter(|a| !a.is_empty())
            .or_else(|| arn.as_ref().map(|a| a.account.to_string()))
            .unwrap_or_default();
        let region = std::env::var("AWS_REGION")
            .ok()
            .or_else(|| arn.as_ref().map(|a| a.region.to_string()))
            .unwrap_or_else(|| "us-east-1".to_string());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let remaining = Duration::from_millis(remaining_ms(context.deadline, now_ms));
        Invocation {
            request_id: context.request_id.clone(),
            function_arn: context.invoked_function_arn.clone(),
            scope: Scope { account, region },
            deadline: Instant::now() + remaining,
            metrics: Metrics::new(function, &context.request_id),
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Lambda sends the deadline as epoch milliseconds; the cargo lambda emulator sends the
/// function's timeout instead. A value before 2001 cannot be an epoch deadline: take it as
/// the time left.
fn remaining_ms(deadline_ms: u64, now_ms: u64) -> u64 {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    if deadline_ms < YEAR_2001_MS {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now_ms)
    }
}

/// A function of the suite: what it does with one resource event.
pub trait Handler: Send + Sync + 'static {
    /// The function's name, as reported in `handler`.
    fn name(&self) -> &'static str;
    fn handle(
        &self,
        event: &ResourceEvent,
        invocation: &Invocation,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;

    /// Whether this function converges in a sweep (then it lists with [`Handler::list_managed`]).
    const SWEEPS: bool = false;

    /// One page of the resources this function converges in a sweep, in the account and region
    /// its clients act in (ARCHITECTURE.md §12). The default: the function does not sweep.
    fn list_managed(&self, _token: Option<&str>) -> impl Future<Output = Result<Page, HandlerError>> + Send {
        let name = self.name();
        async move { Err(does_not_sweep(name)) }
    }

    /// Runs (one invocation of) a sweep over every account and region the function may act in.
    /// The default: the function does not sweep; [`crate::fleet::Fleet`] does.
    fn sweep(
        &self,
        _request: SweepRequest,
        _invocation: &Invocation,
    ) -> impl Future<Output = Result<Value, HandlerError>> + Send {
        let name = self.name();
        async move { Err(does_not_sweep(name)) }
    }
}

pub(crate) fn does_not_sweep(function: &str) -> HandlerError {
    HandlerError::Invalid(IntakeError::new("sweep", format!("{function} does not sweep")))
}

/// How many events of one invocation (SQS records, batch members) run at once.
pub fn concurrency_from_env() -> usize {
    std::env::var("MAX_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(8)
}

/// Handles one raw payload: the whole of a function's work, callable directly from tests.
pub async fn dispatch<H: Handler>(
    handler: &H,
    raw: &[u8],
    invocation: &Invocation,
    concurrency: usize,
) -> Result<Value, HandlerError> {
    let intake = intake::read_payload(raw).inspect_err(|e| {
        invocation.metrics.count(metrics::INVALID_PAYLOADS, &[], 1.0);
        tracing::warn!(request_id = %invocation.request_id, error = %e, "invalid payload");
    })?;
    let (answer, calls) = metrics::count_aws_calls(answer(handler, intake, invocation, concurrency)).await;
    invocation.metrics.record_aws_calls(calls);
    answer
}

async fn answer<H: Handler>(
    handler: &H,
    intake: Intake,
    invocation: &Invocation,
    concurrency: usize,
) -> Result<Value, HandlerError> {
    match intake {
        Intake::Sweep(request) => handler.sweep(request, invocation).await,
        Intake::Direct(events) => {
            let results = run_events(handler, &events, invocation, concurrency).await;
            let results = collect(results)?;
            Ok(json!(Response {
                handler: handler.name().to_string(),
                results
            }))
        }
        Intake::Sqs(records) => {
            let failures = futures_util::stream::iter(records)
                .map(|record| async move {
                    let failed = match &record.events {
                        Err(e) => {
                            invocation.metrics.count(metrics::INVALID_PAYLOADS, &[], 1.0);
                            tracing::warn!(message_id = %record.message_id, error = %e, "invalid SQS record");
                            true
                        }
                        Ok(events) => {
                            let results = run_events(handler, events, invocation, 1).await;
                            results.iter().any(Result::is_err)
                        }
                    };
                    failed.then_some(record.message_id)
                })
                .buffered(concurrency.max(1))
                .filter_map(|failed| async move { failed })
                .collect::<Vec<_>>()
                .await;
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failures
                .into_iter()
                .map(|item_identifier| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = item_identifier;
                    failure
                })
                .collect();
            Ok(json!(response))
        }
        Intake::Http(Err(e)) => {
            invocation.metrics.count(metrics::INVALID_PAYLOADS, &[], 1.0);
            tracing::warn!(request_id = %invocation.request_id, error = %e, "invalid HTTP request");
            Ok(invalid_http(&e))
        }
        Intake::Http(Ok(events)) => {
            let results = run_events(handler, &events, invocation, concurrency).await;
            Ok(match collect(results) {
                Ok(results) => http_response(
                    200,
                    &json!(Response {
                        handler: handler.name().to_string(),
                        results
                    }),
                ),
                Err(e) => {
                    let status = match e {
                        HandlerError::Invalid(_) => 400,
                        HandlerError::Permanent(_) => 422,
                        HandlerError::Retryable(_) => 500,
                    };
                    http_response(
                        status,
                        &json!({"errorType": e.error_type(), "errorMessage": e.message()}),
                    )
                }
            })
        }
    }
}

/// Runs the handler on each event (bounded concurrency, results in order) and logs one line
/// per decision with the event id and the resource.
async fn run_events<H: Handler>(
    handler: &H,
    events: &[ResourceEvent],
    invocation: &Invocation,
    concurrency: usize,
) -> Vec<Result<EventResult, (String, HandlerError)>> {
    // The futures are made first (they start only when polled), not by a closure in the
    // stream: the concurrent runtime needs this future to be `Send`, which the compiler cannot
    // prove through a stream closure over `&ResourceEvent`.
    let each: Vec<_> = events
        .iter()
        .map(|event| run_event(handler, event, invocation))
        .collect();
    futures_util::stream::iter(each)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

pub(crate) async fn run_event<H: Handler>(
    handler: &H,
    event: &ResourceEvent,
    invocation: &Invocation,
) -> Result<EventResult, (String, HandlerError)> {
    let started = Instant::now();
    let outcome = handler.handle(event, invocation).await;
    let subject = event.resource.display_name();
    let kind = metric_kind(&event.resource);
    let about = About {
        lifecycle: event.lifecycle.as_str(),
        kind: &kind,
        event: &event.id,
        resource: &subject,
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    invocation
        .metrics
        .event(metrics::HANDLER_LATENCY, &about, &[], elapsed_ms);
    match &outcome {
        Ok(outcome) => invocation
            .metrics
            .event(metrics::EVENTS, &about, &[("Outcome", outcome.kind.as_str())], 1.0),
        Err(error) => {
            invocation
                .metrics
                .event(metrics::EVENT_ERRORS, &about, &[("ErrorType", error.error_type())], 1.0)
        }
    }
    match outcome {
        Ok(outcome) => {
            tracing::info!(
                request_id = %invocation.request_id,
                event = %event.id,
                subject = %subject,
                resource = outcome.resource.as_deref().unwrap_or("-"),
                lifecycle = event.lifecycle.as_str(),
                outcome = outcome.kind.as_str(),
                detail = %outcome.detail,
                "decision"
            );
            Ok(EventResult {
                event: event.id.clone(),
                resource: outcome.resource,
                lifecycle: event.lifecycle,
                outcome: outcome.kind,
                detail: outcome.detail,
            })
        }
        Err(error) => {
            tracing::error!(
                request_id = %invocation.request_id,
                event = %event.id,
                subject = %subject,
                lifecycle = event.lifecycle.as_str(),
                error_type = error.error_type(),
                error = %error.message(),
                "failed"
            );
            Err((format!("event {} ({subject})", event.id), error))
        }
    }
}

/// `Kind.service` (`Instance.rds`): a dimension of bounded cardinality, unlike a name.
/// Kinds the suite does not know are `Other`: the payload names them, and a dimension value a
/// tenant chooses would be a new (billed) metric each time.
fn metric_kind(resource: &crate::model::ManagedResource) -> String {
    match crate::kinds::lookup(&resource.group, &resource.kind) {
        Some(known) => format!("{}.{}", known.kind, known.service),
        None => "Other".to_string(),
    }
}

/// All results, or the error that decides what the caller should do, naming every failed event.
fn collect(results: Vec<Result<EventResult, (String, HandlerError)>>) -> Result<Vec<EventResult>, HandlerError> {
    let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let failed: Vec<(String, HandlerError)> = failed.into_iter().filter_map(Result::err).collect();
    let Some(worst) = failed.iter().map(|(_, e)| e).max_by_key(|e| e.severity()).cloned() else {
        return Ok(ok.into_iter().filter_map(Result::ok).collect());
    };
    if failed.len() == 1 {
        return Err(worst);
    }
    let message = failed
        .iter()
        .map(|(what, e)| format!("{what}: {}", e.message()))
        .collect::<Vec<_>>()
        .join("; ");
    // The worst failure is the batch's cause.
    Err(match worst {
        // Each event's message already says where; the batch as a whole is the place.
        HandlerError::Invalid(_) => HandlerError::Invalid(IntakeError::new("$", message)),
        HandlerError::Permanent(_) => HandlerError::permanent(message, worst),
        HandlerError::Retryable(_) => HandlerError::retryable(message, worst),
    })
}

/// A Function URL request that is not one: 400 with the function's own `InvalidEvent`.
fn invalid_http(invalid: &IntakeError) -> Value {
    http_response(
        400,
        &json!({"errorType": "InvalidEvent", "errorMessage": invalid.to_string()}),
    )
}

fn http_response(status: i64, body: &Value) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response.headers = headers;
    response.body = Some(Body::Text(body.to_string()));
    response.is_base64_encoded = false;
    json!(response)
}

/// The payload as the runtime received it. The runtime would otherwise parse it first and
/// answer a non-JSON payload with its own generic error; [`RawPayloadLayer`] hands us the bytes.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_that_could_not_be_built_answers_each_transport_as_a_failure_would() {
        let down = || HandlerError::Retryable("the function could not start: no region".into());
        let direct = br#"{"specversion": "1.0"}"#;
        assert!(matches!(not_started(direct, down()), Err(HandlerError::Invalid(_))));
        let ready = serde_json::to_vec(&crate::intake::ready_cloudevent("e-1", "orders-db")).unwrap_or_default();
        assert!(matches!(not_started(&ready, down()), Err(HandlerError::Retryable(_))));
        let sqs = json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs",
            "body": String::from_utf8_lossy(&ready)}]});
        let sqs = serde_json::to_vec(&sqs).unwrap_or_default();
        assert!(matches!(not_started(&sqs, down()), Err(HandlerError::Retryable(_))));
        let url = json!({"version": "2.0", "requestContext": {"http": {"method": "POST"}},
            "headers": {"content-type": "application/cloudevents+json"}, "isBase64Encoded": false,
            "body": String::from_utf8_lossy(&ready)});
        let url = serde_json::to_vec(&url).unwrap_or_default();
        let answer = not_started(&url, down()).ok().unwrap_or_default();
        assert_eq!(answer["statusCode"], 500, "{answer}");
        assert!(
            answer["body"].as_str().is_some_and(|b| b.contains("could not start")),
            "{answer}"
        );
    }

    #[test]
    fn deadlines_as_lambda_and_as_cargo_lambda_send_them() {
        let now = 1_795_309_267_521;
        assert_eq!(remaining_ms(now + 29_000, now), 29_000);
        assert_eq!(remaining_ms(now - 5, now), 0);
        assert_eq!(remaining_ms(600_000, now), 600_000);
    }
}

#[derive(Debug)]
pub struct RawPayload(pub Vec<u8>);

impl<'de> Deserialize<'de> for RawPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(RawPayload)
            .map_err(serde::de::Error::custom)
    }
}

/// Wraps each invocation's body into a JSON string of its base64, which [`RawPayload`] decodes:
/// a lossless way through the runtime's JSON deserialisation for any bytes at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawPayloadLayer;

impl<S> Layer<S> for RawPayloadLayer {
    type Service = RawPayloadService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RawPayloadService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RawPayloadService<S> {
    inner: S,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for RawPayloadService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&invocation.body);
        invocation.body = format!("\"{encoded}\"").into();
        self.inner.call(invocation)
    }
}

/// Runs, under the Lambda runtime until the process ends, the handler `build` makes. Read and
/// check the configuration before calling this, so that a bad setting fails the init.
///
/// The handler is built on the first invocation, once, and shared by every later one: building
/// the SDK clients (their TLS set-up above all) is most of a cold start, and the first event needs
/// them anyway (BENCHMARKS.md measures both). A build that fails fails that invocation, retryably,
/// and the next one tries again.
///
/// With `AWS_LAMBDA_MAX_CONCURRENCY` above 1 (Lambda Managed Instances) the runtime polls that
/// many invocations at once, each on its own task, all sharing the one handler (its caches and
/// clients); otherwise one at a time, as on classic Lambda. Each invocation's state is its own
/// [`Invocation`], and every log line inside an invocation carries its request id (the runtime's
/// span, which follows the invocation's task).
pub async fn run<H, B, F>(build: B) -> Result<(), lambda_runtime::Error>
where
    H: Handler,
    B: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<H, String>> + Send,
{
    let handler = Arc::new(BuiltOnce {
        built: tokio::sync::OnceCell::new(),
        build,
    });
    let concurrency = concurrency_from_env();
    let service = service_fn(move |event: LambdaEvent<RawPayload>| {
        let handler = Arc::clone(&handler);
        async move {
            let handler = match handler.get().await {
                Ok(handler) => handler,
                Err(error) => return not_started(&event.payload.0, error),
            };
            let invocation = Invocation::from_context(&event.context, handler.name());
            tracing::debug!(
                request_id = %invocation.request_id,
                remaining_ms = invocation.remaining().as_millis() as u64,
                deadline_ms = event.context.deadline,
                "invocation"
            );
            let answer = dispatch(handler, &event.payload.0, &invocation, concurrency).await;
            // Once per invocation: the metrics, as EMF lines among the logs.
            invocation.metrics.write_to(&mut std::io::stdout().lock());
            answer
        }
    });
    lambda_runtime::Runtime::new(service)
        .layer(RawPayloadLayer)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run_concurrent()
        .await
}

/// The answer when the handler could not be built: bad input is still `InvalidEvent`, a Function
/// URL request gets its 500, anything else the retryable error (an SQS batch is retried whole:
/// nothing is lost).
fn not_started(raw: &[u8], error: HandlerError) -> Result<Value, HandlerError> {
    match intake::read_payload(raw)? {
        Intake::Http(Err(invalid)) => Ok(invalid_http(&invalid)),
        Intake::Http(Ok(_)) => Ok(http_response(
            500,
            &json!({"errorType": error.error_type(), "errorMessage": error.message()}),
        )),
        Intake::Direct(_) | Intake::Sqs(_) | Intake::Sweep(_) => Err(error),
    }
}

/// The handler, made by `build` when first asked for; concurrent first invocations wait for the
/// one build.
struct BuiltOnce<H, B> {
    built: tokio::sync::OnceCell<H>,
    build: B,
}

impl<H, B, F> BuiltOnce<H, B>
where
    B: Fn() -> F,
    F: Future<Output = Result<H, String>>,
{
    async fn get(&self) -> Result<&H, HandlerError> {
        self.built.get_or_try_init(|| (self.build)()).await.map_err(|why| {
            tracing::error!(error = %why, "the function could not start");
            HandlerError::Retryable(format!("the function could not start: {why}").into())
        })
    }
}
