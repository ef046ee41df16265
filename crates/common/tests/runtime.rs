//! The response contract of ARCHITECTURE.md §7 for every transport, and the decision log lines,
//! with a handler whose answers the test decides (no AWS).

use std::time::Duration;

use common::resolve::Scope;
use common::runtime::{Handler, Invocation, Outcome, OutcomeKind, dispatch};
use common::{HandlerError, ResourceEvent};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Answers by the event id: `…retry…` fails retryably, `…perm…` permanently, others apply.
struct ByEventId;

impl Handler for ByEventId {
    fn name(&self) -> &'static str {
        "probe"
    }
    async fn handle(&self, event: &ResourceEvent, _: &Invocation) -> Result<Outcome, HandlerError> {
        if event.id.contains("retry") {
            Err(HandlerError::Retryable("throttled".into()))
        } else if event.id.contains("perm") {
            Err(HandlerError::Permanent("access denied".into()))
        } else {
            Ok(Outcome::new(
                OutcomeKind::Applied,
                Some("arn:aws:rds:us-east-1:1:db:x"),
                "done",
            ))
        }
    }
}

fn invocation() -> Invocation {
    Invocation {
        request_id: "req-1".into(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
        scope: Scope {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        },
        deadline: Instant::now() + Duration::from_secs(10),
        metrics: common::metrics::Metrics::new("probe", "req-1"),
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn with_id(id: &str) -> Value {
    let mut event = sample("ready.namespaced.json");
    event["id"] = json!(id);
    event
}

async fn call(payload: &Value) -> Result<Value, HandlerError> {
    dispatch(&ByEventId, payload.to_string().as_bytes(), &invocation(), 4).await
}

#[tokio::test]
async fn direct_invocation_returns_results() {
    let response = call(&with_id("e-1")).await.unwrap();
    assert_eq!(
        response,
        json!({"handler": "probe", "results": [{"event": "e-1", "resource": "arn:aws:rds:us-east-1:1:db:x",
               "lifecycle": "ready", "outcome": "applied", "detail": "done"}]})
    );
}

#[tokio::test]
async fn a_batch_reports_the_error_that_decides_and_names_every_failed_event() {
    let err = call(&json!([with_id("e-ok"), with_id("e-perm"), with_id("e-retry")]))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RetryableFailure");
    let message = err.message();
    assert!(
        message.contains("event e-perm") && message.contains("event e-retry"),
        "{message}"
    );
    let err = call(&json!([with_id("e-ok"), with_id("e-perm")])).await.unwrap_err();
    assert_eq!(err.error_type(), "PermanentFailure");
}

#[tokio::test]
async fn sqs_reports_only_failed_records() {
    let record = |id: &str, body: &Value| json!({"messageId": id, "eventSource": "aws:sqs", "body": body.to_string()});
    let batch = json!({"Records": [
        record("m1", &with_id("e-ok")),
        record("m2", &with_id("e-retry")),
        record("m3", &json!({"specversion": "1.0"})),
        record("m4", &json!([with_id("e-ok-2"), with_id("e-perm")])),
    ]});
    let response = call(&batch).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}, {"itemIdentifier": "m4"}]})
    );
    let clean = json!({"Records": [record("m1", &with_id("e-ok"))]});
    assert_eq!(call(&clean).await.unwrap(), json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn function_url_status_codes() {
    let mut request = sample("function-url.binary.json");
    let status = |r: &Value| r["statusCode"].as_i64().unwrap();
    let ok = call(&request).await.unwrap();
    assert_eq!(status(&ok), 200);
    let body: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["results"][0]["outcome"], "applied");

    request["headers"]["ce-id"] = json!("e-retry");
    assert_eq!(status(&call(&request).await.unwrap()), 500);
    request["headers"]["ce-id"] = json!("e-perm");
    assert_eq!(status(&call(&request).await.unwrap()), 422);
    request["headers"]["ce-type"] = json!("io.crossplane.managed.exploded");
    let bad = call(&request).await.unwrap();
    assert_eq!(status(&bad), 400);
    let body: Value = serde_json::from_str(bad["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["errorType"], "InvalidEvent");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("headers.ce-type"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_input_is_an_invalid_event_error() {
    let err = dispatch(&ByEventId, b"\xff\xfe not json", &invocation(), 4)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidEvent");
    assert!(err.message().starts_with("$: not valid JSON"), "{}", err.message());
}

#[tokio::test]
async fn one_json_log_line_per_decision_with_event_and_resource() {
    let captured = common::logging::Captured::default();
    let writer = captured.clone();
    common::logging::init_with_writer(writer);
    call(&json!([with_id("log-e1"), with_id("log-e2")])).await.unwrap();
    let text = captured.text();
    let decisions: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .filter(|l| l["message"] == "decision" && l["event"].as_str().is_some_and(|e| e.starts_with("log-")))
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");
    for d in &decisions {
        assert_eq!(d["level"], "INFO");
        assert_eq!(d["resource"], "arn:aws:rds:us-east-1:1:db:x");
        assert_eq!(d["subject"], "Instance/team-a/orders-db");
        assert_eq!(d["outcome"], "applied");
        assert_eq!(d["request_id"], "req-1");
    }
}

/// Issue 13: one invocation's metrics as EMF documents: outcomes and error classes by
/// function × lifecycle × kind, latency in milliseconds, refused payloads; names and units
/// from `metrics::METRICS`, every declared dimension present, no resource name as a dimension.
#[tokio::test]
async fn each_invocation_emits_emf_metrics_by_outcome_and_error_class() {
    use common::metrics::{METRICS, NAMESPACE};
    let invocation = invocation();
    let batch = json!([with_id("ok-1"), with_id("ok-2"), with_id("retry-1"), with_id("perm-1")]);
    let _ = dispatch(&ByEventId, batch.to_string().as_bytes(), &invocation, 4).await;
    let _ = dispatch(&ByEventId, b"not json", &invocation, 4).await;
    let mut out = Vec::new();
    invocation.metrics.write_to(&mut out);
    let docs: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON document per line"))
        .collect();
    for doc in &docs {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        let dimensions = directive["Dimensions"][0].as_array().unwrap();
        assert_eq!(dimensions[0], "Function");
        for dimension in dimensions {
            assert!(doc[dimension.as_str().unwrap()].is_string(), "{doc}");
            assert!(
                [
                    "Function",
                    "Lifecycle",
                    "Kind",
                    "Outcome",
                    "ErrorType",
                    "Operation",
                    "Class"
                ]
                .contains(&dimension.as_str().unwrap()),
                "bounded dimensions only: {doc}"
            );
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            let (_, unit) = METRICS.iter().find(|(n, _)| *n == name).expect("a declared metric");
            assert_eq!(metric["Unit"], unit.as_str());
        }
        assert_eq!(doc["request_id"], "req-1");
    }
    let find = |metric: &str, key: &str, value: &str| {
        docs.iter()
            .find(|d| d.get(metric).is_some() && d[key] == value)
            .unwrap_or_else(|| panic!("{metric} {key}={value} in {docs:?}"))
    };
    let applied = find("Events", "Outcome", "applied");
    assert_eq!(applied["Events"], json!([1.0, 1.0]));
    assert_eq!(
        (applied["Lifecycle"].as_str(), applied["Kind"].as_str()),
        (Some("ready"), Some("Instance.rds"))
    );
    assert_eq!(applied["events"], json!(["ok-1", "ok-2"]), "correlation: the event ids");
    assert_eq!(
        find("EventErrors", "ErrorType", "RetryableFailure")["EventErrors"],
        json!(1.0)
    );
    assert_eq!(
        find("EventErrors", "ErrorType", "PermanentFailure")["EventErrors"],
        json!(1.0)
    );
    assert_eq!(
        find("InvalidPayloads", "Function", "probe")["InvalidPayloads"],
        json!(1.0)
    );
    let latency = find("HandlerLatency", "Lifecycle", "ready");
    assert_eq!(latency["HandlerLatency"].as_array().map(Vec::len), Some(4));
    // Flushed once: nothing is written twice.
    let mut again = Vec::new();
    invocation.metrics.write_to(&mut again);
    assert!(again.is_empty());
}
