//! CloudEvents 1.0 in structured JSON mode, validated exactly as the specification says.
//!
//! `cloudevents-sdk` parses the format, but accepts some events the specification forbids
//! (empty `id`/`type`/`source`/`subject`, a `datacontenttype` that is not RFC 2046,
//! extension names that are not lower-case alphanumerics). [`parse_event`] checks those
//! first, on the raw JSON, then lets the SDK do the rest (time format, spec version, types).
//! The specification's own conformance cases live in `tests/data/cloudevents-json`.

use cloudevents::Event;
use serde_json::{Map, Value};

use crate::error::IntakeError;

/// The context attributes the specification defines; every other member is an extension.
const CORE_MEMBERS: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// Parses one CloudEvent in structured JSON mode, from a borrowed value (a copy is parsed).
pub fn parse_event(value: &Value) -> Result<Event, IntakeError> {
    parse_owned(value.clone())
}

/// Parses one CloudEvent in structured JSON mode, taking the value: the production path, which
/// moves the event's `data` into the [`Event`] instead of copying it.
pub fn parse_owned(value: Value) -> Result<Event, IntakeError> {
    let object = value.as_object().ok_or_else(|| {
        IntakeError::new(
            "$",
            format!("a CloudEvent must be a JSON object, found {}", json_kind(&value)),
        )
    })?;
    check_attributes(object)?;
    serde_json::from_value::<Event>(value)
        .map_err(|e| IntakeError::new("$", format!("not a valid CloudEvent 1.0: {e}")))
}

/// The checks the SDK leaves out, done on the raw JSON object.
fn check_attributes(object: &Map<String, Value>) -> Result<(), IntakeError> {
    match object.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(Value::String(v)) if v.is_empty() => {
            return Err(IntakeError::new("specversion", "is empty"));
        }
        Some(Value::String(v)) => {
            return Err(IntakeError::new(
                "specversion",
                format!("unsupported version {v:?}, expected \"1.0\""),
            ));
        }
        Some(other) => {
            return Err(IntakeError::new(
                "specversion",
                format!("must be a string, found {}", json_kind(other)),
            ));
        }
        None => return Err(IntakeError::new("specversion", "is missing")),
    }
    for name in ["id", "source", "type"] {
        required_string(object, name)?;
    }
    for name in ["subject", "dataschema", "datacontenttype", "time"] {
        optional_string(object, name)?;
    }
    if let Some(Value::String(content_type)) = object.get("datacontenttype") {
        check_media_type(content_type)?;
    }
    if object.get("data").is_some_and(|d| !d.is_null()) && object.get("data_base64").is_some_and(|d| !d.is_null()) {
        return Err(IntakeError::new(
            "data_base64",
            "an event may carry `data` or `data_base64`, not both",
        ));
    }
    for (name, value) in object {
        if CORE_MEMBERS.contains(&name.as_str()) {
            continue;
        }
        check_extension(name, value)?;
    }
    Ok(())
}

fn required_string<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, IntakeError> {
    match object.get(name) {
        Some(Value::String(s)) if s.is_empty() => {
            Err(IntakeError::new(name, "is empty; it must be a non-empty string"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(IntakeError::new(
            name,
            format!("must be a string, found {}", json_kind(other)),
        )),
        None => Err(IntakeError::new(name, "is missing")),
    }
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Result<(), IntakeError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Err(IntakeError::new(name, "is empty; omit it or give a value")),
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(IntakeError::new(
            name,
            format!("must be a string, found {}", json_kind(other)),
        )),
    }
}

/// RFC 2046 media type: `type "/" subtype *(";" parameter)`, each a token.
pub fn check_media_type(content_type: &str) -> Result<(), IntakeError> {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let valid = essence
        .split_once('/')
        .is_some_and(|(ty, sub)| is_token(ty) && is_token(sub));
    if valid {
        Ok(())
    } else {
        Err(IntakeError::new(
            "datacontenttype",
            format!("{content_type:?} is not an RFC 2046 media type (type/subtype)"),
        ))
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

/// Extension names are lower-case ASCII letters and digits; values are strings, booleans
/// or 32-bit integers (the CloudEvents type system).
fn check_extension(name: &str, value: &Value) -> Result<(), IntakeError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(IntakeError::new(
            name,
            "is not a valid extension attribute name (only lower-case letters a-z and digits 0-9)",
        ));
    }
    match value {
        Value::Null | Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => Ok(()),
        Value::Number(n) => Err(IntakeError::new(
            name,
            format!("extension value {n} is not a 32-bit integer"),
        )),
        other => Err(IntakeError::new(
            name,
            format!(
                "extension values must be strings, booleans or integers, found {}",
                json_kind(other)
            ),
        )),
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field_that_is_wrong() {
        let e = parse_event(&json!({"specversion":"1.0","id":"","type":"t","source":"s"})).unwrap_err();
        assert_eq!(e.at, "id");
        let e = parse_event(&json!({"specversion":"1.0","id":"1","type":"t","source":"s","Bad":"x"})).unwrap_err();
        assert_eq!(e.at, "Bad");
        let e = parse_event(&json!({"specversion":"1.0","id":"1","type":"t","source":"s","ext":2147483648_i64}))
            .unwrap_err();
        assert!(e.reason.contains("32-bit"), "{e}");
        let e = parse_event(&json!(["x"])).unwrap_err();
        assert!(e.reason.contains("JSON object"), "{e}");
    }

    fn event_with(name: &str, value: Value) -> Value {
        let mut event = json!({"specversion": "1.0", "id": "1", "type": "t", "source": "s"});
        event[name] = value;
        event
    }

    fn refusal(event: Value) -> IntakeError {
        match parse_event(&event) {
            Ok(parsed) => panic!("accepted {event}: {parsed:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn only_spec_version_1_0_is_accepted() {
        assert!(parse_event(&event_with("specversion", json!("1.0"))).is_ok());
        let e = refusal(event_with("specversion", json!("0.3")));
        assert_eq!(
            (e.at.as_str(), e.reason.as_str()),
            ("specversion", "unsupported version \"0.3\", expected \"1.0\"")
        );
        let e = refusal(event_with("specversion", json!("")));
        assert_eq!((e.at.as_str(), e.reason.as_str()), ("specversion", "is empty"));
        let e = refusal(event_with("specversion", json!(1.0)));
        assert_eq!(e.reason, "must be a string, found a number");
        let mut missing = event_with("id", json!("1"));
        missing.as_object_mut().map(|o| o.remove("specversion"));
        assert_eq!(refusal(missing).reason, "is missing");
    }

    #[test]
    fn required_attributes_are_non_empty_strings() {
        for name in ["id", "source", "type"] {
            let e = refusal(event_with(name, json!("")));
            assert_eq!(
                (e.at.as_str(), e.reason.as_str()),
                (name, "is empty; it must be a non-empty string")
            );
            let e = refusal(event_with(name, json!(7)));
            assert_eq!(e.reason, "must be a string, found a number");
        }
    }

    #[test]
    fn optional_attributes_are_absent_null_or_non_empty_strings() {
        for name in ["subject", "dataschema", "datacontenttype", "time"] {
            let e = refusal(event_with(name, json!("")));
            assert_eq!(
                (e.at.as_str(), e.reason.as_str()),
                (name, "is empty; omit it or give a value")
            );
            let e = refusal(event_with(name, json!(true)));
            assert_eq!(e.reason, "must be a string, found a boolean");
            assert!(
                parse_event(&event_with(name, Value::Null)).is_ok(),
                "{name}: null is absent"
            );
        }
        assert!(parse_event(&event_with("subject", json!("rds.aws.upbound.io/v1beta1/instances/x"))).is_ok());
        let e = refusal(event_with("datacontenttype", json!("json")));
        assert_eq!(e.at, "datacontenttype");
    }

    #[test]
    fn data_and_data_base64_are_exclusive() {
        let mut event = event_with("data", json!({"a": 1}));
        event["data_base64"] = json!("eyJhIjoxfQ==");
        assert_eq!(refusal(event.clone()).at, "data_base64");
        event["data"] = Value::Null;
        let e = refusal(event);
        assert_ne!(e.at, "data_base64", "a null `data` is no data: {e}");
        assert!(parse_event(&event_with("data_base64", json!("eyJhIjoxfQ=="))).is_ok());
    }

    #[test]
    fn extension_values_follow_the_type_system() {
        for fine in [
            json!("x"),
            json!(true),
            Value::Null,
            json!(2147483647),
            json!(-2147483648),
        ] {
            assert!(parse_event(&event_with("ext1", fine.clone())).is_ok(), "{fine}");
        }
        let e = refusal(event_with("ext", json!(["x"])));
        assert_eq!(
            e.reason,
            "extension values must be strings, booleans or integers, found an array"
        );
        let e = refusal(event_with("ext", json!({"a": 1})));
        assert!(e.reason.ends_with("found an object"), "{e}");
        assert!(refusal(event_with("ext", json!(1.5))).reason.contains("32-bit"));
        assert_eq!(refusal(event_with("ext-1", json!("x"))).at, "ext-1");
        assert_eq!(
            refusal(json!(null)).reason,
            "a CloudEvent must be a JSON object, found null"
        );
    }

    #[test]
    fn media_types() {
        assert!(check_media_type("application/json").is_ok());
        assert!(check_media_type("application/cloudevents+json; charset=utf-8").is_ok());
        assert!(check_media_type("xyz").is_err());
        assert!(check_media_type("/json").is_err());
        assert!(check_media_type("text/").is_err());
    }
}
