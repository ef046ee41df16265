//! Test support shared by the functions' integration tests (feature `testing`): the moto
//! configuration, an invocation, the sample events, and RDS resources created as Crossplane's
//! AWS provider creates them.

use std::time::Duration;

use aws_sdk_rds::types::Tag;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::resolve::Scope;
use crate::runtime::Invocation;

/// moto's default account, and the test bed's region.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// The namespace of the sample events.
pub const NAMESPACE: &str = "team-a";

pub fn db_arn(id: &str) -> String {
    format!("arn:aws:rds:{REGION}:{ACCOUNT}:db:{id}")
}

pub fn cluster_arn(id: &str) -> String {
    format!("arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{id}")
}

/// The SDK configuration for moto. Panics with a clear message outside the test bed.
pub async fn moto_config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.starts_with("http://127.0.0.1")),
        "these tests talk to moto on loopback: run them with `make test`"
    );
    crate::aws::load_config().await
}

/// An invocation in moto's account with 30 seconds to go.
pub fn invocation() -> Invocation {
    Invocation {
        request_id: "test".into(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
        scope: Scope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        },
        deadline: Instant::now() + Duration::from_secs(30),
        metrics: crate::metrics::Metrics::new("test", "test"),
    }
}

/// The raw bytes of a sample in `events/`.
pub fn sample_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn sample(name: &str) -> Value {
    serde_json::from_slice(&sample_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The sample ready event (namespaced RDS Instance), about the instance or cluster `id`.
pub fn ready_event(id: &str) -> Value {
    ready_event_in(id, NAMESPACE)
}

/// The sample ready event about the instance `id` of a managed resource in `namespace`.
pub fn ready_event_in(id: &str, namespace: &str) -> Value {
    let mut event = sample("ready.namespaced.json");
    event["id"] = json!(format!("{id}:3:ready"));
    event["subject"] = json!(format!(
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/{namespace}/instances/{id}"
    ));
    let data = &mut event["data"];
    data["metadata"]["name"] = json!(id);
    data["metadata"]["namespace"] = json!(namespace);
    data["metadata"]["annotations"]["crossplane.io/external-name"] = json!(id);
    data["spec"]["forProvider"]["identifier"] = json!(id);
    data["status"]["atProvider"]["arn"] = json!(db_arn(id));
    event
}

/// The same event about a Cluster of the same name.
pub fn cluster_event(id: &str) -> Value {
    let mut event = ready_event(id);
    event["subject"] = json!(format!(
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/{NAMESPACE}/clusters/{id}"
    ));
    event["data"]["kind"] = json!("Cluster");
    event["data"]["status"]["atProvider"]["arn"] = json!(cluster_arn(id));
    event
}

/// Which Crossplane tags the provider put on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    No,
    Namespaced,
    ClusterScoped,
}

fn crossplane_tags(kind: &str, id: &str, namespace: &str, managed: Managed) -> Vec<(String, String)> {
    let tag = |k: &str, v: &str| (k.to_string(), v.to_string());
    match managed {
        Managed::No => vec![],
        Managed::Namespaced => vec![
            tag("crossplane-kind", &format!("{kind}.rds.aws.m.upbound.io")),
            tag("crossplane-name", id),
            tag("crossplane-namespace", namespace),
            tag("crossplane-providerconfig", "default"),
        ],
        Managed::ClusterScoped => vec![
            tag("crossplane-kind", &format!("{kind}.rds.aws.upbound.io")),
            tag("crossplane-name", id),
            tag("crossplane-providerconfig", "default"),
        ],
    }
}

fn rds_tags(pairs: Vec<(String, String)>) -> Option<Vec<Tag>> {
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect(),
    )
}

/// Creates an RDS instance (PostgreSQL, RDS-managed master password) as the provider would.
pub async fn create_instance(sdk: &aws_config::SdkConfig, id: &str, extra: &[(&str, &str)], managed: Managed) {
    create_instance_in(sdk, id, NAMESPACE, extra, managed).await;
}

/// As [`create_instance`], for a managed resource in `namespace`.
pub async fn create_instance_in(
    sdk: &aws_config::SdkConfig,
    id: &str,
    namespace: &str,
    extra: &[(&str, &str)],
    managed: Managed,
) {
    let mut tags = crossplane_tags("instance", id, namespace, managed);
    tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    aws_sdk_rds::Client::new(sdk)
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t4g.micro")
        .engine("postgres")
        .db_name("orders")
        .master_username("orders_admin")
        .manage_master_user_password(true)
        .allocated_storage(20)
        .set_tags(rds_tags(tags))
        .send()
        .await
        .expect("create the RDS instance in moto");
}

/// Deletes an RDS instance (moto removes it at once), as `skipFinalSnapshot` would.
pub async fn delete_instance(sdk: &aws_config::SdkConfig, id: &str) {
    aws_sdk_rds::Client::new(sdk)
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(true)
        .send()
        .await
        .expect("delete the RDS instance in moto");
}

/// Creates an Aurora PostgreSQL cluster as the provider would.
pub async fn create_cluster(sdk: &aws_config::SdkConfig, id: &str, managed: Managed) {
    aws_sdk_rds::Client::new(sdk)
        .create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .database_name("orders")
        .master_username("orders_admin")
        .manage_master_user_password(true)
        .set_tags(rds_tags(crossplane_tags("cluster", id, NAMESPACE, managed)))
        .send()
        .await
        .expect("create the RDS cluster in moto");
}

/// The role template the many-account tests use, as infra/examples/many-accounts sets it.
pub const ROLE_TEMPLATE: &str = "arn:aws:iam::{account}:role/crossplane-lambda-{function}";

/// The moto configuration acting in `account` and `region`: with the credentials of a role
/// assumed there, which moto maps to that account (the role need not exist in moto).
pub async fn assumed_config(account: &str, region: &str) -> aws_config::SdkConfig {
    let home = moto_config().await;
    let role = aws_config::sts::AssumeRoleProvider::builder(format!("arn:aws:iam::{account}:role/test-setup"))
        .session_name("test-setup")
        .configure(&home)
        .build()
        .await;
    home.into_builder()
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(role))
        .build()
}

/// Creates an RDS instance or cluster carrying exactly `tags` (no Crossplane tags of its own).
pub async fn create_database_tagged(sdk: &aws_config::SdkConfig, id: &str, cluster: bool, tags: &[(String, String)]) {
    let rds = aws_sdk_rds::Client::new(sdk);
    let tags = rds_tags(tags.to_vec());
    if cluster {
        rds.create_db_cluster()
            .db_cluster_identifier(id)
            .engine("aurora-postgresql")
            .master_username("admin_user")
            .manage_master_user_password(true)
            .set_tags(tags)
            .send()
            .await
            .expect("create the RDS cluster in moto");
    } else {
        rds.create_db_instance()
            .db_instance_identifier(id)
            .db_instance_class("db.t4g.micro")
            .engine("postgres")
            .master_username("admin_user")
            .manage_master_user_password(true)
            .allocated_storage(20)
            .set_tags(tags)
            .send()
            .await
            .expect("create the RDS instance in moto");
    }
}

/// A request for a table as `infra/` makes them (on-demand, partition key `id`).
fn new_table(
    sdk: &aws_config::SdkConfig,
    name: &str,
) -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
}

/// Creates a DynamoDB table carrying `tags`; returns its ARN.
pub async fn create_table_tagged(sdk: &aws_config::SdkConfig, name: &str, tags: &[(String, String)]) -> String {
    let created = new_table(sdk, name)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| {
                    aws_sdk_dynamodb::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .expect("tag")
                })
                .collect(),
        ))
        .send()
        .await
        .expect("create the DynamoDB table in moto");
    created
        .table_description()
        .and_then(|t| t.table_arn())
        .expect("the table's ARN")
        .to_string()
}

/// Creates a Secrets Manager secret carrying `tags`; returns its ARN.
pub async fn create_secret_tagged(sdk: &aws_config::SdkConfig, name: &str, tags: &[(String, String)]) -> String {
    let created = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string("{}")
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .expect("create the secret in moto");
    created.arn().expect("the secret's ARN").to_string()
}

/// Every tagged resource in the account and region `sdk` acts in, with its tags.
pub async fn tags_by_arn(sdk: &aws_config::SdkConfig) -> std::collections::BTreeMap<String, crate::resolve::Tags> {
    let client = aws_sdk_resourcegroupstagging::Client::new(sdk);
    let mut pages = client.get_resources().into_paginator().send();
    let mut found = std::collections::BTreeMap::new();
    while let Some(page) = pages.next().await {
        for mapping in page.expect("GetResources").resource_tag_mapping_list() {
            let tags = mapping
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            found.insert(mapping.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    found
}

/// Creates the idempotency table as `infra/` does (partition key `id`); an existing one is fine.
pub async fn create_idempotency_table(sdk: &aws_config::SdkConfig, table: &str) {
    let result = new_table(sdk, table).send().await;
    if let Err(e) = result {
        let in_use = e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception());
        assert!(in_use, "create the idempotency table: {e:?}");
    }
}

/// Stores a Slack webhook URL in Secrets Manager, as the platform team would.
pub async fn put_webhook_secret(sdk: &aws_config::SdkConfig, name: &str, url: &str) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(serde_json::json!({ "url": url }).to_string())
        .send()
        .await
        .expect("create the webhook secret");
}

/// What a function declares it calls: its `AWS_OPERATIONS`.
pub type Declared = &'static [(&'static str, &'static [&'static str])];

/// A [`CallCounter`](crate::aws::CallCounter) that refuses every AWS operation the function
/// does not declare (its `AWS_OPERATIONS`, against which the deployment's IAM policy is
/// checked): the undeclared call fails as AWS would fail it without the permission, so a call
/// added to the code without a declaration, and so without a policy change, fails the test
/// that makes it. [`DeclaredCounter::assert_all_declared`] says so explicitly at a test's end.
pub struct DeclaredCounter {
    counter: crate::aws::CallCounter,
    declared: Declared,
}

impl DeclaredCounter {
    pub fn new(declared: Declared) -> Self {
        DeclaredCounter {
            counter: crate::aws::CallCounter::declared_only(declared.iter().map(|(name, _)| *name)),
            declared,
        }
    }

    /// The same, with `faults` injected into every client it is registered on.
    pub fn with_faults(declared: Declared, faults: &Faults) -> Self {
        let mut counter = Self::new(declared);
        counter.counter = counter.counter.with_interceptor(faults.clone());
        counter
    }

    /// The operations seen that are not declared (each was refused when it was made).
    pub fn undeclared(&self) -> Vec<String> {
        self.counter
            .operations_seen()
            .into_iter()
            .filter(|operation| !self.declared.iter().any(|(name, _)| name == operation))
            .collect()
    }

    /// Panics naming every undeclared operation the function tried to call.
    pub fn assert_all_declared(&self) {
        let undeclared = self.undeclared();
        assert!(
            undeclared.is_empty(),
            "called but not declared in AWS_OPERATIONS (and so not in the IAM policy): {undeclared:?}"
        );
    }
}

impl std::ops::Deref for DeclaredCounter {
    type Target = crate::aws::CallCounter;
    fn deref(&self) -> &Self::Target {
        &self.counter
    }
}

/// A fault to inject into an AWS call (see [`Faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// AWS answers `ThrottlingException` (400); the request has no effect.
    Throttle,
    /// AWS answers 500 `InternalServerError`; the request has no effect.
    ServerError,
    /// The request takes effect, but its answer is lost (a reset or timeout after sending):
    /// the call "succeeds without you hearing it".
    LoseResponse,
}

#[derive(Debug, Clone)]
struct FaultRule {
    operation: String,
    skip: u32,
    times: u32,
    fault: Fault,
}

/// The fault decided for this attempt, and whether the service speaks JSON (else XML).
#[derive(Debug, Clone, Copy)]
struct Injected(Fault, bool);

impl aws_smithy_types::config_bag::Storable for Injected {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// An SDK interceptor that makes chosen AWS operations fail: by `Service.Operation` name,
/// after `skip` attempts, for `times` attempts (each SDK retry attempt counts). Register it on
/// a client like the call counter (`sdk_client!` takes it through [`Faults::counter`]).
///
/// `Throttle` and `ServerError` keep the request from taking effect (JSON-protocol services
/// such as DynamoDB, SSM, Secrets Manager: the request is sent as an unknown operation);
/// on query-protocol services (RDS) inject them into reads only.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: std::sync::Arc<std::sync::Mutex<Vec<FaultRule>>>,
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `operation` (e.g. `DynamoDB.UpdateItem`) fail with `fault` for `times` attempts
    /// after `skip` attempts that go through.
    pub fn inject(&self, operation: &str, skip: u32, times: u32, fault: Fault) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(FaultRule {
                operation: operation.to_string(),
                skip,
                times,
                fault,
            });
        }
    }

    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// The fault for this attempt of `operation`, if any, counting the attempt.
    fn decide(&self, operation: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().ok()?;
        let rule = rules.iter_mut().find(|r| r.operation == operation && r.times > 0)?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.times -= 1;
        Some(rule.fault)
    }
}

fn operation_name(cfg: &aws_smithy_types::config_bag::ConfigBag) -> String {
    use aws_smithy_runtime_api::client::orchestrator::Metadata;
    cfg.load::<Metadata>()
        .map(|m| format!("{}.{}", m.service(), m.name()))
        .unwrap_or_default()
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Faults {
    fn name(&self) -> &'static str {
        "Faults"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(fault) = self.decide(&operation_name(cfg)) else {
            return Ok(());
        };
        let headers = context.request_mut().headers_mut();
        let target = headers.get("x-amz-target").map(str::to_string);
        if let Some(target) = &target
            && matches!(fault, Fault::Throttle | Fault::ServerError)
        {
            let service = target.split('.').next().unwrap_or_default().to_string();
            headers.insert("x-amz-target", format!("{service}.InjectedFaultNoSuchOperation"));
        }
        cfg.interceptor_state().store_put(Injected(fault, target.is_some()));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(Injected(fault, json)) = cfg.load::<Injected>().copied() else {
            return Ok(());
        };
        cfg.interceptor_state().unset::<Injected>();
        let (status, code) = match fault {
            Fault::LoseResponse => return Err("connection reset after the request was sent (injected)".into()),
            Fault::Throttle => (400, "ThrottlingException"),
            Fault::ServerError => (500, "InternalServerError"),
        };
        let response = context.response_mut();
        let body = if json {
            format!(r#"{{"__type":"{code}","message":"injected fault"}}"#)
        } else {
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>injected fault</Message></Error><RequestId>injected</RequestId></ErrorResponse>",
                if code == "ThrottlingException" {
                    "Throttling"
                } else {
                    code
                }
            )
        };
        *response.status_mut() = status
            .try_into()
            .map_err(|_| aws_smithy_runtime_api::box_error::BoxError::from("bad status"))?;
        response.headers_mut().insert("x-amzn-errortype", code);
        response.headers_mut().insert(
            "content-type",
            if json { "application/x-amz-json-1.0" } else { "text/xml" },
        );
        *response.body_mut() = aws_smithy_types::body::SdkBody::from(body);
        Ok(())
    }
}

/// `DescribeDBInstances` → `describe_db_instances`: the SDK's method name for an operation.
pub fn method_name(operation: &str) -> String {
    let chars: Vec<char> = operation.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        let boundary = c.is_uppercase()
            && previous.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
        if boundary {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The other direction of [`DeclaredCounter`]: every declared operation is called somewhere in
/// the given sources (`.describe_db_instances()`), so the declaration, and the IAM policy
/// checked against it, grants nothing the code no longer calls.
pub fn assert_declared_operations_are_called(declared: Declared, sources: &[&str]) {
    for (operation, _) in declared {
        let name = operation.rsplit('.').next().unwrap_or(operation);
        let call = format!(".{}()", method_name(name));
        assert!(
            sources.iter().any(|source| source.contains(&call)),
            "{operation} is declared in AWS_OPERATIONS but the code never calls {call}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::DeclaredCounter;

    /// A client nobody answers: the declared call fails to connect, the undeclared one is
    /// refused before it is sent.
    fn rds_client(counter: &crate::aws::CallCounter) -> aws_sdk_rds::Client {
        let config = aws_sdk_rds::Config::builder()
            .behavior_version(aws_sdk_rds::config::BehaviorVersion::latest())
            .region(aws_sdk_rds::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_rds::config::Credentials::new("a", "b", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_sdk_rds::config::retry::RetryConfig::disabled())
            .interceptor(counter.clone())
            .build();
        aws_sdk_rds::Client::from_conf(config)
    }

    #[tokio::test]
    async fn an_undeclared_call_fails_and_is_named() {
        const DECLARED: super::Declared = &[("RDS.DescribeDBInstances", &["rds:DescribeDBInstances"])];
        let counter = DeclaredCounter::new(DECLARED);
        let client = rds_client(&counter);
        let declared = client.describe_db_instances().send().await.unwrap_err();
        assert!(!format!("{declared:?}").contains("not declared"), "{declared:?}");
        let undeclared = client
            .delete_db_instance()
            .db_instance_identifier("x")
            .send()
            .await
            .unwrap_err();
        assert!(
            format!("{undeclared:?}").contains("RDS.DeleteDBInstance is not declared"),
            "{undeclared:?}"
        );
        assert_eq!(counter.undeclared(), vec!["RDS.DeleteDBInstance".to_string()]);
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| counter.assert_all_declared()));
        assert!(check.is_err(), "the explicit check fails too");
    }

    #[test]
    fn method_names() {
        assert_eq!(super::method_name("DescribeDBInstances"), "describe_db_instances");
        assert_eq!(super::method_name("GetParametersByPath"), "get_parameters_by_path");
        assert_eq!(super::method_name("ListTagsForResource"), "list_tags_for_resource");
        assert_eq!(super::method_name("PutItem"), "put_item");
    }
}
