//! The tagger's sweep and its many accounts, against moto: 500 resources in two member accounts
//! and two regions, reached with assumed-role credentials (moto maps them to the role's account).
//! Run with `make test`, which starts moto and exports `AWS_ENDPOINT_URL`.
//!
//! The accounts here are used by no other test, so the sweep sees only what this file creates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::aws::AwsError;
use common::fleet::{AssumeRole, FleetSettings};
use common::resolve::{Guard, Tags};
use common::runtime::{Invocation, dispatch};
use common::sweep::{Requeue, SweepSettings};
use common::testing::{
    DeclaredCounter, Fault, Faults, ROLE_TEMPLATE, assumed_config, create_database_tagged, create_secret_tagged,
    create_table_tagged, invocation, moto_config, sample, tags_by_arn,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tagger::Settings;

const ACCOUNTS: [&str; 2] = ["210987654321", "345678901234"];
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];
const POLICY: &str = "/tests/tagger-sweep/policy";
/// Each invocation's time, and the part of it kept in reserve: 400 ms to start resources in.
const WINDOW: Duration = Duration::from_millis(800);
const RESERVE: Duration = Duration::from_millis(400);

/// A continuation: the function it is sent to, and its payload.
type Continuation = (String, Vec<u8>);

/// Records each continuation instead of invoking the function: the test invokes it.
#[derive(Clone, Default)]
struct Continuations(Arc<Mutex<Vec<Continuation>>>);

impl Continuations {
    fn take(&self) -> Option<Continuation> {
        self.0.lock().unwrap().pop()
    }
}

impl Requeue for Continuations {
    async fn requeue(&self, function_arn: &str, payload: Vec<u8>) -> Result<(), AwsError> {
        self.0.lock().unwrap().push((function_arn.to_string(), payload));
        Ok(())
    }
}

/// What the test made, and what it expects of each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// Carries every policy tag: a sweep writes nothing.
    Compliant,
    /// A policy tag removed or changed by hand: a sweep restores it.
    Drifted,
    /// Crossplane's kind tag but not its name: refused, untouched.
    Unnamed,
    /// No Crossplane tags: never listed, untouched.
    Unmanaged,
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn tags_for(kind_tag: &str, name: &str, made: Made) -> Vec<(String, String)> {
    let mut found = match made {
        Made::Unmanaged => vec![],
        Made::Unnamed => tags(&[("crossplane-kind", kind_tag)]),
        Made::Compliant | Made::Drifted => tags(&[("crossplane-kind", kind_tag), ("crossplane-name", name)]),
    };
    found.extend(tags(&[("managed-by", "crossplane"), ("owner", "payments-team")]));
    match made {
        Made::Compliant => found.extend(tags(&[("cost-center", "platform")])),
        Made::Drifted if name.len().is_multiple_of(2) => found.extend(tags(&[("cost-center", "changed-by-hand")])),
        _ => {}
    }
    found
}

/// 125 resources in one account and region: RDS instances and clusters, DynamoDB tables and
/// Secrets Manager secrets, some drifted, some not Crossplane's. Returns what each ARN is.
async fn populate(account: &str, region: &str) -> BTreeMap<String, Made> {
    let sdk = assumed_config(account, region).await;
    let mut plan = Vec::new();
    for i in 0..20 {
        plan.push((
            "instance",
            format!("db-{i}"),
            if i % 4 == 0 { Made::Drifted } else { Made::Compliant },
        ));
    }
    for i in 0..5 {
        plan.push((
            "cluster",
            format!("cl-{i}"),
            if i == 0 { Made::Drifted } else { Made::Compliant },
        ));
    }
    for i in 0..70 {
        plan.push((
            "table",
            format!("tbl-{i}"),
            if i % 5 == 0 { Made::Drifted } else { Made::Compliant },
        ));
    }
    for i in 0..5 {
        plan.push(("table", format!("unnamed-{i}"), Made::Unnamed));
    }
    for i in 0..10 {
        plan.push(("table", format!("other-{i}"), Made::Unmanaged));
    }
    for i in 0..15 {
        plan.push(("secret", format!("app-{i}"), Made::Compliant));
    }
    let made = futures_util::stream::iter(plan)
        .map(|(kind, name, made)| {
            let sdk = sdk.clone();
            async move {
                let arn = match kind {
                    "instance" | "cluster" => {
                        let cluster = kind == "cluster";
                        let kind_tag = format!("{kind}.rds.aws.upbound.io");
                        create_database_tagged(&sdk, &name, cluster, &tags_for(&kind_tag, &name, made)).await;
                        let ty = if cluster { "cluster" } else { "db" };
                        format!("arn:aws:rds:{region}:{account}:{ty}:{name}")
                    }
                    "table" => {
                        create_table_tagged(&sdk, &name, &tags_for("table.dynamodb.aws.upbound.io", &name, made)).await
                    }
                    _ => {
                        // The provider names a secret by its ARN: tag it once that is known.
                        let arn = create_secret_tagged(&sdk, &name, &[]).await;
                        tag_secret(
                            &sdk,
                            &arn,
                            &tags_for("secret.secretsmanager.aws.upbound.io", &arn, made),
                        )
                        .await;
                        arn
                    }
                };
                (arn, made)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    made.into_iter().collect()
}

async fn tag_secret(sdk: &aws_config::SdkConfig, arn: &str, pairs: &[(String, String)]) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .tag_resource()
        .secret_id(arn)
        .set_tags(Some(
            pairs
                .iter()
                .map(|(k, v)| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .expect("tag the secret");
}

fn settings() -> Settings {
    Settings {
        policy_parameter: Some(POLICY.into()),
        policy_ttl: Duration::from_secs(300),
        guard: guard(),
    }
}

fn guard() -> Guard {
    Guard {
        allowed_accounts: ACCOUNTS.map(str::to_string).to_vec(),
        allowed_regions: REGIONS.map(str::to_string).to_vec(),
    }
}

fn fleet_settings(reserve: Duration) -> FleetSettings {
    FleetSettings {
        guard: guard(),
        assume: Some(AssumeRole {
            template: ROLE_TEMPLATE.into(),
            external_id: Some("crossplane-lambda-test".into()),
        }),
        sweep: SweepSettings {
            concurrency: 8,
            reserve,
        },
    }
}

fn with_deadline(after: Duration) -> Invocation {
    Invocation {
        deadline: tokio::time::Instant::now() + after,
        ..invocation()
    }
}

fn summary(answer: &Value, field: &str) -> u64 {
    answer["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {answer}"))
}

#[tokio::test]
async fn a_sweep_over_two_accounts_and_two_regions_converges_only_what_drifted_across_invocations() {
    let home = moto_config().await;
    aws_sdk_ssm::Client::new(&home)
        .put_parameter()
        .name(POLICY)
        .value(json!({"tags": {"cost-center": "platform", "managed-by": "crossplane"}, "defaults": {"owner": "platform-team"}}).to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let mut made = BTreeMap::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            made.extend(populate(account, region).await);
        }
    }
    assert_eq!(made.len(), 500);
    let count = |what: Made| made.values().filter(|m| **m == what).count() as u64;
    let listed = made.len() as u64 - count(Made::Unmanaged);

    // Throttling on the way: the listing, the tag reads and the writes each fail at first.
    let faults = Faults::new();
    faults.inject("Resource Groups Tagging API.GetResources", 3, 2, Fault::Throttle);
    faults.inject("RDS.ListTagsForResource", 5, 2, Fault::Throttle);
    faults.inject("Resource Groups Tagging API.TagResources", 2, 2, Fault::Throttle);
    let counter = DeclaredCounter::with_faults(tagger::AWS_OPERATIONS, &faults);
    let continuations = Continuations::default();
    let fleet = tagger::fleet(
        home.clone(),
        settings(),
        fleet_settings(RESERVE),
        continuations.clone(),
        Some(&counter),
    );

    // A deadline far too short for 460 resources: the sweep goes on over several invocations.
    let mut answers = vec![
        dispatch(&fleet, br#"{"sweep": {}}"#, &with_deadline(WINDOW), 1)
            .await
            .expect("the first invocation"),
    ];
    while let Some((function, payload)) = continuations.take() {
        assert_eq!(
            function,
            invocation().function_arn,
            "the continuation goes to the function itself"
        );
        assert!(answers.len() < 200, "the sweep does not end: {:?}", answers.last());
        let answer = dispatch(&fleet, &payload, &with_deadline(WINDOW), 1)
            .await
            .expect("a continuation");
        answers.push(answer);
    }
    let last = answers.last().unwrap();
    assert!(answers.len() >= 2, "several invocations: {answers:?}");
    assert_eq!(last["finished"], true, "{last}");
    assert_eq!(last["invocation"].as_u64(), Some(answers.len() as u64));
    assert!(
        answers.iter().all(|a| a["sweep"] == answers[0]["sweep"]),
        "one sweep throughout"
    );

    // Each resource listed once and decided once: nothing restarted, nothing done twice.
    assert_eq!(summary(last, "seen"), listed, "{last}");
    let decided: u64 = ["converged", "unchanged", "skipped", "refused", "failed"]
        .iter()
        .map(|field| summary(last, field))
        .sum();
    assert_eq!(decided, listed, "{last}");
    assert_eq!(summary(last, "converged"), count(Made::Drifted), "{last}");
    assert_eq!(summary(last, "refused"), count(Made::Unnamed), "{last}");
    assert_eq!(summary(last, "failed"), 0, "{last}");
    assert_eq!(summary(last, "unlisted"), 0, "{last}");
    let per_invocation: u64 = answers
        .iter()
        .map(|a| a["this_invocation"]["converged"].as_u64().unwrap())
        .sum();
    assert_eq!(per_invocation, count(Made::Drifted));
    // One write per drifted resource, none elsewhere.
    assert_eq!(counter.writes(), count(Made::Drifted), "{:?}", counter.snapshot());
    counter.assert_all_declared();

    // The live state: every drifted resource restored, nothing else touched.
    let mut live: BTreeMap<String, Tags> = BTreeMap::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            live.extend(tags_by_arn(&assumed_config(account, region).await).await);
        }
    }
    for (arn, what) in &made {
        let tags = live.get(arn).unwrap_or_else(|| panic!("{arn} is not listed"));
        let cost_center = tags.get("cost-center").map(String::as_str);
        match what {
            Made::Compliant | Made::Drifted => assert_eq!(cost_center, Some("platform"), "{arn}: {tags:?}"),
            Made::Unnamed | Made::Unmanaged => assert_ne!(cost_center, Some("platform"), "{arn} was touched: {tags:?}"),
        }
        assert_eq!(
            tags.get("owner").map(String::as_str),
            Some("payments-team"),
            "{arn}: a default never overwrites"
        );
    }

    // The next sweep finds nothing drifted and writes nothing.
    counter.reset();
    faults.clear();
    let answer = dispatch(&fleet, br#"{"sweep": {}}"#, &with_deadline(Duration::from_secs(600)), 1)
        .await
        .unwrap();
    assert_eq!(answer["finished"], true, "{answer}");
    assert_eq!(summary(&answer, "unchanged"), listed - count(Made::Unnamed), "{answer}");
    assert_eq!(summary(&answer, "converged"), 0, "{answer}");
    assert_eq!(counter.writes(), 0, "{:?}", counter.snapshot());
    assert!(continuations.take().is_none());
}

#[tokio::test]
async fn an_event_in_another_account_is_handled_with_its_role_and_refused_outside_the_allowed_ones() {
    const MEMBER: &str = "456789012345";
    let member = assumed_config(MEMBER, "us-east-1").await;
    let id = "member-orders";
    create_database_tagged(
        &member,
        id,
        false,
        &tags(&[
            ("crossplane-kind", "instance.rds.aws.upbound.io"),
            ("crossplane-name", id),
        ]),
    )
    .await;
    let policy = "/tests/tagger-member/policy";
    aws_sdk_ssm::Client::new(&moto_config().await)
        .put_parameter()
        .name(policy)
        .value(json!({"tags": {"cost-center": "platform"}}).to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let settings = Settings {
        policy_parameter: Some(policy.into()),
        policy_ttl: Duration::from_secs(300),
        guard: Guard {
            allowed_accounts: vec![MEMBER.into()],
            allowed_regions: vec![],
        },
    };
    let fleet_settings = FleetSettings {
        guard: settings.guard.clone(),
        ..fleet_settings(Duration::from_secs(1))
    };
    let fleet = tagger::fleet(
        moto_config().await,
        settings,
        fleet_settings,
        Continuations::default(),
        Some(&counter),
    );

    let event = |account: &str| {
        let mut event = sample("eventbridge.rds-instance-created.json");
        event["account"] = json!(account);
        event["detail"]["SourceArn"] = json!(format!("arn:aws:rds:us-east-1:{account}:db:{id}"));
        event["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
        // Who manages it is read from the live resource's tags, in the member account.
        event["detail"]["Tags"] = json!({});
        event
    };
    let answer = dispatch(&fleet, event(MEMBER).to_string().as_bytes(), &invocation(), 1)
        .await
        .unwrap();
    let result = &answer["results"][0];
    assert_eq!(result["outcome"], "applied", "{answer}");
    // Written in the member account: the tag is there, read with that account's credentials.
    let live = tags_by_arn(&member).await;
    let arn = format!("arn:aws:rds:us-east-1:{MEMBER}:db:{id}");
    assert_eq!(
        live[&arn].get("cost-center").map(String::as_str),
        Some("platform"),
        "{live:?}"
    );
    assert_eq!(counter.writes(), 1, "{:?}", counter.snapshot());

    // An account that is not allowed: refused before any call, no role assumed.
    counter.reset();
    let answer = dispatch(&fleet, event("999999999999").to_string().as_bytes(), &invocation(), 1)
        .await
        .unwrap();
    let result = &answer["results"][0];
    assert_eq!(result["outcome"], "refused", "{answer}");
    assert!(
        result["detail"]
            .as_str()
            .unwrap()
            .contains("account 999999999999 is not one this function may act on"),
        "{answer}"
    );
    assert_eq!(counter.total(), 0, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}

/// The continuation's `Invoke` fails the first time (throttled past the SDK's retries).
#[derive(Clone, Default)]
struct FailsOnce {
    failed: Arc<Mutex<bool>>,
    queued: Continuations,
}

impl Requeue for FailsOnce {
    async fn requeue(&self, function_arn: &str, payload: Vec<u8>) -> Result<(), AwsError> {
        let first = !std::mem::replace(&mut *self.failed.lock().unwrap(), true);
        if first {
            return Err(AwsError {
                operation: "Invoke",
                retryable: true,
                code: Some("TooManyRequestsException".into()),
                message: "TooManyRequestsException: Rate exceeded".into(),
            });
        }
        self.queued.requeue(function_arn, payload).await
    }
}

#[tokio::test]
async fn a_continuation_that_cannot_be_queued_fails_retryably_and_the_retry_writes_nothing_twice() {
    const ACCOUNT: &str = "678901234567";
    let member = assumed_config(ACCOUNT, "us-east-1").await;
    let drifted = 24;
    let kind = "table.dynamodb.aws.upbound.io";
    for i in 0..drifted {
        let name = format!("requeue-{i}");
        create_table_tagged(
            &member,
            &name,
            &tags(&[("crossplane-kind", kind), ("crossplane-name", &name)]),
        )
        .await;
    }
    let policy = "/tests/tagger-requeue/policy";
    aws_sdk_ssm::Client::new(&moto_config().await)
        .put_parameter()
        .name(policy)
        .value(json!({"tags": {"cost-center": "platform"}}).to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let guard = Guard {
        allowed_accounts: vec![ACCOUNT.into()],
        allowed_regions: vec!["us-east-1".into()],
    };
    let settings = Settings {
        policy_parameter: Some(policy.into()),
        policy_ttl: Duration::from_secs(300),
        guard: guard.clone(),
    };
    let counter = DeclaredCounter::new(tagger::AWS_OPERATIONS);
    let requeue = FailsOnce::default();
    let fleet_settings = FleetSettings {
        guard,
        ..fleet_settings(RESERVE)
    };
    let fleet = tagger::fleet(
        moto_config().await,
        settings,
        fleet_settings,
        requeue.clone(),
        Some(&counter),
    );

    // Cut short, and the continuation cannot be queued: a retryable failure (Lambda retries the
    // invocation with the same payload), never a silent end of the sweep.
    let error = dispatch(&fleet, br#"{"sweep": {}}"#, &with_deadline(WINDOW), 1)
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "RetryableFailure", "{error}");
    assert!(
        error.message().contains("the continuation could not be queued"),
        "{error}"
    );
    let written_before_the_retry = counter.writes();
    assert!(
        written_before_the_retry > 0 && written_before_the_retry < drifted,
        "{:?}",
        counter.snapshot()
    );

    // Lambda's retry, then the continuations: what the failed invocation converged is now
    // unchanged, so every table is written exactly once in all.
    let mut last = dispatch(&fleet, br#"{"sweep": {}}"#, &with_deadline(WINDOW), 1)
        .await
        .unwrap();
    while let Some((_, payload)) = requeue.queued.take() {
        last = dispatch(&fleet, &payload, &with_deadline(WINDOW), 1).await.unwrap();
    }
    assert_eq!(last["finished"], true, "{last}");
    assert_eq!(
        counter.writes(),
        drifted,
        "one write per table: {:?}",
        counter.snapshot()
    );
    let live = tags_by_arn(&member).await;
    assert_eq!(
        live.values()
            .filter(|t| t.get("cost-center").map(String::as_str) == Some("platform"))
            .count() as u64,
        drifted
    );
    counter.assert_all_declared();
}
