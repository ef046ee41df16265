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
}

#[tokio::test]
async fn a_stale_ready_for_a_vanished_instance_does_nothing() {
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = syncer(settings(), &counter).await;
    let (outcome, detail) = run(&syncer, &ready_event("ss-never-existed")).await;
    assert_eq!(outcome, "skipped", "{detail}");
    assert_eq!(counter.writes(), 0);
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
}
