//! The CloudEvents specification's own JSON-format conformance cases (copied from
//! cloudevents/conformance, see `data/cloudevents-json/README.md`): every valid case parses,
//! every invalid case is rejected with an error that says where. Run through
//! `intake::structured`, the step every structured event and batch takes in production.

use cloudevents::AttributesReader;
use common::intake::structured;
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
