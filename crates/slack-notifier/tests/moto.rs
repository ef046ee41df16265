//! slack-notifier against moto (DynamoDB, Secrets Manager, RDS tags) and the test bed's local
//! Slack sink, through `dispatch`. Each test posts to a webhook path of its own, so tests run in
//! parallel against one sink. Run with `make test`.

use std::time::{Duration, Instant};

use common::aws::CallCounter;
use common::idempotency;
use common::intake::{Intake, read_payload};
use common::runtime::dispatch;
use common::testing::DeclaredCounter;
use common::testing::{
    Managed, create_idempotency_table, create_instance, db_arn, invocation, moto_config, put_webhook_secret,
    ready_event, sample,
};
use common::{HandlerError, ResourceEvent};
use serde_json::{Value, json};
use slack_notifier::{Settings, SlackNotifier};

const TABLE: &str = "crossplane-lambda-idempotency";

fn sink() -> String {
    std::env::var("SLACK_SINK_URL").expect("the Slack sink runs in the test bed: `make test`")
}

/// One webhook (path, secret) per test.
struct Webhook {
    path: String,
    secret: String,
}

async fn webhook(test: &str) -> Webhook {
    let path = format!("/services/T0TEST/B0TEST/{test}");
    let secret = format!("tests/{test}/slack-webhook");
    put_webhook_secret(&moto_config().await, &secret, &format!("{}{path}", sink())).await;
    Webhook { path, secret }
}

fn settings(webhook: &Webhook) -> Settings {
    let mut settings = Settings::new(&webhook.secret, TABLE);
    settings.allowlist.loopback_http = true;
    settings.min_interval = Duration::from_millis(0);
    settings.wait_for_other = Duration::from_secs(3);
    settings
}

async fn notifier(settings: Settings, counter: &CallCounter) -> SlackNotifier {
    let sdk = moto_config().await;
    create_idempotency_table(&sdk, TABLE).await;
    SlackNotifier::from_sdk_config(&sdk, settings, Some(counter)).expect("notifier")
}

async fn run(notifier: &SlackNotifier, event: &Value) -> Result<(String, String), HandlerError> {
    let response = dispatch(notifier, event.to_string().as_bytes(), &invocation(), 8).await?;
    let result = &response["results"][0];
    Ok((
        result["outcome"].as_str().unwrap().to_string(),
        result["detail"].as_str().unwrap().to_string(),
    ))
}

/// What the sink received on this webhook: (HTTP status it answered, body).
async fn received(webhook: &Webhook) -> Vec<(u16, Value, f64)> {
    let url = format!("{}/_sink/messages?path={}", sink(), webhook.path);
    let all: Value = serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["answered"].as_u64().unwrap() as u16,
                m["body"].clone(),
                m["at"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn delivered(webhook: &Webhook) -> Vec<Value> {
    received(webhook)
        .await
        .into_iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, body, _)| body)
        .collect()
}

async fn fail_next(webhook: &Webhook, spec: Value) {
    let mut spec = spec;
    spec["path"] = json!(webhook.path);
    let client = reqwest::Client::new();
    client
        .post(format!("{}/_sink/fail", sink()))
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
}

fn resource_event(event: &Value) -> ResourceEvent {
    match read_payload(event.to_string().as_bytes()) {
        Ok(Intake::Direct(mut events)) => events.remove(0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn one_message_for_a_ready_event_and_none_for_a_replay() {
    let id = "sn-ready";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;

    let (outcome, detail) = run(&notifier, &ready_event(id)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(!detail.contains(&hook.path), "the webhook URL is a secret: {detail}");
    let messages = delivered(&hook).await;
    assert_eq!(messages.len(), 1);
    let text = messages[0]["text"].as_str().unwrap();
    assert_eq!(
        text,
        format!(":white_check_mark: Instance team-a/{id} is ready ({})", db_arn(id))
    );
    assert!(messages[0]["blocks"].to_string().contains("Open in the AWS console"));
    // First event: tags, webhook secret, claim, complete.
    assert_eq!(counter.total(), 4, "{:?}", counter.snapshot());

    counter.reset();
    let (outcome, _) = run(&notifier, &ready_event(id)).await.unwrap();
    assert_eq!(outcome, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1, "no second message");
    // Replay: tags and one conditional write that returns the completed record.
    assert_eq!(counter.total(), 2, "{:?}", counter.snapshot());
}

#[tokio::test]
async fn the_same_transition_from_two_sources_is_one_message() {
    let id = "sn-two-sources";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let ours = ready_event(id);
    let mut knative = sample("knative.resource-update.json");
    knative["data"] = ours["data"].clone();
    knative["subject"] = ours["subject"].clone();
    assert_eq!(run(&notifier, &ours).await.unwrap().0, "applied");
    assert_eq!(run(&notifier, &knative).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);

    // A new transition (the instance became Ready again later) is a new message.
    let mut again = ours.clone();
    again["data"]["status"]["conditions"][0]["lastTransitionTime"] = json!("2026-11-21T10:00:00Z");
    assert_eq!(run(&notifier, &again).await.unwrap().0, "applied");
    assert_eq!(delivered(&hook).await.len(), 2);
}

#[tokio::test]
async fn ten_concurrent_duplicates_make_exactly_one_message() {
    let id = "sn-concurrent";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let event = ready_event(id);
    let runs = (0..10).map(|_| run(&notifier, &event));
    let outcomes = futures_util::future::join_all(runs).await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((kind, _)) if kind == "applied"))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(
            |o| matches!(o, Ok((kind, _)) if kind == "applied" || kind == "duplicate")
                || matches!(o, Err(HandlerError::Retryable(_)))
        ),
        "{outcomes:?}"
    );
    assert_eq!(delivered(&hook).await.len(), 1);
}

#[tokio::test]
async fn a_429_is_honoured_then_the_message_goes_through() {
    let id = "sn-rate-limited";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 429, "body": "rate_limited", "retry_after": 1})).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let started = Instant::now();
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "applied");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    let all = received(&hook).await;
    assert_eq!(all.iter().map(|(status, _, _)| *status).collect::<Vec<_>>(), [429, 200]);
}

#[tokio::test]
async fn a_500_is_retryable_and_the_retry_posts_once() {
    let id = "sn-server-error";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 500, "body": "internal_error"})).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let error = run(&notifier, &ready_event(id)).await.unwrap_err();
    assert_eq!(error.error_type(), "RetryableFailure", "{error}");
    assert!(delivered(&hook).await.is_empty());
    assert_eq!(
        run(&notifier, &ready_event(id)).await.unwrap().0,
        "applied",
        "the claim was released"
    );
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);
}

#[tokio::test]
async fn a_404_channel_not_found_is_permanent_and_reported() {
    let id = "sn-channel-gone";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 404, "body": "channel_not_found"})).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let error = run(&notifier, &ready_event(id)).await.unwrap_err();
    assert_eq!(error.error_type(), "PermanentFailure");
    assert!(error.message().contains("channel_not_found"), "{error}");
    assert!(
        !error.message().contains(&hook.path),
        "the webhook URL is a secret: {error}"
    );
    // Once the channel is fixed, the change is still announced (the claim was given back).
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "applied");
}

#[tokio::test]
async fn a_crash_after_claiming_expires_and_a_later_retry_posts_exactly_once() {
    let id = "sn-crash";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let mut settings = settings(&hook);
    settings.wait_for_other = Duration::from_millis(300);
    let notifier = notifier(settings, &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let event = ready_event(id);
    // An invocation claims the change with 1.5 s to live, then dies before posting.
    let key = idempotency::key_for(slack_notifier::NAME, &resource_event(&event));
    let claim = notifier
        .store()
        .claim(&key, "crashed", "crashed-invocation", Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(matches!(claim, idempotency::Claim::Acquired(_)));

    let error = run(&notifier, &event).await.unwrap_err();
    assert_eq!(error.error_type(), "RetryableFailure", "in progress elsewhere: {error}");
    assert!(delivered(&hook).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(run(&notifier, &event).await.unwrap().0, "applied");
    assert_eq!(run(&notifier, &event).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);
}

#[tokio::test]
async fn a_disallowed_webhook_host_is_refused_before_any_request() {
    let id = "sn-evil-host";
    let sdk = moto_config().await;
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let secret = format!("tests/{id}/slack-webhook");
    put_webhook_secret(&sdk, &secret, "https://evil.example.com/services/T0/B0/stolen").await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let mut settings = Settings::new(&secret, TABLE);
    settings.allowlist.loopback_http = true;
    let notifier = notifier(settings, &counter).await;
    let error = run(&notifier, &ready_event(id)).await.unwrap_err();
    assert_eq!(error.error_type(), "PermanentFailure");
    assert!(
        error.message().contains("evil.example.com is not on the allowlist"),
        "{error}"
    );
    assert!(!error.message().contains("stolen"), "{error}");
    assert_eq!(
        counter.count_where(|n| n.contains("DynamoDB")),
        0,
        "no claim taken: {:?}",
        counter.snapshot()
    );
}

#[tokio::test]
async fn deleted_and_failed_are_announced_with_the_reason_escaped() {
    let id = "sn-failed";
    let hook = webhook(id).await;
    let notifier = notifier(settings(&hook), &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    // No instance in moto: a failed or deleted resource need not exist.
    let mut failed = ready_event(id);
    failed["type"] = json!("io.crossplane.managed.failed");
    failed["data"]["status"]["conditions"][1] = json!({"type": "Synced", "status": "False", "reason": "ReconcileError",
        "message": "cannot create: <!channel> quota & limits", "lastTransitionTime": "2026-11-21T15:02:10Z"});
    assert_eq!(run(&notifier, &failed).await.unwrap().0, "applied");
    let mut deleted = ready_event(id);
    deleted["type"] = json!("io.crossplane.managed.deleted");
    deleted["data"]["metadata"]["deletionTimestamp"] = json!("2026-11-22T08:00:00Z");
    assert_eq!(run(&notifier, &deleted).await.unwrap().0, "applied");
    let messages = delivered(&hook).await;
    assert_eq!(messages.len(), 2);
    let failure = messages[0].to_string();
    assert!(failure.contains("&lt;!channel&gt; quota &amp; limits"), "{failure}");
    assert!(!failure.contains("<!channel>"));
    assert!(messages[1]["text"].as_str().unwrap().contains("was deleted"));
}

#[tokio::test]
async fn an_sqs_batch_posts_no_faster_than_the_interval() {
    let ids = ["sn-batch-1", "sn-batch-2", "sn-batch-3"];
    for id in ids {
        create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    }
    let hook = webhook("sn-batch").await;
    let mut settings = settings(&hook);
    settings.min_interval = Duration::from_millis(400);
    let notifier = notifier(settings, &DeclaredCounter::new(slack_notifier::AWS_OPERATIONS)).await;
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"messageId": id, "eventSource": "aws:sqs", "body": ready_event(id).to_string()}))
        .collect();
    let response = dispatch(
        &notifier,
        json!({"Records": records}).to_string().as_bytes(),
        &invocation(),
        8,
    )
    .await
    .unwrap();
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let mut times: Vec<f64> = received(&hook).await.into_iter().map(|(_, _, at)| at).collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 0.35, "posted {:.3}s apart", pair[1] - pair[0]);
    }
}

#[tokio::test]
async fn lifecycles_not_configured_are_skipped_without_calls() {
    let hook = webhook("sn-not-configured").await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let mut settings = settings(&hook);
    settings.notify_on = vec![common::model::Lifecycle::Failed];
    let notifier = notifier(settings, &counter).await;
    assert_eq!(
        run(&notifier, &ready_event("sn-not-configured")).await.unwrap().0,
        "skipped"
    );
    assert_eq!(counter.total(), 0);
}
