//! secret-syncer against moto (the test bed's AWS emulator), through `dispatch`, with every
//! AWS call counted by the SDK interceptor. Run with `make test`.

use aws_sdk_secretsmanager::types::Tag;
use common::aws::CallCounter;
use common::runtime::dispatch;
use common::testing::DeclaredCounter;
use common::testing::{
    Managed, cluster_arn, cluster_event, create_cluster, create_instance, db_arn, invocation, moto_config, ready_event,
};
use secret_syncer::{DeletePolicy, SecretSyncer, Settings};
use serde_json::{Value, json};

/// moto's fixed password for RDS-managed master user secrets.
const MOTO_MASTER_PASSWORD: &str = "P@55w0rd!";

fn settings() -> Settings {
    Settings {
        parameter_path_template: Some("/crossplane/{namespace}/{name}".into()),
        ..Settings::default()
    }
}

async fn syncer(settings: Settings, counter: &CallCounter) -> SecretSyncer {
    SecretSyncer::from_sdk_config(&moto_config().await, settings, Some(counter))
}

async fn run(syncer: &SecretSyncer, event: &Value) -> (String, String) {
    let response = dispatch(syncer, event.to_string().as_bytes(), &invocation(), 4)
        .await
        .expect("handled");
    let result = &response["results"][0];
    (
        result["outcome"].as_str().unwrap().to_string(),
        result["detail"].as_str().unwrap().to_string(),
    )
}

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto_config().await)
}

async fn secret_json(name: &str) -> Value {
    let value = secrets_client()
        .await
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .unwrap();
    serde_json::from_str(value.secret_string().unwrap()).unwrap()
}

async fn version_count(name: &str) -> usize {
    secrets_client()
        .await
        .list_secret_version_ids()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .versions()
        .len()
}

async fn parameters(path: &str) -> Vec<(String, String, String)> {
    let ssm = aws_sdk_ssm::Client::new(&moto_config().await);
    let out = ssm
        .get_parameters_by_path()
        .path(path)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let mut found: Vec<_> = out
        .parameters()
        .iter()
        .map(|p| {
            (
                p.name().unwrap().to_string(),
                p.value().unwrap().to_string(),
                p.r#type().unwrap().as_str().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn first_sync_of_an_instance_then_a_replay_writes_nothing() {
    let sdk = moto_config().await;
    let id = "ss-first";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;

    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "applied", "{detail}");
    let name = format!("crossplane/team-a/{id}/connection");
    assert!(detail.contains(&format!("created secret {name}")), "{detail}");
    let doc = secret_json(&name).await;
    assert_eq!(doc["arn"], db_arn(id));
    assert_eq!(doc["engine"], "postgres");
    assert_eq!(doc["port"], 5432);
    assert_eq!(doc["dbname"], "orders");
    assert_eq!(doc["username"], "orders_admin");
    assert_eq!(doc["host"], format!("{id}.aaaaaaaaaa.us-east-1.rds.amazonaws.com"));
    assert_eq!(
        doc["endpoint"],
        format!("{id}.aaaaaaaaaa.us-east-1.rds.amazonaws.com:5432")
    );
    assert!(
        doc["master_user_secret_arn"]
            .as_str()
            .unwrap()
            .contains("secret:rds!db-")
    );
    assert!(doc.get("password").is_none(), "no password unless configured");
    let params = parameters(&format!("/crossplane/team-a/{id}")).await;
    assert_eq!(params.len(), 8, "{params:?}");
    assert!(params.iter().all(|(_, _, ty)| ty == "String"));
    // First event: resolve, describe, read both targets, create the secret, put 8 parameters.
    let first = counter.snapshot();
    assert_eq!(counter.count_where(|n| n.ends_with(".CreateSecret")), 1, "{first:?}");
    assert_eq!(counter.count_where(|n| n.ends_with(".PutParameter")), 8, "{first:?}");
    assert_eq!(counter.writes(), 9, "{first:?}");
    assert_eq!(counter.total(), 13, "{first:?}");

    counter.reset();
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "unchanged", "{detail}");
    assert_eq!(counter.writes(), 0, "a replay writes nothing: {:?}", counter.snapshot());
    assert_eq!(counter.total(), 5, "{:?}", counter.snapshot());
    assert_eq!(version_count(&name).await, 1);
    counter.assert_all_declared();
}

#[tokio::test]
async fn first_sync_of_a_cluster_carries_the_reader_endpoint() {
    let sdk = moto_config().await;
    let id = "ss-cluster";
    create_cluster(&sdk, id, Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(Settings::default(), &counter).await;
    let (outcome, detail) = run(&syncer, &cluster_event(id)).await;
    assert_eq!(outcome, "applied", "{detail}");
    let doc = secret_json(&format!("crossplane/team-a/{id}/connection")).await;
    assert_eq!(doc["arn"], cluster_arn(id));
    assert_eq!(doc["engine"], "aurora-postgresql");
    assert!(
        doc["reader_endpoint"].as_str().unwrap().contains(".cluster-ro-"),
        "{doc}"
    );
    assert!(
        doc["master_user_secret_arn"]
            .as_str()
            .unwrap()
            .contains("secret:rds!cluster-")
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn an_endpoint_change_makes_exactly_one_new_version() {
    let sdk = moto_config().await;
    let id = "ss-change";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(Settings::default(), &counter).await;
    assert_eq!(run(&syncer, &ready_event(id)).await.0, "applied");
    let name = format!("crossplane/team-a/{id}/connection");
    assert_eq!(version_count(&name).await, 1);

    // The instance is renamed: a new endpoint, the same managed resource.
    let rds = aws_sdk_rds::Client::new(&sdk);
    let renamed = format!("{id}-v2");
    rds.modify_db_instance()
        .db_instance_identifier(id)
        .new_db_instance_identifier(&renamed)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let mut event = ready_event(id);
    event["data"]["metadata"]["annotations"]["crossplane.io/external-name"] = json!(renamed);
    event["data"]["status"]["atProvider"]["arn"] = json!(db_arn(&renamed));
    counter.reset();
    let (outcome, detail) = run(&syncer, &event).await;
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("updated secret"), "{detail}");
    assert_eq!(counter.count_where(|n| n.ends_with(".PutSecretValue")), 1);
    assert_eq!(version_count(&name).await, 2, "exactly one new version");
    assert!(secret_json(&name).await["host"].as_str().unwrap().starts_with(&renamed));
    // The same change again (a retried delivery): no new version.
    assert_eq!(run(&syncer, &event).await.0, "unchanged");
    assert_eq!(version_count(&name).await, 2);
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_secret_we_do_not_own_is_refused_and_untouched() {
    let sdk = moto_config().await;
    let id = "ss-foreign";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let name = format!("crossplane/team-a/{id}/connection");
    let secrets = secrets_client().await;
    secrets
        .create_secret()
        .name(&name)
        .secret_string("{\"owner\":\"dba\"}")
        .tags(Tag::builder().key("team").value("dba").build())
        .send()
        .await
        .unwrap();
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "refused");
    assert!(detail.contains("is not ours"), "{detail}");
    assert_eq!(
        counter.writes(),
        0,
        "nothing written anywhere: {:?}",
        counter.snapshot()
    );
    assert_eq!(secret_json(&name).await, json!({"owner": "dba"}));
    assert!(
        parameters(&format!("/crossplane/team-a/{id}")).await.is_empty(),
        "no parameter written either"
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_parameter_we_do_not_own_is_refused() {
    let sdk = moto_config().await;
    let id = "ss-foreign-param";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let foreign = format!("/crossplane/team-a/{id}/host");
    ssm.put_parameter()
        .name(&foreign)
        .value("dba-owned")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "refused");
    assert!(detail.contains(&foreign), "{detail}");
    assert_eq!(counter.writes(), 0, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}

#[tokio::test]
async fn the_password_is_included_only_when_configured() {
    let sdk = moto_config().await;
    let id = "ss-password";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let with_password = Settings {
        include_password: true,
        ..settings()
    };
    let syncer = syncer(with_password, &counter).await;
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "applied");
    assert!(!detail.contains(MOTO_MASTER_PASSWORD));
    assert_eq!(
        secret_json(&format!("crossplane/team-a/{id}/connection")).await["password"],
        MOTO_MASTER_PASSWORD
    );
    let params = parameters(&format!("/crossplane/team-a/{id}")).await;
    let password = params.iter().find(|(name, _, _)| name.ends_with("/password")).unwrap();
    assert_eq!(
        (password.1.as_str(), password.2.as_str()),
        (MOTO_MASTER_PASSWORD, "SecureString")
    );

    // Turned off again: the password leaves the secret and its parameter is removed.
    let syncer = self::syncer(settings(), &counter).await;
    assert_eq!(run(&syncer, &ready_event(id)).await.0, "applied");
    assert!(
        secret_json(&format!("crossplane/team-a/{id}/connection"))
            .await
            .get("password")
            .is_none()
    );
    assert!(
        parameters(&format!("/crossplane/team-a/{id}"))
            .await
            .iter()
            .all(|(n, _, _)| !n.ends_with("/password"))
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_stale_ready_for_a_vanished_instance_does_nothing() {
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let (outcome, detail) = run(&syncer, &ready_event("ss-never-existed")).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert_eq!(counter.writes(), 0);
    counter.assert_all_declared();
}

#[tokio::test]
async fn deletion_retains_by_default_and_deletes_when_configured() {
    let sdk = moto_config().await;
    let id = "ss-delete";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let retain = syncer(settings(), &counter).await;
    assert_eq!(run(&retain, &ready_event(id)).await.0, "applied");
    let name = format!("crossplane/team-a/{id}/connection");
    let path = format!("/crossplane/team-a/{id}");
    let mut deleted = ready_event(id);
    deleted["type"] = json!("io.crossplane.managed.deleted");
    deleted["data"]["metadata"]["deletionTimestamp"] = json!("2026-11-22T08:00:00Z");

    let delete = syncer(
        Settings {
            delete_policy: DeletePolicy::Delete,
            ..settings()
        },
        &counter,
    )
    .await;
    // While the database still exists, a delete event is stale (or forged): nothing goes.
    let (outcome, detail) = run(&delete, &deleted).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("still exists"), "{detail}");

    aws_sdk_rds::Client::new(&sdk)
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(true)
        .send()
        .await
        .unwrap();
    counter.reset();
    let (outcome, detail) = run(&retain, &deleted).await;
    assert_eq!(outcome, "skipped");
    assert!(detail.contains("retained"), "{detail}");
    assert_eq!(counter.total(), 0, "retain makes no call");
    assert_eq!(secret_json(&name).await["arn"], db_arn(id));

    let (outcome, detail) = run(&delete, &deleted).await;
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("scheduled for deletion in 7 days"), "{detail}");
    let described = secrets_client()
        .await
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert!(described.deleted_date().is_some(), "scheduled with a recovery window");
    assert!(parameters(&path).await.is_empty());
    assert_eq!(
        run(&delete, &deleted).await.0,
        "unchanged",
        "deleting twice is harmless"
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_resource_that_is_not_a_database_is_skipped_without_calls() {
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let mut event = ready_event("ss-bucket");
    event["data"]["apiVersion"] = json!("s3.aws.m.upbound.io/v1beta1");
    event["data"]["kind"] = json!("Bucket");
    event["subject"] = json!("/apis/s3.aws.m.upbound.io/v1beta1/namespaces/team-a/buckets/ss-bucket");
    let (outcome, _) = run(&syncer, &event).await;
    assert_eq!(outcome, "skipped");
    assert_eq!(counter.total(), 0);
    counter.assert_all_declared();
}

fn delete_settings() -> Settings {
    Settings {
        delete_policy: DeletePolicy::Delete,
        ..settings()
    }
}

async fn delete_instance(id: &str) {
    common::testing::delete_instance(&moto_config().await, id).await;
}

async fn secret_exists_and_is_not_scheduled(name: &str) -> bool {
    match secrets_client().await.describe_secret().secret_id(name).send().await {
        Ok(described) => described.deleted_date().is_none(),
        Err(_) => false,
    }
}

/// Issue 8: a Knative `ref.delete` carries only a reference, so the ARN built from it uses the
/// managed resource's name, not its external name: that database "does not exist", but the
/// real one, recorded on the secret, does. Nothing may be deleted.
#[tokio::test]
async fn a_delete_event_for_a_live_database_deletes_nothing() {
    let sdk = moto_config().await;
    let (name, external) = ("ss-live", "ss-live-x7k2p");
    create_instance(&sdk, external, &[], Managed::No).await;
    // The provider's tags name the managed resource `ss-live`, its external name differs.
    aws_sdk_rds::Client::new(&sdk)
        .add_tags_to_resource()
        .resource_name(db_arn(external))
        .set_tags(Some(
            [
                ("crossplane-kind", "instance.rds.aws.m.upbound.io"),
                ("crossplane-name", name),
                ("crossplane-namespace", "team-a"),
            ]
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect(),
        ))
        .send()
        .await
        .unwrap();
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(delete_settings(), &counter).await;
    let mut ready = ready_event(name);
    ready["data"]["metadata"]["annotations"]["crossplane.io/external-name"] = json!(external);
    ready["data"]["spec"]["forProvider"]["identifier"] = json!(external);
    ready["data"]["status"]["atProvider"]["arn"] = json!(db_arn(external));
    assert_eq!(run(&syncer, &ready).await.0, "applied");

    let mut reference_delete = common::testing::sample("knative.ref-add.json");
    reference_delete["type"] = json!("dev.knative.apiserver.ref.delete");
    reference_delete["subject"] = json!(format!(
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/{name}"
    ));
    reference_delete["data"]["name"] = json!(name);
    counter.reset();
    let (outcome, detail) = run(&syncer, &reference_delete).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("still exists"), "{detail}");
    assert_eq!(counter.writes(), 0, "{:?}", counter.snapshot());
    let secret = format!("crossplane/team-a/{name}/connection");
    assert!(
        secret_exists_and_is_not_scheduled(&secret).await,
        "the secret of a live database stays"
    );
    assert_eq!(parameters(&format!("/crossplane/team-a/{name}")).await.len(), 8);

    // Once the recorded database is really gone, the same reference deletes.
    delete_instance(external).await;
    let (outcome, detail) = run(&syncer, &reference_delete).await;
    assert_eq!(outcome, "applied", "{detail}");
    assert!(!secret_exists_and_is_not_scheduled(&secret).await);
    assert!(parameters(&format!("/crossplane/team-a/{name}")).await.is_empty());
    counter.assert_all_declared();
}

/// Issue 8: when a Ready flap makes Crossplane delete the composed Invocations, every function
/// receives `tf.action=delete` for a database that still exists: nothing may be deleted.
#[tokio::test]
async fn an_invocation_delete_during_a_ready_flap_deletes_nothing() {
    let sdk = moto_config().await;
    let id = "ss-flap";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(delete_settings(), &counter).await;
    let mut invocation_input = ready_event(id);
    invocation_input["tf"] = json!({"action": "create", "prev_input": null});
    assert_eq!(run(&syncer, &invocation_input).await.0, "applied");
    invocation_input["tf"] = json!({"action": "delete", "prev_input": null});
    counter.reset();
    let (outcome, detail) = run(&syncer, &invocation_input).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert_eq!(counter.writes(), 0);
    assert!(secret_exists_and_is_not_scheduled(&format!("crossplane/team-a/{id}/connection")).await);
    counter.assert_all_declared();
}

/// Issue 8: a cluster-scoped managed resource of a claim in team-a, synced through our
/// CloudEvent (which carries its labels) and through RDS's own EventBridge event (which
/// carries none): one database, one secret.
#[tokio::test]
async fn one_database_gets_one_secret_whatever_the_trigger() {
    let sdk = moto_config().await;
    let id = "ss-one-name";
    create_instance(&sdk, id, &[], Managed::ClusterScoped).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let mut cloudevent = common::testing::sample("ready.cluster-scoped.json");
    cloudevent["subject"] = json!(format!("/apis/rds.aws.upbound.io/v1beta3/instances/{id}"));
    cloudevent["data"]["metadata"]["name"] = json!(id);
    cloudevent["data"]["metadata"]["annotations"]["crossplane.io/external-name"] = json!(id);
    cloudevent["data"]["status"]["atProvider"]["arn"] = json!(db_arn(id));
    let mut eventbridge = common::testing::sample("eventbridge.rds-instance-created.json");
    eventbridge["detail"]["SourceArn"] = json!(db_arn(id));
    eventbridge["detail"]["SourceIdentifier"] = json!(format!("rds:{id}"));
    eventbridge["detail"].as_object_mut().unwrap().remove("Tags");
    let (first, detail) = run(&syncer, &cloudevent).await;
    assert_eq!(first, "applied", "{detail}");
    let (second, detail) = run(&syncer, &eventbridge).await;
    assert_eq!(second, "unchanged", "the same targets, already current: {detail}");
    let listed = secrets_client()
        .await
        .list_secrets()
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                .values("crossplane/")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ours: Vec<&str> = listed
        .secret_list()
        .iter()
        .filter_map(|s| s.name())
        .filter(|n| n.contains(id))
        .collect();
    assert_eq!(ours, vec![format!("crossplane/cluster/{id}/connection").as_str()]);
    counter.assert_all_declared();
}

/// Issue 8: a template placeholder an event cannot establish skips the event instead of
/// writing under another name.
#[tokio::test]
async fn a_claim_placeholder_is_not_guessed_from_an_aws_event() {
    let sdk = moto_config().await;
    let id = "ss-claim-template";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(
        Settings {
            secret_name_template: Some("apps/{namespace}/{claim}/db".into()),
            parameter_path_template: None,
            ..Settings::default()
        },
        &counter,
    )
    .await;
    let mut eventbridge = common::testing::sample("eventbridge.rds-instance-created.json");
    eventbridge["detail"]["SourceArn"] = json!(db_arn(id));
    eventbridge["detail"]["SourceIdentifier"] = json!(id);
    eventbridge["detail"]["Tags"]["crossplane-name"] = json!(id);
    let (outcome, detail) = run(&syncer, &eventbridge).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert!(detail.contains("{claim}"), "{detail}");
    assert_eq!(counter.writes(), 0);
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "applied", "{detail}");
    assert!(detail.contains("apps/team-a/orders/db"), "{detail}");
    counter.assert_all_declared();
}

/// Issue 8: eight concurrent first syncs of one database race to create the same secret and
/// parameters; the losers converge, none reports a permanent failure.
#[tokio::test]
async fn concurrent_first_syncs_converge_without_a_permanent_failure() {
    let sdk = moto_config().await;
    let id = "ss-race";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let event = ready_event(id).to_string();
    let invocation = invocation();
    let runs = (0..8).map(|_| dispatch(&syncer, event.as_bytes(), &invocation, 1));
    let results = futures_util::future::join_all(runs).await;
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Ok(response) => outcomes.push(response["results"][0]["outcome"].as_str().unwrap().to_string()),
            Err(e) => {
                assert_ne!(e.error_type(), "PermanentFailure", "{e}");
                outcomes.push(e.error_type().to_string());
            }
        }
    }
    assert!(outcomes.iter().any(|o| o == "applied"), "{outcomes:?}");
    let (outcome, detail) = run(&syncer, &ready_event(id)).await;
    assert_eq!(outcome, "unchanged", "converged: {detail}");
    assert_eq!(parameters(&format!("/crossplane/team-a/{id}")).await.len(), 8);
    counter.assert_all_declared();
}

/// Issue 13: a write found in AWS leads back to the change that caused it: every target the
/// sync writes names the event in its description.
#[tokio::test]
async fn every_write_names_the_event_that_caused_it() {
    let sdk = moto_config().await;
    let id = "ss-attributed";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let event = ready_event(id);
    let event_id = event["id"].as_str().unwrap().to_string();
    assert_eq!(run(&syncer, &event).await.0, "applied");
    let described = secrets_client()
        .await
        .describe_secret()
        .secret_id(format!("crossplane/team-a/{id}/connection"))
        .send()
        .await
        .unwrap();
    assert!(
        described.description().unwrap_or_default().contains(&event_id),
        "{described:?}"
    );
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let history = ssm
        .get_parameter_history()
        .name(format!("/crossplane/team-a/{id}/host"))
        .send()
        .await
        .unwrap();
    let description = history
        .parameters()
        .last()
        .and_then(|p| p.description())
        .unwrap_or_default();
    assert!(description.contains(&event_id), "{description}");
    counter.assert_all_declared();
}

/// Review: every delivery of one deletion at once (the composition's Invocation, Knative, the
/// exporter arrive together) converges: one schedules the deletion, the others find it done;
/// none fails permanently, and the parameters go too.
#[tokio::test]
async fn concurrent_deletes_of_one_database_converge() {
    let sdk = moto_config().await;
    let id = "ss-concurrent-delete";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(delete_settings(), &counter).await;
    assert_eq!(run(&syncer, &ready_event(id)).await.0, "applied");
    delete_instance(id).await;
    let mut deleted = ready_event(id);
    deleted["tf"] = json!({"action": "delete", "prev_input": null});
    let event = deleted.to_string();
    let invocation = invocation();
    let runs = (0..4).map(|_| dispatch(&syncer, event.as_bytes(), &invocation, 1));
    for result in futures_util::future::join_all(runs).await {
        if let Err(e) = result {
            assert_eq!(e.error_type(), "RetryableFailure", "{e}");
        }
    }
    let (outcome, detail) = run(&syncer, &deleted).await;
    assert_eq!(outcome, "unchanged", "{detail}");
    assert!(!secret_exists_and_is_not_scheduled(&format!("crossplane/team-a/{id}/connection")).await);
    assert!(parameters(&format!("/crossplane/team-a/{id}")).await.is_empty());
    counter.assert_all_declared();
}
