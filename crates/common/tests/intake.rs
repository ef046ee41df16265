//! Every sample in `events/` goes through intake as the shape it is, to the lifecycle it means;
//! every invalid input gets a clear error naming the field or record.

use common::intake::{Intake, read_payload};
use common::model::Lifecycle;
use common::{IntakeError, ResourceEvent};

const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db:orders-db";
const READY_AT: &str = "2026-11-20T09:14:07Z";
const NAMESPACED_SUBJECT: &str = "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/orders-db";

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn direct(name: &str) -> Vec<ResourceEvent> {
    match read_payload(&sample(name)) {
        Ok(Intake::Direct(events)) => events,
        other => panic!("{name}: expected a direct invocation, got {other:?}"),
    }
}

fn one(name: &str) -> ResourceEvent {
    let mut events = direct(name);
    assert_eq!(events.len(), 1, "{name}");
    events.remove(0)
}

fn invalid(name: &str) -> IntakeError {
    read_payload(&sample(name)).expect_err(name)
}

#[test]
fn our_profile_in_both_api_groups() {
    let e = one("ready.namespaced.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.transition_time.as_deref(), Some(READY_AT));
    assert_eq!(e.resource.subject(), NAMESPACED_SUBJECT);
    assert_eq!(e.resource.arn.as_deref(), Some(ARN));
    assert_eq!(e.resource.namespace.as_deref(), Some("team-a"));
    assert_eq!(e.resource.uid.as_deref(), Some("0b6f7c1e-5d2a-4c5e-9a51-2f8e3c4d7a10"));

    let e = one("ready.cluster-scoped.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.resource.group, "rds.aws.upbound.io");
    assert_eq!(e.resource.version, "v1beta3");
    assert_eq!(e.resource.namespace, None);
    assert_eq!(
        e.resource.subject(),
        "/apis/rds.aws.upbound.io/v1beta3/instances/orders-db"
    );
}

#[test]
fn updated_deleted_failed() {
    let e = one("updated.namespaced.json");
    assert_eq!(e.lifecycle, Lifecycle::Updated);
    assert_eq!(
        e.transition_time.as_deref(),
        Some(READY_AT),
        "an update keeps the Ready transition"
    );

    let e = one("deleted.namespaced.json");
    assert_eq!(e.lifecycle, Lifecycle::Deleted);
    assert_eq!(e.transition_time.as_deref(), Some("2026-11-22T08:00:00Z"));

    let e = one("failed.namespaced.json");
    assert_eq!(e.lifecycle, Lifecycle::Failed);
    assert_eq!(e.reason.as_deref(), Some("ReconcileError"));
    assert!(
        e.message
            .as_deref()
            .unwrap_or_default()
            .contains("InvalidParameterCombination")
    );
}

#[test]
fn crossplane_invocation_input() {
    let e = one("invocation.create.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    let e = one("invocation.delete.json");
    assert_eq!(e.lifecycle, Lifecycle::Deleted, "tf.action=delete means deleted");
}

#[test]
fn the_invocation_action_decides_over_the_event_type() {
    // A ready event of a Ready object, in an Invocation whose action is delete: the function
    // is being deleted with its resource, so the signal is the action's, not the type's.
    let mut invocation: serde_json::Value = serde_json::from_slice(&sample("invocation.create.json")).unwrap();
    invocation["tf"]["action"] = "delete".into();
    let events = match read_payload(invocation.to_string().as_bytes()) {
        Ok(Intake::Direct(events)) => events,
        other => panic!("expected a direct invocation, got {other:?}"),
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].lifecycle, Lifecycle::Deleted);
}

#[test]
fn knative_resource_and_ref_modes() {
    let e = one("knative.resource-update.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.transition_time.as_deref(), Some(READY_AT));
    let e = one("knative.ref-add.json");
    assert_eq!(e.lifecycle, Lifecycle::Updated);
    assert!(e.resource.object.is_none(), "a reference carries no object");
    assert_eq!(e.resource.subject(), NAMESPACED_SUBJECT);
}

#[test]
fn argo_events_update_that_became_ready() {
    let e = one("argo-events.update.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.transition_time.as_deref(), Some(READY_AT));
    assert_eq!(e.source, "argo-events");
}

#[test]
fn kubernetes_event_exporter() {
    let e = one("k8s-event-exporter.cannot-update.json");
    assert_eq!(e.lifecycle, Lifecycle::Failed);
    assert_eq!(e.reason.as_deref(), Some("CannotUpdateExternalResource"));
    // The episode's start (firstTimestamp), not its last repetition: the count does not make a
    // new change (issue 9).
    assert_eq!(e.transition_time.as_deref(), Some("2026-11-21T15:02:10Z"));
    assert_eq!(e.resource.subject(), NAMESPACED_SUBJECT);
    let e = one("k8s-event-exporter.created.json");
    assert_eq!(e.lifecycle, Lifecycle::Updated);
}

#[test]
fn eventbridge_rds_events() {
    let e = one("eventbridge.rds-instance-created.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.resource.arn.as_deref(), Some(ARN));
    assert!(
        e.resource.identity_verified,
        "Crossplane's tags name the managed resource"
    );
    assert_eq!(e.resource.subject(), NAMESPACED_SUBJECT);
    assert_eq!(e.reason.as_deref(), Some("RDS-EVENT-0005"));

    let e = one("eventbridge.rds-instance-deleted.json");
    assert_eq!(e.lifecycle, Lifecycle::Deleted);
    assert!(
        !e.resource.identity_verified,
        "no tags: identity comes from the live resource"
    );
    assert_eq!(
        e.resource.external_name.as_deref(),
        Some("orders-db"),
        "rds: prefix removed"
    );
}

#[test]
fn sns_and_json_batches() {
    assert_eq!(one("sns.json").lifecycle, Lifecycle::Ready);
    let events = direct("batch.json");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].resource.group, "rds.aws.upbound.io");
}

#[test]
fn sqs_records_each_on_their_own() {
    let Ok(Intake::Sqs(records)) = read_payload(&sample("sqs.batch.json")) else {
        panic!("not SQS")
    };
    assert_eq!(records.len(), 4);
    let lifecycles: Vec<Lifecycle> = records
        .iter()
        .map(|r| r.events.as_ref().unwrap()[0].lifecycle)
        .collect();
    assert_eq!(
        lifecycles,
        [Lifecycle::Ready, Lifecycle::Ready, Lifecycle::Ready, Lifecycle::Updated]
    );

    let Ok(Intake::Sqs(records)) = read_payload(&sample("sqs.batch-with-invalid-record.json")) else {
        panic!()
    };
    assert!(records[0].events.is_ok() && records[1].events.is_ok());
    let err = records[2].events.as_ref().unwrap_err();
    assert_eq!(err.at, "Records[2].body.id");
    assert!(records[2].message_id.ends_with("05"));
}

#[test]
fn function_url_binary_mode() {
    let Ok(Intake::Http(Ok(events))) = read_payload(&sample("function-url.binary.json")) else {
        panic!()
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].lifecycle, Lifecycle::Ready);
    assert_eq!(events[0].id, "0b6f7c1e-5d2a-4c5e-9a51-2f8e3c4d7a10:3:ready");
}

#[test]
fn function_url_errors_stay_with_the_request() {
    let mut request: serde_json::Value = serde_json::from_slice(&sample("function-url.binary.json")).unwrap();
    request["headers"]["ce-id"] = "".into();
    let Ok(Intake::Http(Err(e))) = read_payload(request.to_string().as_bytes()) else {
        panic!()
    };
    assert_eq!(e.at, "headers.ce-id");
    request["requestContext"]["http"]["method"] = "GET".into();
    let Ok(Intake::Http(Err(e))) = read_payload(request.to_string().as_bytes()) else {
        panic!()
    };
    assert!(e.reason.contains("GET"));
}

#[test]
fn invalid_inputs_say_what_is_wrong() {
    assert!(invalid("invalid/not-json.txt").reason.starts_with("not valid JSON"));
    assert_eq!(invalid("invalid/empty-id.json").at, "id");
    assert_eq!(invalid("invalid/subject-mismatch.json").at, "subject");
    assert_eq!(invalid("invalid/capitalised-extension.json").at, "MyExtension");
    assert_eq!(invalid("invalid/object-without-name.json").at, "data.metadata.name");
}

#[test]
fn malformed_envelopes() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"Records":[{"eventSource":"aws:sqs","body":"{}"}]}"#,
            "Records[0].messageId",
        ),
        (
            r#"{"Records":[{"EventSource":"aws:sns","Sns":{}}]}"#,
            "Records[0].Sns.Message",
        ),
        (
            r#"{"detail-type":"x","source":"aws.rds","detail":{"EventID":"RDS-EVENT-0005","SourceType":"DB_SNAPSHOT","SourceIdentifier":"s"}}"#,
            "detail.SourceType",
        ),
        (
            r#"{"detail-type":"x","source":"custom","detail":{"hello":1}}"#,
            "detail",
        ),
        (
            r#"{"involvedObject":{"kind":"Instance"},"reason":"CreatedExternalResource"}"#,
            "involvedObject.apiVersion",
        ),
        (
            r#"[{"specversion":"1.0","id":"1","source":"s","type":"io.crossplane.managed.exploded","data":{}}]"#,
            "[0].type",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"s","type":"com.example.other","data":{}}"#,
            "type",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"s","type":"io.crossplane.managed.ready"}"#,
            "data",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"s","type":"io.crossplane.managed.ready","data":{},"tf":{"action":"drop"}}"#,
            "tf.action",
        ),
        (r#"42"#, "$"),
        (r#"{"hello":"world"}"#, "$"),
    ];
    for (payload, at) in cases {
        let err = read_payload(payload.as_bytes()).expect_err(payload);
        assert_eq!(err.at, *at, "{payload}: {err}");
    }
}

fn modified(name: &str, change: impl FnOnce(&mut serde_json::Value)) -> Vec<ResourceEvent> {
    let mut value: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
    change(&mut value);
    match read_payload(value.to_string().as_bytes()) {
        Ok(Intake::Direct(events)) => events,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn deletions_from_every_source() {
    let knative = modified("knative.resource-update.json", |v| {
        v["type"] = "dev.knative.apiserver.resource.delete".into()
    });
    assert_eq!(knative[0].lifecycle, Lifecycle::Deleted);
    let knative_ref = modified("knative.ref-add.json", |v| {
        v["type"] = "dev.knative.apiserver.ref.delete".into()
    });
    assert_eq!(knative_ref[0].lifecycle, Lifecycle::Deleted);
    let argo = modified("argo-events.update.json", |v| v["type"] = "DELETE".into());
    assert_eq!(argo[0].lifecycle, Lifecycle::Deleted);
    let exporter = modified("k8s-event-exporter.created.json", |v| {
        v["reason"] = "DeletedExternalResource".into()
    });
    assert_eq!(exporter[0].lifecycle, Lifecycle::Deleted);
}

#[test]
fn rds_cluster_events_and_other_event_ids() {
    let cluster = |code: &str| {
        modified("eventbridge.rds-instance-created.json", |v| {
            v["detail"]["SourceType"] = "CLUSTER".into();
            v["detail"]["EventID"] = code.into();
            v["detail"]["SourceArn"] = serde_json::Value::Null;
            v["detail"]["Tags"]["crossplane-kind"] = "cluster.rds.aws.upbound.io".into();
            v["detail"]["Tags"]
                .as_object_mut()
                .unwrap()
                .remove("crossplane-namespace");
        })
        .remove(0)
    };
    let created = cluster("RDS-EVENT-0170");
    assert_eq!(created.lifecycle, Lifecycle::Ready);
    assert_eq!(
        created.resource.arn.as_deref(),
        Some("arn:aws:rds:us-east-1:123456789012:cluster:orders-db")
    );
    assert_eq!(
        created.resource.subject(),
        "/apis/rds.aws.upbound.io/v1beta2/clusters/orders-db"
    );
    assert_eq!(cluster("RDS-EVENT-0171").lifecycle, Lifecycle::Deleted);
    assert_eq!(cluster("RDS-EVENT-0088").lifecycle, Lifecycle::Observed);
}

#[test]
fn argo_update_without_a_new_transition_is_an_update() {
    let events = modified("argo-events.update.json", |v| v["oldBody"] = v["body"].clone());
    assert_eq!(events[0].lifecycle, Lifecycle::Updated);
    assert_eq!(events[0].transition_time.as_deref(), Some(READY_AT));
}

#[test]
fn kubernetes_events_that_are_not_transitions_are_observed() {
    let events = modified("k8s-event-exporter.created.json", |v| {
        v["reason"] = "ComposeResources".into()
    });
    assert_eq!(events[0].lifecycle, Lifecycle::Observed);
    let normal_cannot = modified("k8s-event-exporter.cannot-update.json", |v| v["type"] = "Normal".into());
    assert_eq!(
        normal_cannot[0].lifecycle,
        Lifecycle::Observed,
        "only warnings mean failure"
    );
}

#[test]
fn structured_http_and_sns_in_sqs() {
    let mut request: serde_json::Value = serde_json::from_slice(&sample("function-url.binary.json")).unwrap();
    let headers = request["headers"].as_object_mut().unwrap();
    headers.retain(|k, _| !k.starts_with("ce-"));
    headers.insert("content-type".into(), "application/cloudevents+json".into());
    request["body"] = String::from_utf8(sample("ready.namespaced.json")).unwrap().into();
    request["isBase64Encoded"] = false.into();
    let Ok(Intake::Http(Ok(events))) = read_payload(request.to_string().as_bytes()) else {
        panic!()
    };
    assert_eq!(events[0].lifecycle, Lifecycle::Ready);

    let notification = serde_json::json!({"Type": "Notification", "Message": String::from_utf8(sample("ready.namespaced.json")).unwrap()});
    let sqs = serde_json::json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": notification.to_string()}]});
    let Ok(Intake::Sqs(records)) = read_payload(sqs.to_string().as_bytes()) else {
        panic!()
    };
    assert_eq!(records[0].events.as_ref().unwrap()[0].lifecycle, Lifecycle::Ready);
}

#[test]
fn rds_cluster_sample() {
    let e = one("ready.rds-cluster.namespaced.json");
    assert_eq!(e.lifecycle, Lifecycle::Ready);
    assert_eq!(e.resource.kind, "Cluster");
    assert_eq!(
        e.resource.subject(),
        "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/clusters/orders-db"
    );
    assert_eq!(
        e.resource.arn.as_deref(),
        Some("arn:aws:rds:us-east-1:123456789012:cluster:orders-db")
    );
}
