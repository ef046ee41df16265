//! SQS: `{"Records": [...]}` whose records say `eventSource: aws:sqs`. Each record is an
//! `aws_lambda_events` [`SqsMessage`]; its body is any shape [`shapes`](super::shapes) knows
//! (including an SNS notification delivered without raw message delivery). A record is read on
//! its own: a bad body fails that record only, which the batch answer reports by its
//! `messageId` (ARCHITECTURE.md §7). A record without a `messageId` cannot be reported, so it
//! makes the whole payload unusable.

use aws_lambda_events::sqs::SqsMessage;
use serde::Deserialize;
use serde_json::Value;

use super::{SqsRecord, shapes, typed};
use crate::error::IntakeError;
use crate::model::ResourceEvent;

/// The `eventSource` of an SQS record.
pub(super) const EVENT_SOURCE: &str = "aws:sqs";

/// The one field read before the record itself, so that a record whose other fields are
/// malformed can still be reported as failed by its id.
#[derive(Deserialize)]
struct MessageId {
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
}

pub(super) fn records(records: Vec<Value>) -> Result<Vec<SqsRecord>, IntakeError> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let at = format!("Records[{i}]");
            let MessageId { message_id } = typed(&record).map_err(|e| e.within(&at))?;
            let message_id = message_id
                .filter(|id| !id.is_empty())
                .ok_or_else(|| IntakeError::new(format!("{at}.messageId"), "is missing or empty"))?;
            Ok(SqsRecord {
                message_id,
                events: record_events(record).map_err(|e| e.within(&at)),
            })
        })
        .collect()
}

/// The events of one record's body; errors are named from the record (`body.subject`).
fn record_events(record: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    let message: SqsMessage = typed(record)?;
    let body = message
        .body
        .ok_or_else(|| IntakeError::new("body", "is missing or not a string"))?;
    let body = super::parse_json(body.as_bytes(), "body")?;
    shapes::events_from_value(body).map_err(|e| e.within("body"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::intake::{Intake, read_value};
    use crate::model::Lifecycle;

    fn ready() -> Value {
        crate::intake::ready_cloudevent("e1", "db")
    }

    fn sqs(records: Value) -> Vec<SqsRecord> {
        match read_value(json!({ "Records": records })) {
            Ok(Intake::Sqs(records)) => records,
            other => panic!("not SQS: {other:?}"),
        }
    }

    #[test]
    fn a_good_record() {
        let records = sqs(json!([{
            "messageId": "m1", "receiptHandle": "r", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "body": ready().to_string()
        }]));
        assert_eq!(records[0].message_id, "m1");
        let events = records[0].events.as_ref().unwrap();
        assert_eq!(events[0].lifecycle, Lifecycle::Ready);
    }

    #[test]
    fn a_malformed_record_fails_alone_naming_the_field() {
        let mut wrong_subject = ready();
        wrong_subject["subject"] = json!("/apis/rds.aws.upbound.io/v1beta3/instances/other");
        let records = sqs(json!([
            {"messageId": "m1", "eventSource": "aws:sqs", "body": ready().to_string()},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": 7},
            {"messageId": "m3", "eventSource": "aws:sqs"},
            {"messageId": "m4", "eventSource": "aws:sqs", "body": "{"},
            {"messageId": "m5", "eventSource": "aws:sqs", "body": wrong_subject.to_string()},
            {"messageId": "m6", "eventSource": "aws:sqs", "body": "{}", "attributes": {"a": 1}},
        ]));
        assert!(records[0].events.is_ok());
        let at = |i: usize| records[i].events.as_ref().unwrap_err().at.clone();
        assert_eq!(at(1), "Records[1].body");
        assert_eq!(at(2), "Records[2].body");
        assert_eq!(at(3), "Records[3].body");
        assert_eq!(at(4), "Records[4].body.subject");
        assert_eq!(at(5), "Records[5].attributes.a");
        assert_eq!(records[5].message_id, "m6");
    }

    #[test]
    fn a_record_without_an_id_spoils_the_payload() {
        for record in [
            json!({"eventSource": "aws:sqs", "body": "{}"}),
            json!({"eventSource": "aws:sqs", "messageId": "", "body": "{}"}),
            json!({"eventSource": "aws:sqs", "messageId": 5, "body": "{}"}),
        ] {
            let err =
                read_value(json!({"Records": [{"messageId": "m0", "eventSource": "aws:sqs", "body": "{}"}, record]}))
                    .unwrap_err();
            assert_eq!(err.at, "Records[1].messageId", "{err}");
        }
    }
}
