//! HTTP requests from a Lambda Function URL or API Gateway v2 (payload format 2.0):
//! CloudEvents in binary mode (`ce-*` headers) or structured mode, or any other shape as body.
//!
//! The request is typed here with the fields intake reads rather than with `aws_lambda_events`'
//! `ApiGatewayV2httpRequest`, whose rules differ from what is accepted today: it requires
//! `requestContext.http.method` (a request without it is taken as `POST`), its `HeaderMap`
//! accepts a list of values where a header must be one string, refuses values with control
//! characters, and names neither the header nor the problem in its error.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{shapes, typed};
use crate::cloudevent;
use crate::error::IntakeError;
use crate::model::ResourceEvent;

pub(crate) fn is_http_request(value: &Value) -> bool {
    value.get("requestContext").is_some_and(Value::is_object)
        && (value.get("rawPath").is_some() || value.get("routeKey").is_some() || value.get("headers").is_some())
}

/// What intake reads of a request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    request_context: RequestContext,
    /// Header names as sent; [`headers`] lower-cases them.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
}

#[derive(Default, Deserialize)]
struct RequestContext {
    #[serde(default)]
    http: Option<HttpDescription>,
}

#[derive(Deserialize)]
struct HttpDescription {
    #[serde(default)]
    method: Option<String>,
}

pub(crate) fn events_from_request(request: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    let request: Request = typed(request)?;
    let method = request
        .request_context
        .http
        .and_then(|http| http.method)
        .unwrap_or_else(|| "POST".to_string());
    if !method.eq_ignore_ascii_case("POST") {
        return Err(IntakeError::new(
            "requestContext.http.method",
            format!("{method} is not allowed; send POST"),
        ));
    }
    let headers = headers(request.headers);
    let body = body(request.body, request.is_base64_encoded == Some(true))?;
    let content_type = headers
        .get("content-type")
        .map(|ct| ct.to_ascii_lowercase())
        .unwrap_or_default();
    if headers.contains_key("ce-specversion") {
        return binary_mode(&headers, &body).map(|e| vec![e]);
    }
    let value = super::parse_json(&body, "body")?;
    if content_type.starts_with("application/cloudevents+json") && !value.is_object() {
        return Err(IntakeError::new(
            "body",
            "structured mode carries one CloudEvent object",
        ));
    }
    if content_type.starts_with("application/cloudevents-batch+json") && !value.is_array() {
        return Err(IntakeError::new(
            "body",
            "batch mode carries a JSON array of CloudEvents",
        ));
    }
    shapes::events_from_value(value).map_err(|e| e.within("body"))
}

/// Header names are case-insensitive: keep them lower-cased.
fn headers(headers: Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    headers
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

fn body(text: Option<String>, base64: bool) -> Result<Vec<u8>, IntakeError> {
    let text = text.ok_or_else(|| IntakeError::new("body", "is missing"))?;
    if base64 {
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| {
            IntakeError::new(
                "body",
                format!("isBase64Encoded is true but the body is not base64: {e}"),
            )
        })
    } else {
        Ok(text.into_bytes())
    }
}

/// CloudEvents HTTP binding, binary mode: attributes in `ce-*` headers (percent-encoded),
/// `content-type` is `datacontenttype`, the body is the data.
fn binary_mode(headers: &BTreeMap<String, String>, body: &[u8]) -> Result<ResourceEvent, IntakeError> {
    let mut event = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        let decoded = percent_decode(value).map_err(|reason| IntakeError::new(format!("headers.{name}"), reason))?;
        event.insert(attribute.to_string(), Value::String(decoded));
    }
    let content_type = headers.get("content-type");
    if let Some(content_type) = content_type {
        event.insert("datacontenttype".into(), Value::String(content_type.to_string()));
    }
    let json = content_type.is_none_or(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
    });
    let data = if json {
        super::parse_json(body, "body")?
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    event.insert("data".into(), data);
    let event = cloudevent::parse_owned(Value::Object(event)).map_err(binary_location)?;
    shapes::from_cloudevent(event, None).map_err(binary_location)
}

/// Names an error in binary mode where the sender put the value: `data…` is the body,
/// `datacontenttype` the `content-type` header, any other attribute its `ce-` header.
fn binary_location(mut error: IntakeError) -> IntakeError {
    error.at = if let Some(rest) = error.at.strip_prefix("data.") {
        format!("body.{rest}")
    } else if error.at == "data" || error.at == "data_base64" {
        "body".to_string()
    } else if error.at == "datacontenttype" {
        "headers.content-type".to_string()
    } else if error.at == "$" {
        "headers".to_string()
    } else {
        format!("headers.ce-{}", error.at)
    };
    error
}

fn percent_decode(value: &str) -> Result<String, String> {
    let hex_digit = |byte: Option<u8>| byte.and_then(|b| char::from(b).to_digit(16));
    let mut bytes = value.bytes();
    let mut out = Vec::with_capacity(value.len());
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let (high, low) = (hex_digit(bytes.next()), hex_digit(bytes.next()));
            let byte = high
                .zip(low)
                .and_then(|(high, low)| u8::try_from(high * 16 + low).ok())
                .ok_or("has a broken %-escape")?;
            out.push(byte);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 after %-decoding".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::intake::{Intake, read_value};
    use crate::model::Lifecycle;

    fn ready() -> String {
        crate::intake::ready_cloudevent("e1", "db").to_string()
    }

    fn request(change: impl FnOnce(&mut Value)) -> Result<Vec<ResourceEvent>, IntakeError> {
        let mut request = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/",
            "headers": {"Content-Type": "application/cloudevents+json"},
            "requestContext": {"http": {"method": "POST", "path": "/"}, "timeEpoch": 1},
            "body": ready(), "isBase64Encoded": false
        });
        change(&mut request);
        match read_value(request) {
            Ok(Intake::Http(result)) => result,
            other => panic!("not HTTP: {other:?}"),
        }
    }

    #[test]
    fn a_good_request() {
        assert_eq!(request(|_| {}).unwrap()[0].lifecycle, Lifecycle::Ready);
        let encoded = base64::engine::general_purpose::STANDARD.encode(ready());
        let events = request(|r| {
            r["body"] = encoded.into();
            r["isBase64Encoded"] = true.into();
        });
        assert_eq!(events.unwrap()[0].lifecycle, Lifecycle::Ready);
        // Without requestContext.http (or its method) a request is taken as POST, as before.
        let events = request(|r| r["requestContext"] = json!({}));
        assert_eq!(events.unwrap()[0].lifecycle, Lifecycle::Ready);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        type Change = Box<dyn FnOnce(&mut Value)>;
        let cases: [(Change, &str); 10] = [
            (Box::new(|r| r["headers"]["X-A"] = json!(1)), "headers.X-A"),
            (Box::new(|r| r["headers"]["x-b"] = json!(["a", "b"])), "headers.x-b"),
            (Box::new(|r| r["headers"] = json!("text/plain")), "headers"),
            (Box::new(|r| r["body"] = json!({"a": 1})), "body"),
            (Box::new(|r| r["body"] = Value::Null), "body"),
            (Box::new(|r| r["body"] = json!("{")), "body"),
            (Box::new(|r| r["body"] = json!("[]")), "body"),
            (
                Box::new(|r| {
                    r["body"] = json!("%%%");
                    r["isBase64Encoded"] = true.into();
                }),
                "body",
            ),
            (Box::new(|r| r["isBase64Encoded"] = json!("yes")), "isBase64Encoded"),
            (
                Box::new(|r| r["requestContext"]["http"]["method"] = json!("PUT")),
                "requestContext.http.method",
            ),
        ];
        for (change, at) in cases {
            let err = request(change).unwrap_err();
            assert_eq!(err.at, at, "{err}");
        }
        let err = request(|r| r["body"] = json!(ready().replace("\"id\":\"e1\"", "\"id\":\"\""))).unwrap_err();
        assert_eq!(err.at, "body.id", "{err}");
    }

    #[test]
    fn a_request_is_recognised_by_its_context_and_any_of_path_route_or_headers() {
        let context = json!({"http": {"method": "POST"}});
        for (member, value) in [
            ("rawPath", json!("/")),
            ("routeKey", json!("$default")),
            ("headers", json!({})),
        ] {
            let mut request = json!({"requestContext": context, "body": ready()});
            request[member] = value;
            assert!(is_http_request(&request), "requestContext and {member}");
            request.as_object_mut().unwrap().remove("requestContext");
            assert!(!is_http_request(&request), "{member} without requestContext");
        }
        assert!(!is_http_request(&json!({"requestContext": context, "body": ready()})));
    }

    #[test]
    fn a_batch_content_type_carries_an_array() {
        let batch = format!("[{}]", ready());
        let events = request(|r| {
            r["headers"]["Content-Type"] = "application/cloudevents-batch+json".into();
            r["body"] = batch.into();
        });
        assert_eq!(events.unwrap().len(), 1);
        let err = request(|r| r["headers"]["Content-Type"] = "application/cloudevents-batch+json".into()).unwrap_err();
        assert_eq!(
            (err.at.as_str(), err.reason.as_str()),
            ("body", "batch mode carries a JSON array of CloudEvents")
        );
    }

    fn binary(content_type: &str, body: &str) -> Result<Vec<ResourceEvent>, IntakeError> {
        request(|r| {
            r["headers"] = json!({"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "s",
                                  "ce-type": "io.crossplane.managed.ready", "content-type": content_type});
            r["body"] = body.into();
        })
    }

    #[test]
    fn binary_mode_reads_every_json_media_type_as_json() {
        let data = json!({"apiVersion": "rds.aws.upbound.io/v1beta3", "kind": "Instance", "name": "db"}).to_string();
        for content_type in [
            "application/json",
            "application/json; charset=utf-8",
            "text/json",
            "application/vnd.x+json",
        ] {
            let events = binary(content_type, &data).unwrap_or_else(|e| panic!("{content_type}: {e}"));
            assert_eq!(events[0].lifecycle, Lifecycle::Ready, "{content_type}");
            let err = binary(content_type, "{").unwrap_err();
            assert_eq!(err.at, "body", "{err}");
            assert!(
                err.reason.starts_with("not valid JSON"),
                "{content_type}: parsed as JSON: {err}"
            );
        }
        // Other media types are text, which our profile refuses as data unless it holds JSON;
        // the error names the body, where the sender put it.
        let err = binary("text/plain", "{").unwrap_err();
        assert_eq!(err.at, "body", "{err}");
        assert!(err.reason.starts_with("must be JSON"), "{err}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%C3%A9").unwrap(), "a bé");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("%FF").is_err());
    }
}
