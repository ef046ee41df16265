//! Intake: from the raw payload a function received to [`ResourceEvent`]s.
//!
//! Everything is recognised by its shape, with no configuration (ARCHITECTURE.md §2):
//! transport envelopes (SQS, SNS, EventBridge, Function URL / API Gateway v2 HTTP requests),
//! CloudEvents in structured mode (single, batch, Crossplane `Invocation` input with `tf`) or
//! binary HTTP mode, and the non-CloudEvent Crossplane shapes adapted in [`adapters`].
//! Intake makes no AWS call: bad input is rejected before any side effect.

pub mod adapters;
mod http;
mod shapes;

pub use shapes::{Structured, structured};

use serde_json::Value;

use crate::error::IntakeError;
use crate::model::ResourceEvent;

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
    let value = parse_json(raw, "$")?;
    read_value(&value)
}

/// As [`read_payload`], for a payload already parsed.
pub fn read_value(value: &Value) -> Result<Intake, IntakeError> {
    if let Some(records) = value.get("Records") {
        return read_records(records);
    }
    if http::is_http_request(value) {
        return Ok(Intake::Http(http::events_from_request(value)));
    }
    shapes::events_from_value(value).map(Intake::Direct)
}

fn read_records(records: &Value) -> Result<Intake, IntakeError> {
    let records = records
        .as_array()
        .ok_or_else(|| IntakeError::new("Records", "must be an array"))?;
    let first = records.first().ok_or_else(|| IntakeError::new("Records", "is empty"))?;
    if first.get("eventSource").and_then(Value::as_str) == Some("aws:sqs") {
        let items = records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let at = format!("Records[{i}]");
                let message_id = record
                    .get("messageId")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| IntakeError::new(format!("{at}.messageId"), "is missing or empty"))?;
                let events = record
                    .get("body")
                    .and_then(Value::as_str)
                    .ok_or_else(|| IntakeError::new("body", "is missing or not a string"))
                    .and_then(|body| parse_json(body.as_bytes(), "body"))
                    .and_then(|body| shapes::events_from_value(&body).map_err(|e| e.within("body")))
                    .map_err(|e| e.within(&at));
                Ok(SqsRecord {
                    message_id: message_id.to_string(),
                    events,
                })
            })
            .collect::<Result<Vec<_>, IntakeError>>()?;
        return Ok(Intake::Sqs(items));
    }
    if first.get("EventSource").and_then(Value::as_str) == Some("aws:sns") {
        let mut events = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let at = format!("Records[{i}].Sns.Message");
            let message = record
                .pointer("/Sns/Message")
                .and_then(Value::as_str)
                .ok_or_else(|| IntakeError::new(&at, "is missing or not a string"))?;
            let message = parse_json(message.as_bytes(), &at)?;
            events.extend(shapes::events_from_value(&message).map_err(|e| e.within(&at))?);
        }
        return Ok(Intake::Direct(events));
    }
    Err(IntakeError::new(
        "Records[0]",
        "is neither an SQS record (eventSource aws:sqs) nor an SNS record (EventSource aws:sns)",
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_json_too_large_or_too_deep() {
        let e = read_payload(b"hello").unwrap_err();
        assert!(e.reason.starts_with("not valid JSON"), "{e}");
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = read_payload(deep.as_bytes()).unwrap_err();
        assert!(e.reason.contains("nested deeper"), "{e}");
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(read_payload(&big).unwrap_err().reason.contains("exceeds the limit"));
        // Brackets inside strings do not count.
        let text = format!("{{\"a\":\"{}\"}}", "[".repeat(200));
        assert!(check_depth(text.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_records_are_refused() {
        let e = read_payload(br#"{"Records":[{"eventSource":"aws:s3"}]}"#).unwrap_err();
        assert_eq!(e.at, "Records[0]");
        assert_eq!(read_payload(br#"{"Records":[]}"#).unwrap_err().reason, "is empty");
    }
}
