//! EventBridge: an `aws_lambda_events` [`EventBridgeEvent`]. An `aws.rds` event is adapted
//! ([`adapters::rds_event`]), and so is Secrets Manager's `RotationSucceeded`
//! ([`adapters::rotation_event`]); any other source carries one of our shapes in `detail` (a rule
//! forwarding CloudEvents, an SNS notification, …).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::{Map, Value};

use super::{adapters, shapes, typed};
use crate::error::IntakeError;
use crate::model::ResourceEvent;

/// The `source` of RDS's own events.
pub(super) const RDS_SOURCE: &str = "aws.rds";
/// The `source` of Secrets Manager's events (CloudTrail's, for rotation).
pub(super) const SECRETS_MANAGER_SOURCE: &str = "aws.secretsmanager";

/// An EventBridge event, as EventBridge delivers it to a target.
pub(super) fn is_event(object: &Map<String, Value>) -> bool {
    object.contains_key("detail-type") && object.contains_key("detail")
}

/// EventBridge's own scheduled event (a `Rule` with a schedule expression): a sweep.
pub(super) fn is_scheduled(object: &Map<String, Value>) -> bool {
    object.get("source").and_then(Value::as_str) == Some("aws.events")
        && object.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

pub(super) fn events(value: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    let event: EventBridgeEvent = typed(value)?;
    if event.source == RDS_SOURCE {
        return adapters::rds_event(event).map(|e| vec![e]);
    }
    if event.source == SECRETS_MANAGER_SOURCE {
        return adapters::rotation_event(event).map(|e| vec![e]);
    }
    shapes::events_from_value(event.detail).map_err(|e| e.within("detail"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::intake::{Intake, read_value};
    use crate::model::Lifecycle;

    fn direct(payload: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
        match read_value(payload)? {
            Intake::Direct(events) => Ok(events),
            other => panic!("not direct: {other:?}"),
        }
    }

    fn envelope(source: &str, detail: Value) -> Value {
        json!({
            "version": "0", "id": "7bf73129", "detail-type": "x", "source": source,
            "account": "123456789012", "time": "2026-11-20T09:14:05Z", "region": "us-east-1",
            "resources": [], "detail": detail
        })
    }

    #[test]
    fn an_event_is_recognised_by_its_detail_type_and_detail() {
        let both = json!({"detail-type": "x", "detail": {}});
        assert!(is_event(both.as_object().unwrap()));
        assert!(!is_event(json!({"detail": {}}).as_object().unwrap()));
        assert!(!is_event(json!({"detail-type": "x"}).as_object().unwrap()));
    }

    #[test]
    fn a_forwarded_cloudevent_and_an_rds_event() {
        let ready = crate::intake::ready_cloudevent("e1", "db");
        let events = direct(envelope("custom.crossplane", ready)).unwrap();
        assert_eq!(events[0].lifecycle, Lifecycle::Ready);
        let rds = json!({"EventID": "RDS-EVENT-0005", "SourceType": "DB_INSTANCE", "SourceIdentifier": "rds:db-1"});
        let events = direct(envelope("aws.rds", rds)).unwrap();
        assert_eq!(events[0].lifecycle, Lifecycle::Ready);
        assert_eq!(events[0].id, "7bf73129");
        assert_eq!(events[0].time.as_deref(), Some("2026-11-20T09:14:05Z"));
        assert_eq!(
            events[0].resource.arn.as_deref(),
            Some("arn:aws:rds:us-east-1:123456789012:db:db-1")
        );
        assert!(!events[0].resource.identity_verified);
    }

    #[test]
    fn a_secrets_manager_rotation_is_adapted_and_other_sources_are_not() {
        let detail = json!({"eventName": "RotationSucceeded",
                            "additionalEventData": {"SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1"}});
        let events = direct(envelope("aws.secretsmanager", detail.clone())).unwrap();
        assert_eq!(
            events[0].rotated_secret.as_deref(),
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1")
        );
        // The same detail from another source is read as one of our shapes, and is none.
        assert!(direct(envelope("custom.crossplane", detail)).is_err());
    }

    #[test]
    fn malformed_events_name_the_field() {
        let rds = |detail: Value| envelope("aws.rds", detail);
        let cases = [
            (json!({"detail-type": "x", "source": 5, "detail": {}}), "source"),
            (json!({"detail-type": 5, "source": "s", "detail": {}}), "detail-type"),
            (
                json!({"detail-type": "x", "source": "s", "detail": {}, "time": "yesterday"}),
                "time",
            ),
            (
                json!({"detail-type": "x", "source": "s", "detail": [{"a": 1}]}),
                "detail[0]",
            ),
            (rds(json!("text")), "detail"),
            (
                rds(json!({"SourceType": "DB_INSTANCE", "SourceIdentifier": "db"})),
                "detail.EventID",
            ),
            (
                rds(json!({"EventID": 5, "SourceType": "DB_INSTANCE", "SourceIdentifier": "db"})),
                "detail.EventID",
            ),
            (
                rds(json!({"EventID": "RDS-EVENT-0005", "SourceType": "DB_INSTANCE"})),
                "detail.SourceIdentifier",
            ),
            (
                rds(json!({"EventID": "RDS-EVENT-0005", "SourceType": "DB_INSTANCE", "SourceIdentifier": "rds:"})),
                "detail.SourceIdentifier",
            ),
            (
                rds(json!({"EventID": "RDS-EVENT-0005", "SourceIdentifier": "db"})),
                "detail.SourceType",
            ),
            (
                rds(
                    json!({"EventID": "RDS-EVENT-0005", "SourceType": "DB_INSTANCE", "SourceIdentifier": "db", "Tags": {"crossplane-name": 1}}),
                ),
                "detail.Tags.crossplane-name",
            ),
        ];
        for (payload, at) in cases {
            let err = direct(payload.clone()).unwrap_err();
            assert_eq!(err.at, at, "{payload}: {err}");
        }
    }
}
