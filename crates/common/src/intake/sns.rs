//! SNS: one notification, one path, whichever way it arrives: as a Lambda SNS record
//! (`Records[i].Sns`, `EventSource: aws:sns`), or as the JSON document SNS delivers to an SQS
//! queue or an HTTP endpoint without raw message delivery (`{"Type": "Notification", …}`).
//! Its `Message` is any shape [`shapes`](super::shapes) knows.
//!
//! The notification is typed here with the one field intake reads rather than with
//! `aws_lambda_events`' `SnsRecord` / `SnsMessage`: those require `EventVersion`,
//! `EventSubscriptionArn`, `MessageId`, `TopicArn`, a parseable `Timestamp`, the signature
//! fields and `UnsubscribeUrl`, none of which intake uses, and notifications without them are
//! accepted (and their errors named at `Records[i].Sns.Message`) as they always were.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{shapes, typed};
use crate::error::IntakeError;
use crate::model::ResourceEvent;

/// The `EventSource` of an SNS record.
pub(super) const EVENT_SOURCE: &str = "aws:sns";

/// An SNS notification: what intake reads of it.
#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// A Lambda SNS record.
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "Sns", default)]
    sns: Option<Notification>,
}

/// An SNS notification delivered as a document (to SQS or HTTP, without raw message delivery).
pub(super) fn is_notification(object: &Map<String, Value>) -> bool {
    object.get("Type").is_some_and(|ty| ty == "Notification") && object.contains_key("Message")
}

/// The notification document of [`is_notification`].
pub(super) fn notification(value: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    let Notification { message } = typed(value)?;
    message_events(message)
}

/// Lambda SNS records; any bad record makes the whole invocation invalid (SNS retries it whole).
pub(super) fn records(records: Vec<Value>) -> Result<Vec<ResourceEvent>, IntakeError> {
    let mut events = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let at = format!("Records[{i}]");
        let Record { sns } = typed(record).map_err(|e| e.within(&at))?;
        let message = sns.and_then(|notification| notification.message);
        events.extend(message_events(message).map_err(|e| e.within(&format!("{at}.Sns")))?);
    }
    Ok(events)
}

/// The one SNS path: the notification's `Message`, parsed and read as any shape.
fn message_events(message: Option<String>) -> Result<Vec<ResourceEvent>, IntakeError> {
    let message = message.ok_or_else(|| IntakeError::new("Message", "is missing or not a string"))?;
    let message = super::parse_json(message.as_bytes(), "Message")?;
    shapes::events_from_value(message).map_err(|e| e.within("Message"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::intake::{Intake, read_value};
    use crate::model::Lifecycle;

    fn ready(name: &str) -> String {
        crate::intake::ready_cloudevent(name, name).to_string()
    }

    fn direct(payload: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
        match read_value(payload)? {
            Intake::Direct(events) => Ok(events),
            other => panic!("not direct: {other:?}"),
        }
    }

    #[test]
    fn a_notification_document_has_its_type_and_its_message() {
        let object = |v: Value| v.as_object().cloned().unwrap();
        assert!(is_notification(&object(
            json!({"Type": "Notification", "Message": "{}"})
        )));
        assert!(!is_notification(&object(json!({"Type": "Notification"}))), "no message");
        assert!(!is_notification(&object(
            json!({"Type": "SubscriptionConfirmation", "Message": "{}"})
        )));
        assert!(!is_notification(&object(json!({"Message": "{}"}))), "no type");
    }

    #[test]
    fn records_and_documents_take_one_path() {
        let record =
            |message: String| json!({"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": message}});
        let events = direct(json!({"Records": [record(ready("a")), record(ready("b"))]})).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].resource.name, "b");
        let events = direct(json!({"Type": "Notification", "MessageId": "x", "Message": ready("c")})).unwrap();
        assert_eq!(events[0].lifecycle, Lifecycle::Ready);
        assert_eq!(events[0].resource.name, "c");
    }

    #[test]
    fn malformed_notifications_name_the_field() {
        let record = |sns: Value| json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": ready("a")}}, {"EventSource": "aws:sns", "Sns": sns}]});
        let cases = [
            (record(json!({})), "Records[1].Sns.Message"),
            (record(json!({"Message": 3})), "Records[1].Sns.Message"),
            (record(json!({"Message": "{"})), "Records[1].Sns.Message"),
            (
                record(json!({"Message": "{\"specversion\":\"1.0\"}"})),
                "Records[1].Sns.Message.id",
            ),
            (record(json!("text")), "Records[1].Sns"),
            (
                json!({"Records": [{"EventSource": "aws:sns"}]}),
                "Records[0].Sns.Message",
            ),
            (json!({"Type": "Notification", "Message": 3}), "Message"),
            (json!({"Type": "Notification", "Message": "[1]"}), "Message[0]"),
        ];
        for (payload, at) in cases {
            let err = direct(payload.clone()).unwrap_err();
            assert_eq!(err.at, at, "{payload}: {err}");
        }
    }
}
