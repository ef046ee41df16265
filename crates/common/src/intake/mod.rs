//! Intake: from the raw payload a function received to [`ResourceEvent`]s.
//!
//! Everything is recognised by its shape, with no configuration (ARCHITECTURE.md §2):
//! transport envelopes, one per file ([`sqs`], [`sns`], [`eventbridge`], [`http`]: Function URL /
//! API Gateway v2), CloudEvents in structured mode (single, batch, Crossplane `Invocation` input
//! with `tf`, in [`shapes`]) or binary HTTP mode, and the non-CloudEvent Crossplane shapes
//! adapted in [`adapters`]. Envelopes are deserialised into types ([`typed`]), so an error names
//! its field path (`Records[2].body.subject`). The payload is parsed once and each step takes
//! ownership of its part: no object is copied on the way to its [`ResourceEvent`].
//! Intake makes no AWS call: bad input is rejected before any side effect.

pub mod adapters;
mod eventbridge;
mod http;
mod shapes;
mod sns;
mod sqs;

pub use shapes::{Structured, structured};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::IntakeError;
use crate::model::ResourceEvent;
use crate::sweep::SweepRequest;

/// Lambda's own limit on a synchronous invocation payload.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Deeper nesting than this is no Kubernetes object we know of: refuse it before parsing.
pub const MAX_DEPTH: usize = 64;

/// What arrived, by transport; each transport answers in its own way (ARCHITECTURE.md §7).
#[derive(Debug)]
pub enum Intake {
    /// A direct invocation (CloudEvent, batch, Invocation input, EventBridge, SNS, …).
    Direct(Vec<ResourceEvent>),
    /// An SQS batch: each record succeeds or fails on its own.
    Sqs(Vec<SqsRecord>),
    /// A Function URL or API Gateway v2 request: answered with an HTTP status.
    Http(Result<Vec<ResourceEvent>, IntakeError>),
    /// A sweep (ARCHITECTURE.md §12): `{"sweep": {…}}`, or EventBridge's `Scheduled Event`.
    Sweep(SweepRequest),
}

/// One SQS record and what its body held.
#[derive(Debug)]
pub struct SqsRecord {
    pub message_id: String,
    pub events: Result<Vec<ResourceEvent>, IntakeError>,
}

/// Reads a raw payload. An error here means the whole payload is unusable (not JSON, too large,
/// too deep, or an envelope that is itself malformed); errors inside one SQS record or one HTTP
/// request are kept with that record or request instead, so the rest is still handled.
pub fn read_payload(raw: &[u8]) -> Result<Intake, IntakeError> {
    read_value(parse_json(raw, "$")?)
}

/// As [`read_payload`], for a payload already parsed.
pub fn read_value(value: Value) -> Result<Intake, IntakeError> {
    if value.get("Records").is_some() {
        return read_records(value);
    }
    if http::is_http_request(&value) {
        return Ok(Intake::Http(http::events_from_request(value)));
    }
    if let Some(request) = sweep_request(&value) {
        return request.map(Intake::Sweep);
    }
    shapes::events_from_value(value).map(Intake::Direct)
}

/// A sweep request, if the payload is one: an object whose only field is `sweep`, or a scheduled
/// EventBridge event (a `Rule` with a schedule expression sends one, whatever its input).
fn sweep_request(value: &Value) -> Option<Result<SweepRequest, IntakeError>> {
    let object = value.as_object()?;
    if eventbridge::is_scheduled(object) {
        return Some(Ok(SweepRequest::default()));
    }
    match (object.len(), object.get("sweep")) {
        (1, Some(sweep)) => Some(SweepRequest::from_value(sweep.clone())),
        _ => None,
    }
}

/// `{"Records": [...]}`: the first record's source says whose records they are.
#[derive(Deserialize)]
struct Records {
    #[serde(rename = "Records")]
    records: Vec<Value>,
}

fn read_records(value: Value) -> Result<Intake, IntakeError> {
    let Records { records } = typed(value)?;
    let first = records.first().ok_or_else(|| IntakeError::new("Records", "is empty"))?;
    if first
        .get("eventSource")
        .is_some_and(|source| source == sqs::EVENT_SOURCE)
    {
        return sqs::records(records).map(Intake::Sqs);
    }
    if first
        .get("EventSource")
        .is_some_and(|source| source == sns::EVENT_SOURCE)
    {
        return sns::records(records).map(Intake::Direct);
    }
    Err(IntakeError::new(
        "Records[0]",
        "is neither an SQS record (eventSource aws:sqs) nor an SNS record (EventSource aws:sns)",
    ))
}

/// Deserialises a typed envelope (or part of one), naming the field path of any error:
/// `Records[2].messageId`, `detail.SourceType`, `$` for the value itself. The caller places the
/// path inside its own with [`IntakeError::within`].
pub(crate) fn typed<'de, T, D>(deserializer: D) -> Result<T, IntakeError>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let at = if path == "." { "$".to_string() } else { path };
        IntakeError::new(at, error.into_inner().to_string())
    })
}

/// Parses JSON after the size and depth checks, naming `at` in any error.
pub fn parse_json(raw: &[u8], at: &str) -> Result<Value, IntakeError> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        return Err(IntakeError::new(
            at,
            format!(
                "payload of {} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes",
                raw.len()
            ),
        ));
    }
    check_depth(raw).map_err(|reason| IntakeError::new(at, reason))?;
    serde_json::from_slice(raw).map_err(|e| IntakeError::new(at, format!("not valid JSON: {e}")))
}

/// Counts `{`/`[` nesting outside strings, so a hostile payload is refused before it is parsed.
fn check_depth(raw: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A `ready` CloudEvent of our profile for a reference to the instance `name`: what the
/// envelopes' tests wrap.
#[cfg(test)]
pub(crate) fn ready_cloudevent(id: &str, name: &str) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "s", "type": "io.crossplane.managed.ready",
        "data": {"apiVersion": "rds.aws.upbound.io/v1beta3", "kind": "Instance", "name": name}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_its_own_payload_or_a_scheduled_event() {
        let sweep = |payload: Value| match read_value(payload) {
            Ok(Intake::Sweep(request)) => Some(request),
            _ => None,
        };
        use serde_json::json;
        assert_eq!(sweep(json!({"sweep": {}})), Some(SweepRequest::default()));
        let scheduled = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
                               "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
                               "resources": [], "detail": {}});
        assert_eq!(sweep(scheduled.clone()), Some(SweepRequest::default()));
        // Anything else is not a sweep: another field beside it, another detail-type or source.
        assert_eq!(sweep(json!({"sweep": {}, "id": "x"})), None);
        let mut other = scheduled.clone();
        other["detail-type"] = json!("Something Else");
        assert_eq!(sweep(other), None);
        let mut other = scheduled;
        other["source"] = json!("custom.scheduler");
        assert_eq!(sweep(other), None);
        // A malformed sweep names its field.
        let error = read_value(json!({"sweep": {"continuation": 5}})).unwrap_err();
        assert!(error.to_string().contains("sweep"), "{error}");
    }

    #[test]
    fn refuses_what_is_not_json_too_large_or_too_deep() {
        let e = read_payload(b"hello").unwrap_err();
        assert!(e.reason.starts_with("not valid JSON"), "{e}");
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = read_payload(deep.as_bytes()).unwrap_err();
        assert!(e.reason.contains("nested deeper"), "{e}");
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(read_payload(&big).unwrap_err().reason.contains("exceeds the limit"));
        // Lambda's own limit, 6 MiB, is not refused for its size (only for not being JSON).
        let at_limit = vec![b' '; 6 * 1024 * 1024];
        assert!(
            read_payload(&at_limit)
                .unwrap_err()
                .reason
                .starts_with("not valid JSON")
        );
        // Brackets inside strings do not count, also after an escaped quote or backslash.
        let text = format!("{{\"a\":\"{}\"}}", "[".repeat(200));
        assert!(check_depth(text.as_bytes()).is_ok());
        let escaped = format!(r#"{{"a":"\"\\{}"}}"#, "[".repeat(200));
        assert!(check_depth(escaped.as_bytes()).is_ok(), "{escaped}");
        // Exactly the limit is fine; one more level is not.
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_depth(at_limit.as_bytes()).is_ok());
        // Outside strings they do, also after a string has ended.
        let after_string = format!(r#"{{"a":"x","b":{}{}}}"#, "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(
            check_depth(after_string.as_bytes())
                .unwrap_err()
                .contains("nested deeper")
        );
    }

    #[test]
    fn unknown_records_are_refused() {
        let e = read_payload(br#"{"Records":[{"eventSource":"aws:s3"}]}"#).unwrap_err();
        assert_eq!(e.at, "Records[0]");
        assert_eq!(read_payload(br#"{"Records":[]}"#).unwrap_err().reason, "is empty");
        let e = read_payload(br#"{"Records":{"eventSource":"aws:sqs"}}"#).unwrap_err();
        assert_eq!(e.at, "Records", "{e}");
    }

    #[test]
    fn typed_names_the_path() {
        #[derive(Debug, Deserialize)]
        struct Inner {
            #[allow(dead_code)]
            name: String,
        }
        #[derive(Debug, Deserialize)]
        struct Outer {
            #[allow(dead_code)]
            items: Vec<Inner>,
        }
        let value = serde_json::json!({"items": [{"name": "a"}, {"name": 1}]});
        let e = typed::<Outer, _>(value).unwrap_err();
        assert_eq!(e.at, "items[1].name");
        assert!(e.reason.contains("expected a string"), "{e}");
        let e = typed::<Outer, _>(serde_json::json!(42)).unwrap_err();
        assert_eq!(e.at, "$");
        assert_eq!(e.within("Records[0]").at, "Records[0]");
    }
}
