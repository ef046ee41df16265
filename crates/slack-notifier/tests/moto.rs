//! slack-notifier against moto (DynamoDB, Secrets Manager, RDS tags) and the test bed's local
//! Slack sink, through `dispatch`. Each test posts to a webhook path of its own, so tests run in
//! parallel against one sink. Run with `make test`.

use std::time::{Duration, Instant};

use common::aws::CallCounter;
use common::idempotency::{self, Persistence};
use common::intake::{Intake, read_payload};
use common::runtime::dispatch;
use common::testing::{DeclaredCounter, Fault, Faults};
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
    settings.idempotency.wait_for_other = Duration::from_secs(3);
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
        // 0: taken, then the connection reset before the answer (it reached the channel).
        .filter(|(status, _, _)| *status == 200 || *status == 0)
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

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn key_of(notifier: &SlackNotifier, event: &Value) -> String {
    match notifier.identify(&resource_event(event), &invocation()).await.unwrap() {
        slack_notifier::change::Identified::Change(change) => change.key,
        other => panic!("{other:?}"),
    }
}

async fn delete_instance(id: &str) {
    common::testing::delete_instance(&moto_config().await, id).await;
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
    // First event: tags, the database's lifetime, webhook secret, claim, complete, and the
    // lifetime remembered (by managed resource and by ARN) for its deletion.
    assert_eq!(counter.total(), 7, "{:?}", counter.snapshot());

    counter.reset();
    let (outcome, _) = run(&notifier, &ready_event(id)).await.unwrap();
    assert_eq!(outcome, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1, "no second message");
    // Replay: tags, lifetime, and one conditional write that returns the completed record.
    assert_eq!(counter.total(), 3, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}

#[tokio::test]
async fn the_same_transition_from_two_sources_is_one_message() {
    let id = "sn-two-sources";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let ours = ready_event(id);
    let mut knative = sample("knative.resource-update.json");
    knative["data"] = ours["data"].clone();
    knative["subject"] = ours["subject"].clone();
    assert_eq!(run(&notifier, &ours).await.unwrap().0, "applied");
    assert_eq!(run(&notifier, &knative).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);

    // Ready flapping within one lifetime of the database is not a new change.
    let mut again = ours.clone();
    again["data"]["status"]["conditions"][0]["lastTransitionTime"] = json!("2026-11-21T10:00:00Z");
    assert_eq!(run(&notifier, &again).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);
    counter.assert_all_declared();
}

#[tokio::test]
async fn ten_concurrent_duplicates_make_exactly_one_message() {
    let id = "sn-concurrent";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
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
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_429_is_honoured_then_the_message_goes_through() {
    let id = "sn-rate-limited";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 429, "body": "rate_limited", "retry_after": 1})).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let started = Instant::now();
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "applied");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    let all = received(&hook).await;
    assert_eq!(all.iter().map(|(status, _, _)| *status).collect::<Vec<_>>(), [429, 200]);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_500_is_retryable_and_the_retry_posts_once() {
    let id = "sn-server-error";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 500, "body": "internal_error"})).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
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
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_404_channel_not_found_is_permanent_and_reported() {
    let id = "sn-channel-gone";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"status": 404, "body": "channel_not_found"})).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let error = run(&notifier, &ready_event(id)).await.unwrap_err();
    assert_eq!(error.error_type(), "PermanentFailure");
    assert!(error.message().contains("channel_not_found"), "{error}");
    assert!(
        !error.message().contains(&hook.path),
        "the webhook URL is a secret: {error}"
    );
    // Once the channel is fixed, the change is still announced (the claim was given back).
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "applied");
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_crash_after_claiming_expires_and_a_later_retry_posts_exactly_once() {
    let id = "sn-crash";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let mut settings = settings(&hook);
    settings.idempotency.wait_for_other = Duration::from_millis(300);
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings, &counter).await;
    let event = ready_event(id);
    // An invocation claims the change with 1.5 s to live, then dies before posting.
    let key = key_of(&notifier, &event).await;
    let until_ms = epoch_ms() + 1500;
    let claim = notifier
        .idempotency()
        .store()
        .claim(&key, "crashed", "crashed-invocation", until_ms)
        .await
        .unwrap();
    assert!(matches!(claim, idempotency::Claim::Acquired { .. }));

    let error = run(&notifier, &event).await.unwrap_err();
    assert_eq!(error.error_type(), "RetryableFailure", "in progress elsewhere: {error}");
    assert!(delivered(&hook).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(run(&notifier, &event).await.unwrap().0, "applied");
    assert_eq!(run(&notifier, &event).await.unwrap().0, "duplicate");
    assert_eq!(delivered(&hook).await.len(), 1);
    counter.assert_all_declared();
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
    counter.assert_all_declared();
}

#[tokio::test]
async fn deleted_and_failed_are_announced_with_the_reason_escaped() {
    let id = "sn-failed";
    let sdk = moto_config().await;
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let mut failed = ready_event(id);
    failed["type"] = json!("io.crossplane.managed.failed");
    failed["data"]["status"]["conditions"][1] = json!({"type": "Synced", "status": "False", "reason": "ReconcileError",
        "message": "cannot create: <!channel> quota & limits", "lastTransitionTime": "2026-11-21T15:02:10Z"});
    assert_eq!(run(&notifier, &failed).await.unwrap().0, "applied");
    assert_eq!(run(&notifier, &ready_event(id)).await.unwrap().0, "applied");
    delete_instance(id).await;
    let mut deleted = ready_event(id);
    deleted["type"] = json!("io.crossplane.managed.deleted");
    deleted["data"]["metadata"]["deletionTimestamp"] = json!("2026-11-22T08:00:00Z");
    assert_eq!(run(&notifier, &deleted).await.unwrap().0, "applied");
    let messages = delivered(&hook).await;
    assert_eq!(messages.len(), 3);
    let failure = messages[0].to_string();
    assert!(failure.contains("&lt;!channel&gt; quota &amp; limits"), "{failure}");
    assert!(!failure.contains("<!channel>"));
    assert!(messages[2]["text"].as_str().unwrap().contains("was deleted"));
    counter.assert_all_declared();
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
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings, &counter).await;
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
    counter.assert_all_declared();
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
    counter.assert_all_declared();
}

// --- Issue 8 and 9: isolation, change identity across sources, the claim protocol under faults

fn with_time(mut event: Value, id: &str) -> Value {
    event["subject"] = json!(format!(
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/{id}"
    ));
    event
}

/// Every shape in `events/` that can carry a readiness or a deletion of the database `id`.
fn deliveries(id: &str) -> (Vec<Value>, Vec<Value>) {
    let arn = db_arn(id);
    let ours = ready_event(id);
    let mut knative = sample("knative.resource-update.json");
    knative["data"] = ours["data"].clone();
    knative["subject"] = ours["subject"].clone();
    let mut invocation_create = ours.clone();
    invocation_create["tf"] = json!({"action": "create", "prev_input": null});
    let mut rds_created = sample("eventbridge.rds-instance-created.json");
    rds_created["detail"]["SourceArn"] = json!(arn);
    rds_created["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
    rds_created["detail"]["Tags"]["crossplane-name"] = json!(id);
    let mut rds_created_untagged = rds_created.clone();
    rds_created_untagged["detail"].as_object_mut().unwrap().remove("Tags");
    let readies = vec![
        ours.clone(),
        knative,
        invocation_create,
        rds_created,
        rds_created_untagged,
    ];

    let mut invocation_delete = ours.clone();
    invocation_delete["tf"] = json!({"action": "delete", "prev_input": null});
    let mut ref_delete = with_time(sample("knative.ref-add.json"), id);
    ref_delete["type"] = json!("dev.knative.apiserver.ref.delete");
    ref_delete["data"]["name"] = json!(id);
    let mut exporter = sample("k8s-event-exporter.created.json");
    exporter["reason"] = json!("DeletedExternalResource");
    exporter["involvedObject"]["name"] = json!(id);
    let mut rds_deleted = sample("eventbridge.rds-instance-deleted.json");
    rds_deleted["detail"]["SourceArn"] = json!(arn);
    rds_deleted["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
    let mut ours_deleted = ours;
    ours_deleted["type"] = json!("io.crossplane.managed.deleted");
    ours_deleted["data"]["metadata"]["deletionTimestamp"] = json!("2026-11-22T08:00:00Z");
    let deletes = vec![invocation_delete, ref_delete, exporter, rds_deleted, ours_deleted];
    (readies, deletes)
}

/// Runs 16 deliveries at once (every event at least three times), in an order that depends on
/// `seed`.
async fn deliver_all(
    notifier: &SlackNotifier,
    events: &[Value],
    seed: usize,
) -> Vec<Result<(String, String), HandlerError>> {
    let mut all: Vec<&Value> = events.iter().cycle().take(16).collect();
    let n = all.len();
    for i in 0..n {
        all.swap(i, (i * 7 + seed * 3 + 1) % n);
    }
    futures_util::future::join_all(all.into_iter().map(|e| run(notifier, e))).await
}

fn no_errors_but_retryable(results: &[Result<(String, String), HandlerError>]) {
    for result in results {
        if let Err(e) = result {
            assert_eq!(e.error_type(), "RetryableFailure", "{e}");
        }
    }
}

/// Issue 9: one readiness delivered by our CloudEvent, Knative, the composition's Invocation
/// and EventBridge (with and without tags), 16 deliveries at once, is one message; one
/// deletion delivered by the Invocation, Knative, the event exporter, EventBridge and our
/// CloudEvent is one message; a database deleted and re-created under the same name is a new
/// lifetime: a second `ready` message.
#[tokio::test]
async fn one_change_from_every_source_in_any_order_is_one_message() {
    let id = "sn-every-source";
    let sdk = moto_config().await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    for lifetime in 1..=2 {
        create_instance(&sdk, id, &[], Managed::Namespaced).await;
        let (readies, deletes) = deliveries(id);
        let results = deliver_all(&notifier, &readies, lifetime).await;
        no_errors_but_retryable(&results);
        // Retry what asked for it, as Lambda would.
        for e in &readies {
            run(&notifier, e).await.unwrap();
        }
        assert_eq!(
            delivered(&hook).await.len(),
            2 * lifetime - 1,
            "lifetime {lifetime}: one ready message"
        );

        // While the database exists, no delivery of a delete is announced.
        for e in &deletes[..2] {
            let (outcome, detail) = run(&notifier, e).await.unwrap();
            assert_eq!(outcome, "skipped", "{detail}");
        }
        delete_instance(id).await;
        let results = deliver_all(&notifier, &deletes, lifetime).await;
        no_errors_but_retryable(&results);
        for e in &deletes {
            run(&notifier, e).await.unwrap();
        }
        assert_eq!(
            delivered(&hook).await.len(),
            2 * lifetime,
            "lifetime {lifetime}: one deletion message"
        );
    }
    let texts: Vec<String> = delivered(&hook)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts[0].contains("is ready") && texts[1].contains("was deleted"),
        "{texts:?}"
    );
    assert!(
        texts[2].contains("is ready") && texts[3].contains("was deleted"),
        "{texts:?}"
    );
    counter.assert_all_declared();
}

/// Issue 9: a Warning whose count goes 1, 2, 3 is one failure episode, and the same episode
/// reported by the object's Synced condition is the same change.
#[tokio::test]
async fn one_failure_episode_is_one_message_whatever_its_count() {
    let id = "sn-episode";
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let mut warning = sample("k8s-event-exporter.cannot-update.json");
    warning["involvedObject"]["name"] = json!(id);
    for count in 1..=3 {
        warning["count"] = json!(count);
        warning["lastTimestamp"] = json!(format!("2026-11-21T15:0{}:40Z", 2 + count));
        run(&notifier, &warning).await.unwrap();
    }
    let mut failed = with_time(sample("failed.namespaced.json"), id);
    failed["data"]["metadata"]["name"] = json!(id);
    failed["data"]["status"]["atProvider"]["arn"] = json!(db_arn(id));
    let (outcome, detail) = run(&notifier, &failed).await.unwrap();
    assert_eq!(outcome, "duplicate", "{detail}");
    assert_eq!(delivered(&hook).await.len(), 1);
    counter.assert_all_declared();
}

/// Issue 8: a Ready flap makes Crossplane delete the composed Invocations, so the function
/// receives `tf.action=delete` for a database that still exists: no deletion is announced.
#[tokio::test]
async fn a_ready_flap_announces_no_deletion() {
    let id = "sn-flap";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let mut input = ready_event(id);
    input["tf"] = json!({"action": "create", "prev_input": null});
    assert_eq!(run(&notifier, &input).await.unwrap().0, "applied");
    input["tf"] = json!({"action": "delete", "prev_input": null});
    let (outcome, detail) = run(&notifier, &input).await.unwrap();
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("still exists"), "{detail}");
    assert_eq!(delivered(&hook).await.len(), 1, "only the ready message");
    counter.assert_all_declared();
}

/// Issue 8: RDS's own deletion event for a database Crossplane never managed is not announced.
#[tokio::test]
async fn an_unmanaged_database_deletion_is_not_announced() {
    let id = "sn-unmanaged";
    create_instance(&moto_config().await, id, &[], Managed::No).await;
    delete_instance(id).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let mut deleted = sample("eventbridge.rds-instance-deleted.json");
    deleted["detail"]["SourceArn"] = json!(db_arn(id));
    deleted["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
    let (outcome, detail) = run(&notifier, &deleted).await.unwrap();
    assert_eq!(outcome, "refused", "{detail}");
    assert!(delivered(&hook).await.is_empty());
    counter.assert_all_declared();
}

/// Issue 9: Slack answered 200, then completing the claim fails (every attempt): the message
/// was posted, so the answer is `applied` with a warning, not an error that causes a retry.
#[tokio::test]
async fn success_then_a_failed_completion_is_applied_with_a_warning() {
    let id = "sn-complete-fails";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let faults = Faults::new();
    let counter = DeclaredCounter::with_faults(slack_notifier::AWS_OPERATIONS, &faults);
    let notifier = notifier(settings(&hook), &counter).await;
    faults.inject("DynamoDB.UpdateItem", 0, 100, Fault::Throttle);
    let (outcome, detail) = run(&notifier, &ready_event(id)).await.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(
        detail.contains("warning") && detail.contains("could not be completed"),
        "{detail}"
    );
    faults.clear();
    assert_eq!(delivered(&hook).await.len(), 1);
    counter.assert_all_declared();
}

/// Issue 9: the claim outlives the post. Slack answers only after the claim would have lapsed:
/// the post is cut before the claim expires (uncertain: assumed delivered by default), so a
/// later invocation finds the change done instead of claiming it and posting again.
#[tokio::test]
async fn the_claim_outlives_a_slow_slack() {
    let id = "sn-slow-slack";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    fail_next(&hook, json!({"delay": 8})).await;
    let mut settings = settings(&hook);
    settings.idempotency.expiry.max_in_progress = Duration::from_secs(5);
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings, &counter).await;
    let event = ready_event(id);
    let first = run(&notifier, &event);
    let second = async {
        tokio::time::sleep(Duration::from_millis(5500)).await;
        run(&notifier, &event).await
    };
    let (first, second) = tokio::join!(first, second);
    let (outcome, detail) = first.unwrap();
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("uncertain"), "{detail}");
    assert_eq!(second.unwrap().0, "duplicate");
    assert_eq!(received(&hook).await.len(), 1, "one message reached Slack");
    counter.assert_all_declared();
}

/// Issue 9: delivery whose result is unknown (Slack took the message, the connection was reset
/// before the answer) follows SLACK_ON_UNCERTAIN_DELIVERY: `assume-delivered` (the default)
/// posts once; `retry` releases the claim, and its retry posts a second message.
#[tokio::test]
async fn uncertain_delivery_follows_the_configured_policy() {
    for (policy, messages) in [("assume-delivered", 1), ("retry", 2)] {
        let id = format!("sn-uncertain-{policy}");
        create_instance(&moto_config().await, &id, &[], Managed::Namespaced).await;
        let hook = webhook(&id).await;
        fail_next(&hook, json!({"reset": true})).await;
        let mut settings = settings(&hook);
        settings.idempotency.on_uncertain = idempotency::OnUncertain::parse(policy).unwrap();
        let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
        let notifier = notifier(settings, &counter).await;
        let first = run(&notifier, &ready_event(&id)).await;
        match policy {
            "assume-delivered" => assert!(
                matches!(&first, Ok((o, d)) if o == "applied" && d.contains("uncertain")),
                "{first:?}"
            ),
            _ => assert!(
                matches!(&first, Err(HandlerError::Retryable(m)) if m.contains("uncertain")),
                "{first:?}"
            ),
        }
        let _ = run(&notifier, &ready_event(&id)).await.unwrap();
        assert_eq!(run(&notifier, &ready_event(&id)).await.unwrap().0, "duplicate");
        assert_eq!(received(&hook).await.len(), messages, "{policy}");
        counter.assert_all_declared();
    }
}

/// Issue 9: a fault at each step of claim → post → complete, then retries as Lambda makes them:
/// exactly one message in the end, and no claim outlives its expiry.
#[tokio::test]
async fn a_fault_at_any_step_then_retries_posts_exactly_once() {
    // (step, operation, fault, attempts that go through first, attempts that fail)
    let steps: &[(&str, &str, Fault, u32, u32)] = &[
        (
            "lifetime-read-throttled",
            "RDS.DescribeDBInstances",
            Fault::Throttle,
            0,
            3,
        ),
        ("claim-throttled", "DynamoDB.PutItem", Fault::Throttle, 0, 3),
        ("claim-500", "DynamoDB.PutItem", Fault::ServerError, 0, 3),
        ("claim-unheard", "DynamoDB.PutItem", Fault::LoseResponse, 0, 1),
        // The claim goes through; remembering the lifetime (the next PutItem) fails: no post.
        ("remember-lifetime-fails", "DynamoDB.PutItem", Fault::ServerError, 1, 3),
        (
            "webhook-read-fails",
            "Secrets Manager.GetSecretValue",
            Fault::ServerError,
            0,
            3,
        ),
        ("complete-unheard", "DynamoDB.UpdateItem", Fault::LoseResponse, 0, 1),
        ("complete-500", "DynamoDB.UpdateItem", Fault::ServerError, 0, 9),
        ("release-fails", "DynamoDB.DeleteItem", Fault::ServerError, 0, 3),
    ];
    for (name, operation, fault, skip, times) in steps {
        let id = format!("sn-matrix-{name}");
        create_instance(&moto_config().await, &id, &[], Managed::Namespaced).await;
        let hook = webhook(&id).await;
        if *name == "release-fails" {
            // The release only happens after a failed post.
            fail_next(&hook, json!({"status": 500, "body": "internal_error"})).await;
        }
        let faults = Faults::new();
        let counter = DeclaredCounter::with_faults(slack_notifier::AWS_OPERATIONS, &faults);
        let mut settings = settings(&hook);
        settings.idempotency.wait_for_other = Duration::from_millis(300);
        settings.idempotency.expiry.max_in_progress = Duration::from_secs(5);
        let notifier = notifier(settings, &counter).await;
        faults.inject(operation, *skip, *times, *fault);
        let _ = run(&notifier, &ready_event(&id)).await;
        faults.clear();
        // Lambda retries until the function answers; a claim never outlives its expiry.
        let started = Instant::now();
        let outcome = loop {
            match run(&notifier, &ready_event(&id)).await {
                Ok((outcome, _)) => break outcome,
                Err(e) => {
                    assert_eq!(e.error_type(), "RetryableFailure", "{name}: {e}");
                    assert!(
                        started.elapsed() < Duration::from_secs(12),
                        "{name}: a claim outlived its expiry"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        assert!(outcome == "applied" || outcome == "duplicate", "{name}: {outcome}");
        assert_eq!(
            run(&notifier, &ready_event(&id)).await.unwrap().0,
            "duplicate",
            "{name}"
        );
        assert_eq!(delivered(&hook).await.len(), 1, "{name}: exactly one message");
        counter.assert_all_declared();
    }
}

/// Issue 13: the metrics of one invocation name the AWS calls made, Slack's answer by class and
/// the outcome (a duplicate suppressed is an outcome like any other).
#[tokio::test]
async fn the_metrics_count_aws_calls_slack_answers_and_duplicates() {
    let id = "sn-metrics";
    create_instance(&moto_config().await, id, &[], Managed::Namespaced).await;
    let hook = webhook(id).await;
    let counter = DeclaredCounter::new(slack_notifier::AWS_OPERATIONS);
    let notifier = notifier(settings(&hook), &counter).await;
    let first = invocation();
    dispatch(&notifier, ready_event(id).to_string().as_bytes(), &first, 8)
        .await
        .unwrap();
    let docs = first.metrics.documents();
    let has = |metric: &str, key: &str, value: &str| docs.iter().any(|d| d.get(metric).is_some() && d[key] == value);
    assert!(has("SlackAnswers", "Class", "ok"), "{docs:?}");
    assert!(has("AwsCalls", "Operation", "DynamoDB.PutItem"), "{docs:?}");
    assert!(has("AwsCalls", "Operation", "RDS.DescribeDBInstances"), "{docs:?}");
    assert!(has("Events", "Outcome", "applied"), "{docs:?}");
    let replay = invocation();
    dispatch(&notifier, ready_event(id).to_string().as_bytes(), &replay, 8)
        .await
        .unwrap();
    let docs = replay.metrics.documents();
    let duplicate = docs
        .iter()
        .find(|d| d["Outcome"] == "duplicate")
        .expect("a duplicate suppressed");
    assert_eq!(duplicate["Events"], json!(1.0));
    assert_eq!(duplicate["resources"], json!([format!("Instance/team-a/{id}")]));
    counter.assert_all_declared();
}
