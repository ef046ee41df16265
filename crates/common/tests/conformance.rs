//! The CloudEvents specification's own JSON-format conformance cases (copied from
//! cloudevents/conformance, see `data/cloudevents-json/README.md`): every valid case parses,
//! every invalid case is rejected with an error that says where. Run through
//! `intake::structured`, the step every structured event and batch takes in production, and
//! through `intake::read_payload`, the entry the runtime calls: production validates every case
//! as the suite does, and refuses a valid one only for our profile (no managed resource).

use cloudevents::AttributesReader;
use common::IntakeError;
use common::intake::{Intake, read_payload, structured};
use serde_json::Value;

fn cases(file: &str) -> Vec<(String, Value)> {
    let path = format!("{}/tests/data/cloudevents-json/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let payload = t.get("event").or_else(|| t.get("batch")).unwrap().clone();
            (t["id"].as_str().unwrap().to_string(), payload)
        })
        .collect()
}

#[test]
fn every_valid_event_parses() {
    let cases = cases("valid-events.json");
    assert_eq!(cases.len(), 10);
    for (id, event) in cases {
        let parsed = structured(&event).unwrap_or_else(|e| panic!("{id} was rejected: {e}"));
        assert_eq!(Some(parsed[0].event.id()), event["id"].as_str(), "{id}");
    }
}

#[test]
fn every_invalid_event_is_rejected() {
    let cases = cases("invalid-events.json");
    assert_eq!(cases.len(), 25);
    for (id, event) in cases {
        let err = structured(&event).expect_err(&format!("{id} was accepted"));
        assert!(!err.at.is_empty() && !err.reason.is_empty(), "{id}: {err:?}");
    }
}

#[test]
fn every_valid_batch_parses() {
    let cases = cases("valid-batches.json");
    assert_eq!(cases.len(), 5);
    for (id, batch) in cases {
        let expected = batch.as_array().unwrap().len();
        let parsed = structured(&batch).unwrap_or_else(|e| panic!("{id} was rejected: {e}"));
        assert_eq!(parsed.len(), expected, "{id}");
    }
}

#[test]
fn every_invalid_batch_is_rejected() {
    let cases = cases("invalid-batches.json");
    assert_eq!(cases.len(), 3);
    for (id, batch) in cases {
        let err = structured(&batch).expect_err(&format!("{id} was accepted"));
        assert!(err.at.starts_with('['), "{id}: the error names the member: {err:?}");
    }
}

/// The specification's invalid cases that the SDK alone accepts are rejected by name.
#[test]
fn the_checks_the_sdk_leaves_out() {
    let expect = [
        ("invalidEmptyId", "id"),
        ("invalidEmptyType", "type"),
        ("invalidEmptySource", "source"),
        ("invalidEmptySubject", "subject"),
        ("invalidNonRfc2046DataContentType", "datacontenttype"),
        ("invalidEmptyDataContentType", "datacontenttype"),
        ("invalidCapitalizedExtension", "MyExtension"),
        ("invalidPunctuatedExtension", "my.extension"),
    ];
    let cases = cases("invalid-events.json");
    for (id, at) in expect {
        let event = &cases.iter().find(|(case, _)| case == id).unwrap().1;
        assert_eq!(structured(event).unwrap_err().at, at, "{id}");
    }
}

/// A case as production receives it: the raw payload through `read_payload`, the entry the
/// runtime calls for every invocation.
fn production(payload: &Value) -> Result<Intake, IntakeError> {
    read_payload(payload.to_string().as_bytes())
}

/// Whether an error comes from our profile (the step after CloudEvents validation): the spec's
/// sample events carry no managed resource (`data`) and a type this suite does not handle.
fn refused_by_our_profile(err: &IntakeError) -> bool {
    let field = err.at.rsplit(['.', ']']).next().unwrap_or_default();
    let reason = err.reason.as_str();
    match field {
        "type" => {
            reason.ends_with("is not one this suite handles") || reason.contains("is not a lifecycle of our profile")
        }
        "data" | "data_base64" => {
            reason.starts_with("is missing: the event must carry")
                || reason.starts_with("must be JSON")
                || reason.starts_with("must decode to JSON")
        }
        _ => false,
    }
}

#[test]
fn production_accepts_every_valid_event_as_a_cloudevent() {
    for (id, event) in cases("valid-events.json") {
        let err = production(&event).expect_err(&id);
        assert!(refused_by_our_profile(&err), "{id}: refused before our profile: {err}");
    }
    for (id, batch) in cases("valid-batches.json") {
        match production(&batch) {
            Ok(Intake::Direct(events)) => assert!(events.is_empty(), "{id}"),
            Ok(other) => panic!("{id}: {other:?}"),
            Err(err) => assert!(refused_by_our_profile(&err), "{id}: refused before our profile: {err}"),
        }
    }
}

#[test]
fn production_rejects_every_invalid_event_as_the_suite_does() {
    let is_cloudevent = |v: &Value| v.get("specversion").is_some();
    for (id, event) in cases("invalid-events.json") {
        let err = production(&event).expect_err(&format!("{id} was accepted"));
        if is_cloudevent(&event) {
            assert_eq!(Err(err), structured(&event).map(|_| ()), "{id}");
        } else {
            assert_eq!(err.at, "$", "{id}: not a CloudEvent at all: {err}");
        }
    }
    for (id, batch) in cases("invalid-batches.json") {
        let err = production(&batch).expect_err(&format!("{id} was accepted"));
        assert!(err.at.starts_with('['), "{id}: the error names the member: {err:?}");
        if batch
            .as_array()
            .is_some_and(|members| members.iter().all(is_cloudevent))
        {
            assert_eq!(Err(err), structured(&batch).map(|_| ()), "{id}");
        }
    }
}
