//! The tagger against moto (the local AWS emulator of the test bed), through the same
//! `dispatch` the Lambda runtime calls. Every AWS call is counted by the SDK interceptor.
//! Run with `make test`, which starts moto and exports `AWS_ENDPOINT_URL`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_rds::types::Tag;
use common::aws::{AwsError, CallCounter};
use common::kinds::KnownKind;
use common::resolve::{Guard, TagReader, Tags};
use common::runtime::dispatch;
use common::sweep::{Inventory, Page};
use common::tagging::{RdsLiveCheck, TaggingApi};
use common::testing::DeclaredCounter;
use common::testing::{
    Managed, create_instance, create_instance_in, db_arn as arn, invocation, moto_config as sdk, ready_event,
    ready_event_in, sample, sample_bytes,
};
use serde_json::{Value, json};
use tagger::policy::{CachedPolicy, PolicySource};
use tagger::write::{Backoff, TagFailure, TagWriter};
use tagger::{Settings, TagSet, Tagger};

async fn live_tags(sdk: &aws_config::SdkConfig, id: &str) -> TagSet {
    let rds = aws_sdk_rds::Client::new(sdk);
    let out = rds
        .list_tags_for_resource()
        .resource_name(arn(id))
        .send()
        .await
        .unwrap();
    out.tag_list()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

async fn live_tag(sdk: &aws_config::SdkConfig, id: &str, key: &str) -> Option<String> {
    live_tags(sdk, id).await.remove(key)
}

async fn put_policy(sdk: &aws_config::SdkConfig, name: &str, policy: Value) {
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(name)
        .value(policy.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

fn policy() -> Value {
    json!({"tags": {"cost-center": "platform", "managed-by": "crossplane"},
           "defaults": {"owner": "platform-team"},
           "labelPrefix": "tags.platform.example.com/"})
}

async fn tagger_with(
    sdk: &aws_config::SdkConfig,
    parameter: &str,
    counter: &CallCounter,
) -> Tagger<TaggingApi, RdsLiveCheck> {
    let settings = Settings {
        policy_parameter: Some(parameter.to_string()),
        policy_ttl: Duration::from_secs(300),
        guard: Guard::default(),
    };
    Tagger::from_sdk_config(sdk, settings, Some(counter))
}

async fn run(tagger: &impl common::runtime::Handler, event: &Value) -> Value {
    dispatch(tagger, event.to_string().as_bytes(), &invocation(), 4)
        .await
        .expect("handled")
}

fn outcome(response: &Value) -> (&str, &str) {
    let result = &response["results"][0];
    (result["outcome"].as_str().unwrap(), result["detail"].as_str().unwrap())
}

fn calls(counter: &CallCounter, operation: &str) -> u64 {
    counter.count_where(|name| name.ends_with(&format!(".{operation}")))
}

#[tokio::test]
async fn first_event_applies_exactly_the_difference_and_a_replay_writes_nothing() {
    let sdk = sdk().await;
    let id = "tagger-first";
    create_instance(&sdk, id, &[("cost-center", "platform")], Managed::Namespaced).await;
    put_policy(&sdk, "/tests/tagger-first/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-first/policy", &counter).await;

    let response = run(&tagger, &ready_event(id)).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "applied", "{response}");
    assert_eq!(response["results"][0]["resource"], json!(arn(id)));
    assert_eq!(response["handler"], "tagger");
    assert!(detail.starts_with("set 8 tags"), "{detail}");
    let tags = live_tags(&sdk, id).await;
    for (key, value) in [
        ("cost-center", "platform"),
        ("managed-by", "crossplane"),
        ("owner", "platform-team"),
        ("team", "payments"),
        ("crossplane.io/claim-name", "orders"),
        ("crossplane.io/claim-namespace", "team-a"),
        ("crossplane.io/composite", "orders-7xk2p"),
        ("crossplane.io/composition-resource-name", "rds-instance"),
        ("crossplane.io/namespace", "team-a"),
        ("crossplane-kind", "instance.rds.aws.m.upbound.io"),
    ] {
        assert_eq!(tags.get(key).map(String::as_str), Some(value), "{key} in {tags:?}");
    }
    // The minimum: read the tags, load the policy, check the instance is live, write once.
    assert_eq!(calls(&counter, "ListTagsForResource"), 1);
    assert_eq!(calls(&counter, "GetParameter"), 1);
    assert_eq!(calls(&counter, "DescribeDBInstances"), 1);
    assert_eq!(calls(&counter, "TagResources"), 1);
    assert_eq!(counter.total(), 4, "{:?}", counter.snapshot());

    counter.reset();
    let response = run(&tagger, &ready_event(id)).await;
    assert_eq!(outcome(&response).0, "unchanged", "{response}");
    assert_eq!(
        counter.writes(),
        0,
        "a replay makes no write call: {:?}",
        counter.snapshot()
    );
    assert_eq!(
        counter.total(),
        1,
        "one tag read; the policy is cached: {:?}",
        counter.snapshot()
    );
    assert_eq!(live_tags(&sdk, id).await, tags);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_drifted_tag_is_restored_and_a_default_is_never_overwritten() {
    let sdk = sdk().await;
    let id = "tagger-drift";
    create_instance(&sdk, id, &[("owner", "payments-team")], Managed::Namespaced).await;
    put_policy(&sdk, "/tests/tagger-drift/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-drift/policy", &counter).await;
    assert_eq!(outcome(&run(&tagger, &ready_event(id)).await).0, "applied");
    assert_eq!(live_tag(&sdk, id, "owner").await.as_deref(), Some("payments-team"));

    // Someone changes an enforced tag by hand.
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.add_tags_to_resource()
        .resource_name(arn(id))
        .tags(Tag::builder().key("cost-center").value("drifted").build())
        .send()
        .await
        .unwrap();
    counter.reset();
    let response = run(&tagger, &ready_event(id)).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "applied");
    assert!(detail.starts_with("set 1 tags (cost-center)"), "{detail}");
    let tags = live_tags(&sdk, id).await;
    assert_eq!(tags.get("cost-center").map(String::as_str), Some("platform"));
    assert_eq!(
        tags.get("owner").map(String::as_str),
        Some("payments-team"),
        "the default did not overwrite"
    );
    assert_eq!(calls(&counter, "TagResources"), 1);
    counter.assert_all_declared();
}

/// Throttles the first `TagResources` for every ARN (as AWS does, inside `FailedResourcesMap`
/// with HTTP 200), then passes calls through to moto.
struct ThrottleFirst {
    inner: TaggingApi,
    writes: AtomicU32,
}

impl TagReader for ThrottleFirst {
    async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
        self.inner.tags_of(arn).await
    }
    async fn find_by_tags(&self, ty: &str, tags: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
        self.inner.find_by_tags(ty, tags).await
    }
}

impl Inventory for ThrottleFirst {
    async fn managed_page(&self, kinds: &[&'static KnownKind], token: Option<&str>) -> Result<Page, AwsError> {
        self.inner.managed_page(kinds, token).await
    }
}

impl TagWriter for ThrottleFirst {
    async fn tag_resources(&self, arns: &[String], tags: &TagSet) -> Result<BTreeMap<String, TagFailure>, AwsError> {
        if self.writes.fetch_add(1, Ordering::SeqCst) == 0 {
            let throttled = TagFailure {
                code: "ThrottlingException".into(),
                status: Some(400),
                message: "Rate exceeded".into(),
            };
            return Ok(arns.iter().map(|a| (a.clone(), throttled.clone())).collect());
        }
        self.inner.tag_resources(arns, tags).await
    }
}

#[tokio::test]
async fn a_throttled_entry_is_retried() {
    let sdk = sdk().await;
    let id = "tagger-throttled";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagging = aws_sdk_resourcegroupstagging::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let writer = ThrottleFirst {
        inner: TaggingApi::new(
            aws_sdk_resourcegroupstagging::Client::from_conf(tagging),
            aws_sdk_rds::Client::new(&sdk),
        ),
        writes: AtomicU32::new(0),
    };
    let fixed = tagger::policy::TagPolicy::parse(&policy().to_string(), "test").unwrap();
    let tagger = Tagger::new(
        writer,
        RdsLiveCheck::new(aws_sdk_rds::Client::new(&sdk)),
        CachedPolicy::new(PolicySource::Fixed(fixed), Duration::from_secs(60)),
        Guard::default(),
    )
    .with_backoff(Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(100),
        reserve: Duration::ZERO,
    });
    let response = run(&tagger, &ready_event(id)).await;
    assert_eq!(outcome(&response).0, "applied", "{response}");
    assert_eq!(
        calls(&counter, "TagResources"),
        1,
        "the throttled call never reached moto; the retry did"
    );
    assert_eq!(live_tag(&sdk, id, "cost-center").await.as_deref(), Some("platform"));
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_forged_event_for_another_account_is_refused_without_any_call() {
    let sdk = sdk().await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused", &counter).await;
    let event = sample("forged.other-account.json");
    let response = run(&tagger, &event).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "refused");
    assert!(detail.contains("account 999999999999"), "{detail}");
    assert_eq!(counter.total(), 0, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_resource_crossplane_does_not_manage_is_refused_and_unchanged() {
    let sdk = sdk().await;
    let id = "tagger-unmanaged";
    create_instance(&sdk, id, &[("team", "dba")], Managed::No).await;
    put_policy(&sdk, "/tests/tagger-unmanaged/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-unmanaged/policy", &counter).await;
    let before = live_tags(&sdk, id).await;
    let response = run(&tagger, &ready_event(id)).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "refused");
    assert!(detail.contains("not managed by Crossplane"), "{detail}");
    assert_eq!(counter.writes(), 0);
    assert_eq!(live_tags(&sdk, id).await, before);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_resource_managed_as_another_object_is_refused() {
    let sdk = sdk().await;
    let id = "tagger-other-owner";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused", &counter).await;
    // The event claims the instance belongs to another namespace's managed resource.
    let mut event = ready_event(id);
    event["data"]["metadata"]["namespace"] = json!("team-b");
    event["subject"] = json!(format!(
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-b/instances/{id}"
    ));
    let (kind, detail) = {
        let response = run(&tagger, &event).await;
        let (k, d) = outcome(&response);
        (k.to_string(), d.to_string())
    };
    assert_eq!(kind, "refused");
    assert!(detail.contains("team-a/"), "{detail}");
    assert_eq!(counter.writes(), 0);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_stale_ready_for_a_vanished_instance_does_nothing() {
    let sdk = sdk().await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused", &counter).await;
    let response = run(&tagger, &ready_event("tagger-never-existed")).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "skipped");
    assert!(detail.contains("does not exist"), "{detail}");
    assert_eq!(counter.writes(), 0);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_reference_is_resolved_by_crossplane_tags() {
    let sdk = sdk().await;
    let id = "tagger-by-reference";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    put_policy(&sdk, "/tests/tagger-ref/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-ref/policy", &counter).await;
    let event = json!({
        "specversion": "1.0", "id": "ref-1", "source": "https://10.96.0.1:443",
        "type": "dev.knative.apiserver.ref.update", "datacontenttype": "application/json",
        "data": {"apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance", "name": id, "namespace": "team-a"}
    });
    let response = run(&tagger, &event).await;
    assert_eq!(outcome(&response).0, "applied", "{response}");
    assert_eq!(response["results"][0]["resource"], json!(arn(id)));
    assert_eq!(live_tag(&sdk, id, "cost-center").await.as_deref(), Some("platform"));
    counter.assert_all_declared();
}

#[tokio::test]
async fn an_rds_event_without_tags_takes_its_identity_from_the_live_resource() {
    let sdk = sdk().await;
    let id = "tagger-eventbridge";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    put_policy(&sdk, "/tests/tagger-eb/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-eb/policy", &counter).await;
    let mut event = sample("eventbridge.rds-instance-created.json");
    event["detail"].as_object_mut().unwrap().remove("Tags");
    event["detail"]["SourceArn"] = json!(arn(id));
    event["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
    let response = run(&tagger, &event).await;
    assert_eq!(outcome(&response).0, "applied", "{response}");
    let tags = live_tags(&sdk, id).await;
    assert_eq!(
        tags.get("crossplane.io/namespace").map(String::as_str),
        Some("team-a"),
        "{tags:?}"
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn an_sqs_batch_reports_only_the_failed_record() {
    let sdk = sdk().await;
    let (good, missing) = ("tagger-sqs-good", "tagger-sqs-missing");
    create_instance(&sdk, good, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-sqs/missing-policy", &counter).await;
    let record = |id: &str, body: String| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"});
    let batch = json!({"Records": [
        record("m-good", ready_event(good).to_string()),
        record("m-invalid", "{\"specversion\":\"1.0\"}".into()),
        record("m-missing", ready_event(missing).to_string()),
    ]});
    // The policy parameter does not exist: the good record fails permanently, the missing
    // instance is skipped, the invalid record fails.
    let response = run(&tagger, &batch).await;
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["m-good", "m-invalid"], "{response}");

    put_policy(&sdk, "/tests/tagger-sqs/missing-policy", policy()).await;
    let tagger = tagger_with(&sdk, "/tests/tagger-sqs/missing-policy", &counter).await;
    let response = run(&tagger, &batch).await;
    assert_eq!(
        response["batchItemFailures"],
        json!([{"itemIdentifier": "m-invalid"}]),
        "{response}"
    );
    assert_eq!(live_tag(&sdk, good, "owner").await.as_deref(), Some("platform-team"));
    counter.assert_all_declared();
}

#[tokio::test]
async fn invalid_input_makes_no_aws_call() {
    let sdk = sdk().await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused", &counter).await;
    for name in [
        "invalid/not-json.txt",
        "invalid/empty-id.json",
        "invalid/subject-mismatch.json",
    ] {
        let raw = sample_bytes(name);
        let err = dispatch(&tagger, &raw, &invocation(), 4).await.expect_err(name);
        assert_eq!(err.error_type(), "InvalidEvent", "{name}");
    }
    assert_eq!(counter.total(), 0);
    counter.assert_all_declared();
}

#[tokio::test]
async fn cluster_scoped_resources_are_tagged_too() {
    let sdk = sdk().await;
    let id = "tagger-cluster-scoped";
    create_instance(&sdk, id, &[], Managed::ClusterScoped).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused-cluster", &counter).await;
    put_policy(
        &sdk,
        "/tests/unused-cluster",
        json!({"tags": {"cost-center": "platform"}}),
    )
    .await;
    let mut event = ready_event(id);
    event["subject"] = json!(format!("/apis/rds.aws.upbound.io/v1beta3/instances/{id}"));
    event["data"]["apiVersion"] = json!("rds.aws.upbound.io/v1beta3");
    event["data"]["metadata"].as_object_mut().unwrap().remove("namespace");
    let response = run(&tagger, &event).await;
    assert_eq!(outcome(&response).0, "applied", "{response}");
    let tags = live_tags(&sdk, id).await;
    assert_eq!(tags.get("cost-center").map(String::as_str), Some("platform"));
    assert!(!tags.contains_key("crossplane.io/namespace"));
    counter.assert_all_declared();
}

/// Issue 8: a tenant's labels cannot write the provider's identity tags, nor the suite's
/// ownership tags, onto its own database, so it cannot take another managed resource's identity.
#[tokio::test]
async fn a_label_cannot_give_a_database_another_managed_resource_identity() {
    let sdk = sdk().await;
    let (victim, attacker) = ("tagger-victim-db", "tagger-attacker-db");
    create_instance_in(&sdk, victim, "team-a", &[], Managed::Namespaced).await;
    create_instance_in(&sdk, attacker, "team-b", &[], Managed::Namespaced).await;
    put_policy(&sdk, "/tests/tagger-forged/policy", policy()).await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-forged/policy", &counter).await;

    let victim_subject = format!("/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/{victim}");
    let mut forged = ready_event_in(attacker, "team-b");
    let labels = &mut forged["data"]["metadata"]["labels"];
    labels["tags.platform.example.com/crossplane-name"] = json!(victim);
    labels["tags.platform.example.com/crossplane-namespace"] = json!("team-a");
    labels["tags.platform.example.com/Crossplane-Kind"] = json!("instance.rds.aws.m.upbound.io");
    labels["tags.platform.example.com/crossplane-lambda.io/resource"] = json!(victim_subject);
    labels["tags.platform.example.com/crossplane.io/claim-namespace"] = json!("team-a");
    let response = run(&tagger, &forged).await;
    let (kind, detail) = outcome(&response);
    assert_eq!(kind, "applied", "{response}");
    assert!(detail.contains("reserved"), "the refused labels are reported: {detail}");

    let tags = live_tags(&sdk, attacker).await;
    assert_eq!(
        tags.get("crossplane-name").map(String::as_str),
        Some(attacker),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("crossplane-namespace").map(String::as_str),
        Some("team-b"),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("crossplane.io/claim-namespace").map(String::as_str),
        Some("team-a")
    );
    assert!(
        !tags
            .keys()
            .any(|k| k.to_ascii_lowercase().starts_with("crossplane-lambda.io/")),
        "{tags:?}"
    );
    assert!(!tags.contains_key("Crossplane-Kind"), "{tags:?}");

    // The real owner is still served: its database was not adopted by the attacker.
    let (kind, detail) = {
        let response = run(&tagger, &ready_event_in(victim, "team-a")).await;
        let (k, d) = outcome(&response);
        (k.to_string(), d.to_string())
    };
    assert_eq!(kind, "applied", "{detail}");
    // And the attacker's next event is about its own database only.
    let again = run(&tagger, &forged).await;
    assert_eq!(outcome(&again).0, "unchanged", "{again}");
    counter.assert_all_declared();
}

/// Issue 8: a policy that names an identity tag is a configuration error, before any write.
#[tokio::test]
async fn a_policy_naming_an_identity_tag_is_a_permanent_failure_with_no_write() {
    let sdk = sdk().await;
    let id = "tagger-reserved-policy";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    put_policy(
        &sdk,
        "/tests/tagger-reserved/policy",
        json!({"tags": {"crossplane-namespace": "platform"}}),
    )
    .await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/tagger-reserved/policy", &counter).await;
    let error = dispatch(&tagger, ready_event(id).to_string().as_bytes(), &invocation(), 4)
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "PermanentFailure", "{error}");
    assert!(error.message().contains("reserved"), "{error}");
    assert_eq!(counter.writes(), 0);
    assert_eq!(
        live_tag(&sdk, id, "crossplane-namespace").await.as_deref(),
        Some("team-a")
    );
    counter.assert_all_declared();
}

/// Issue 8: an ARN with an empty account (or region, or the wrong partition) is refused
/// before any AWS call.
#[tokio::test]
async fn a_malformed_arn_is_refused_before_any_call() {
    let sdk = sdk().await;
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let tagger = tagger_with(&sdk, "/tests/unused", &counter).await;
    for arn in [
        "arn:aws:rds:us-east-1::db:tagger-no-account",
        "arn:aws:rds::123456789012:db:tagger-no-region",
        "arn:aws-cn:rds:us-east-1:123456789012:db:tagger-wrong-partition",
        "arn:aws:rds:us-east-1:12345:db:tagger-short-account",
    ] {
        let mut event = ready_event("tagger-malformed");
        event["data"]["status"]["atProvider"]["arn"] = json!(arn);
        let response = run(&tagger, &event).await;
        assert_eq!(outcome(&response).0, "refused", "{arn}: {response}");
    }
    assert_eq!(counter.total(), 0, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}
