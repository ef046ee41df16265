//! The non-CloudEvent Crossplane shapes (ARCHITECTURE.md §2), adapted into events of our profile:
//! Knative ApiServerSource, Argo Events resource events, kubernetes-event-exporter events and
//! EventBridge `aws.rds` events. The shapes that name a resource without carrying its object
//! (exporter events, `aws.rds`) build the [`ManagedResource`] directly.

use std::collections::BTreeMap;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::eventbridge::RDS_SOURCE;
use super::typed;
use crate::error::IntakeError;
use crate::kinds;
use crate::model::{EXTERNAL_NAME_ANNOTATION, Lifecycle, ManagedResource, ProfileEvent, ResourceEvent, Signal};

pub const KNATIVE_PREFIX: &str = "dev.knative.apiserver.";

pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Knative ApiServerSource: `resource.{add,update,delete}` carries the object,
/// `ref.{add,update,delete}` a reference `{apiVersion, kind, name, namespace}`.
pub(crate) fn knative(
    id: &str,
    source: String,
    time: Option<String>,
    action: &str,
    data: Value,
) -> Result<ProfileEvent, IntakeError> {
    let (mode, verb) = action.split_once('.').unwrap_or((action, ""));
    let signal = match verb {
        "delete" => Signal::Delete,
        "add" | "update" => Signal::Upsert,
        _ => {
            return Err(IntakeError::new(
                "type",
                format!("unknown Knative ApiServerSource event {action:?}"),
            ));
        }
    };
    if !matches!(mode, "resource" | "ref") {
        return Err(IntakeError::new(
            "type",
            format!("unknown Knative ApiServerSource mode {mode:?}"),
        ));
    }
    // Knative's subject follows its own path rules; ours is derived from the object instead.
    Ok(ProfileEvent {
        id: id.to_string(),
        source,
        subject: None,
        time,
        signal,
        data,
    })
}

pub(crate) fn is_argo_resource_event(value: &Value) -> bool {
    matches!(
        value.get("type").and_then(Value::as_str),
        Some("ADD" | "UPDATE" | "DELETE")
    ) && value.get("body").is_some_and(Value::is_object)
}

/// Argo Events resource event source: `{type: ADD|UPDATE|DELETE, body, oldBody, group, version, resource}`.
/// `envelope` gives the id, source and time of a CloudEvent that carried it. The `body` is
/// taken, not copied.
pub(crate) fn argo_resource_event(
    mut value: Value,
    envelope: Option<(&str, String, Option<String>)>,
) -> Result<ProfileEvent, IntakeError> {
    let body = value.get_mut("body").map(Value::take).unwrap_or(Value::Null);
    let ty = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let signal = match ty {
        "DELETE" => Signal::Delete,
        // An update that keeps the same Ready transition is a change, not a new readiness.
        "UPDATE"
            if ready_since(&body).is_some() && ready_since(&body) == value.get("oldBody").and_then(ready_since) =>
        {
            Signal::Stated(Lifecycle::Updated)
        }
        _ => Signal::Upsert,
    };
    let (id, source, time) = match envelope {
        Some((id, source, time)) => (id.to_string(), source, time),
        None => {
            let meta = |field: &str| body.pointer(&format!("/metadata/{field}")).and_then(Value::as_str);
            let uid = meta("uid").ok_or_else(|| IntakeError::new("body.metadata.uid", "is missing"))?;
            let version = meta("resourceVersion").unwrap_or("0");
            (
                format!("{uid}:{version}:{}", ty.to_ascii_lowercase()),
                "argo-events".to_string(),
                None,
            )
        }
    };
    Ok(ProfileEvent {
        id,
        source,
        subject: None,
        time,
        signal,
        data: body,
    })
}

fn ready_since(object: &Value) -> Option<&str> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))?
        .get("lastTransitionTime")?
        .as_str()
}

/// kubernetes-event-exporter `EnhancedEvent`: a core/v1 Event about a managed resource.
pub(crate) fn kubernetes_event(event: &Map<String, Value>) -> Result<ResourceEvent, IntakeError> {
    let involved = event
        .get("involvedObject")
        .filter(|o| o.is_object())
        .ok_or_else(|| IntakeError::new("involvedObject", "must be an object naming the managed resource"))?;
    let reason = event.get("reason").and_then(Value::as_str).unwrap_or_default();
    let warning = event.get("type").and_then(Value::as_str) == Some("Warning");
    let lifecycle = match reason {
        "DeletedExternalResource" => Lifecycle::Deleted,
        "CreatedExternalResource" | "UpdatedExternalResource" => Lifecycle::Updated,
        r if warning && r.starts_with("Cannot") => Lifecycle::Failed,
        _ => Lifecycle::Observed,
    };
    // No conditions in this partial resource: the event's reason decides the lifecycle.
    let resource = ManagedResource::from_involved_object(involved).map_err(|e| e.within("involvedObject"))?;
    // When the episode began: a repeated event keeps its first time (its count and last time
    // grow with every repetition); `eventTime` is the first time of the events.k8s.io/v1 form.
    let time = ["firstTimestamp", "eventTime", "lastTimestamp"]
        .iter()
        .find_map(|f| event.get(*f).and_then(Value::as_str).filter(|t| !t.is_empty()))
        .map(str::to_string);
    let uid = event
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("event");
    let count = event.get("count").and_then(Value::as_u64).unwrap_or(1);
    let component = event
        .get("source")
        .and_then(|s| s.get("component"))
        .and_then(Value::as_str)
        .or_else(|| event.get("reportingComponent").and_then(Value::as_str))
        .unwrap_or("kubernetes");
    let message = event.get("message").and_then(Value::as_str).map(str::to_string);
    let mut resource_event = ResourceEvent::from_resource(
        format!("{uid}:{count}"),
        format!("k8s-events/{component}"),
        time,
        Signal::Stated(lifecycle),
        resource,
    );
    resource_event.reason = Some(reason.to_string()).filter(|r| !r.is_empty());
    resource_event.message = message;
    Ok(resource_event)
}

/// The `detail` of an EventBridge `aws.rds` event: what intake reads of it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RdsDetail {
    #[serde(rename = "EventID", default)]
    event_id: Option<String>,
    #[serde(default)]
    source_identifier: Option<String>,
    #[serde(default)]
    source_type: Option<String>,
    #[serde(default)]
    source_arn: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    date: Option<String>,
}

/// EventBridge `aws.rds` events (`RDS DB Instance Event`, `RDS DB Cluster Event`).
/// Crossplane's tags in `detail.Tags` lead back to the managed resource; without them the
/// identity is read from the live resource's tags during resolution. The managed resource is
/// built directly: an AWS event carries no Kubernetes object.
pub(crate) fn rds_event(envelope: EventBridgeEvent) -> Result<ResourceEvent, IntakeError> {
    let detail: RdsDetail = typed(envelope.detail).map_err(|e| e.within("detail"))?;
    let event_id = detail
        .event_id
        .ok_or_else(|| IntakeError::new("detail.EventID", "is missing"))?;
    // Some producers put the documentation URL in EventID: keep the RDS-EVENT-NNNN part.
    let event_code = event_id.rsplit(['#', '/']).next().unwrap_or(&event_id).to_string();
    let identifier = detail
        .source_identifier
        .map(|id| id.strip_prefix("rds:").map(str::to_string).unwrap_or(id))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| IntakeError::new("detail.SourceIdentifier", "is missing or empty"))?;
    let cluster = match detail.source_type.as_deref() {
        Some("DB_INSTANCE") => false,
        Some("CLUSTER") => true,
        other => {
            return Err(IntakeError::new(
                "detail.SourceType",
                format!("{other:?} is not DB_INSTANCE or CLUSTER"),
            ));
        }
    };
    let lifecycle = match (cluster, event_code.as_str()) {
        (false, "RDS-EVENT-0005") | (true, "RDS-EVENT-0170") => Lifecycle::Ready,
        (false, "RDS-EVENT-0003") | (true, "RDS-EVENT-0171") => Lifecycle::Deleted,
        _ => Lifecycle::Observed,
    };
    let (region, account) = (envelope.region, envelope.account);
    let arn = detail.source_arn.or_else(|| {
        let (region, account) = (region.as_ref()?, account.as_ref()?);
        let partition = crate::resolve::partition(region);
        let ty = if cluster { "cluster" } else { "db" };
        Some(format!("arn:{partition}:rds:{region}:{account}:{ty}:{identifier}"))
    });
    let mut tags = detail.tags.unwrap_or_default();
    let identity = tags
        .get("crossplane-kind")
        .and_then(|tag| kinds::from_crossplane_kind_tag(tag));
    let identity_verified = identity.is_some() && tags.contains_key("crossplane-name");
    let (kind, group) = match identity {
        Some((known, group)) if identity_verified => (known.kind, group),
        // A placeholder identity, replaced by the live resource's tags during resolution.
        _ => (
            if cluster { "Cluster" } else { "Instance" },
            format!("rds{}", kinds::NAMESPACED_SUFFIX),
        ),
    };
    let version = kinds::lookup(&group, kind).map_or(kinds::NAMESPACED_VERSION, |k| kinds::default_version(&group, k));
    let name = tags
        .remove("crossplane-name")
        .filter(|_| identity_verified)
        .unwrap_or_else(|| identifier.clone());
    if name.is_empty() {
        return Err(IntakeError::new("detail.name", "is missing or empty"));
    }
    // Only a namespaced kind's crossplane-namespace is the provider's (see resolve::check_managed).
    let namespaced = kinds::split_group(&group).is_some_and(|(_, namespaced)| namespaced);
    let namespace = tags
        .remove("crossplane-namespace")
        .filter(|namespace| identity_verified && namespaced && !namespace.is_empty());
    let resource = ManagedResource {
        version: version.to_string(),
        kind: kind.to_string(),
        namespace,
        name,
        uid: None,
        external_name: Some(identifier.clone()),
        region: region.filter(|r| !r.is_empty()),
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([(EXTERNAL_NAME_ANNOTATION.to_string(), identifier.clone())]),
        conditions: Vec::new(),
        arn: arn.filter(|a| !a.is_empty()),
        deletion_timestamp: None,
        object: None,
        identity_verified,
        // An AWS event carries no Kubernetes labels.
        labels_known: false,
        group,
    };
    let mut resource_event = ResourceEvent::from_resource(
        envelope.id.unwrap_or_else(|| format!("{identifier}:{event_code}")),
        RDS_SOURCE.to_string(),
        envelope.time.as_ref().map(rfc3339).or(detail.date),
        Signal::Stated(lifecycle),
        resource,
    );
    resource_event.reason = Some(event_code);
    resource_event.message = detail.message;
    Ok(resource_event)
}

/// The `detail` of a Secrets Manager event delivered by CloudTrail: what intake reads of it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailDetail {
    event_name: String,
    #[serde(default)]
    event_time: Option<String>,
    #[serde(default)]
    additional_event_data: Option<RotationData>,
}

#[derive(Deserialize)]
struct RotationData {
    #[serde(rename = "SecretId")]
    secret_id: String,
}

/// EventBridge `aws.secretsmanager` `RotationSucceeded` (via CloudTrail): a secret was rotated.
/// Only its ARN is known; which database owns it is the handler's to find (secret-syncer), so the
/// event is `Observed` for every other function.
pub(crate) fn rotation_event(envelope: EventBridgeEvent) -> Result<ResourceEvent, IntakeError> {
    let detail: CloudTrailDetail = typed(envelope.detail).map_err(|e| e.within("detail"))?;
    if detail.event_name != "RotationSucceeded" {
        return Err(IntakeError::new(
            "detail.eventName",
            format!(
                "{:?}: of Secrets Manager's events only RotationSucceeded is handled",
                detail.event_name
            ),
        ));
    }
    let secret = detail
        .additional_event_data
        .map(|data| data.secret_id)
        .filter(|id| crate::resolve::Arn::parse(id).is_some_and(|arn| arn.service == "secretsmanager"))
        .ok_or_else(|| {
            IntakeError::new(
                "detail.additionalEventData.SecretId",
                "is missing or not a Secrets Manager ARN",
            )
        })?;
    // The secret is no managed resource of ours (RDS made it): only its ARN matters.
    let resource =
        ManagedResource::known_by_arn(&secret, &format!("secret.secretsmanager{}", kinds::NAMESPACED_SUFFIX));
    let time = envelope.time.as_ref().map(rfc3339).or(detail.event_time);
    let mut event = ResourceEvent::from_resource(
        envelope.id.unwrap_or_else(|| format!("{secret}:RotationSucceeded")),
        "aws.secretsmanager".to_string(),
        time,
        Signal::Stated(Lifecycle::Observed),
        resource,
    );
    event.reason = Some("RotationSucceeded".to_string());
    event.rotated_secret = Some(secret);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exporter(involved: Value) -> Result<ResourceEvent, IntakeError> {
        let event = json!({"involvedObject": involved, "reason": "CreatedExternalResource", "count": 2,
                           "metadata": {"uid": "ev"}, "source": {"component": "crossplane"}});
        kubernetes_event(event.as_object().unwrap())
    }

    /// The sample RDS event, edited, through intake.
    fn rds(edit: impl FnOnce(&mut Value)) -> ResourceEvent {
        let sample = include_str!("../../../../events/eventbridge.rds-instance-created.json");
        let mut event: Value = serde_json::from_str(sample).unwrap();
        edit(&mut event);
        match crate::intake::read_value(event) {
            Ok(crate::intake::Intake::Direct(mut events)) if events.len() == 1 => events.remove(0),
            other => panic!("{other:?}"),
        }
    }

    fn set_tag(event: &mut Value, key: &str, value: Option<&str>) {
        let tags = event["detail"]["Tags"].as_object_mut().unwrap();
        match value {
            Some(value) => tags.insert(key.into(), value.into()),
            None => tags.remove(key),
        };
    }

    #[test]
    fn an_rds_event_with_crossplanes_kind_and_name_names_the_managed_resource() {
        let e = rds(|_| {});
        assert!(e.resource.identity_verified);
        assert_eq!(
            (e.resource.group.as_str(), e.resource.kind.as_str()),
            ("rds.aws.m.upbound.io", "Instance")
        );
        assert_eq!(
            (e.resource.name.as_str(), e.resource.namespace.as_deref()),
            ("orders-db", Some("team-a"))
        );
        assert_eq!(e.resource.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            e.resource.arn.as_deref(),
            Some("arn:aws:rds:us-east-1:123456789012:db:orders-db")
        );
        assert!(!e.resource.labels_known, "an AWS event carries no labels");
    }

    #[test]
    fn an_rds_event_without_both_tags_has_only_a_placeholder_identity() {
        // A kind of another group, but no name: nothing of the tags is taken.
        let e = rds(|e| {
            set_tag(e, "crossplane-kind", Some("cluster.rds.aws.upbound.io"));
            set_tag(e, "crossplane-name", None);
        });
        assert!(!e.resource.identity_verified);
        assert_eq!(
            (e.resource.group.as_str(), e.resource.kind.as_str()),
            ("rds.aws.m.upbound.io", "Instance")
        );
        assert_eq!(e.resource.name, "orders-db", "the identifier, until the live tags say");
        assert_eq!(
            e.resource.namespace, None,
            "a namespace tag without a verified identity is not taken"
        );
        // A name, but a kind the suite does not know: the same.
        let e = rds(|e| {
            set_tag(e, "crossplane-kind", Some("widget.example.org"));
            set_tag(e, "crossplane-name", Some("someone-else"));
        });
        assert!(!e.resource.identity_verified);
        assert_eq!(
            (e.resource.name.as_str(), e.resource.namespace.as_deref()),
            ("orders-db", None)
        );
    }

    #[test]
    fn a_cluster_scoped_kind_takes_no_namespace_from_the_tags() {
        let e = rds(|e| set_tag(e, "crossplane-kind", Some("instance.rds.aws.upbound.io")));
        assert!(e.resource.identity_verified);
        assert_eq!(e.resource.group, "rds.aws.upbound.io");
        assert_eq!(e.resource.namespace, None);
        let e = rds(|e| set_tag(e, "crossplane-namespace", Some("")));
        assert_eq!(e.resource.namespace, None, "an empty namespace tag is none");
    }

    #[test]
    fn an_argo_resource_event_needs_both_its_verb_and_its_body() {
        assert!(is_argo_resource_event(
            &json!({"type": "UPDATE", "body": {"kind": "Instance"}})
        ));
        assert!(!is_argo_resource_event(&json!({"type": "UPDATE"})), "no body");
        assert!(
            !is_argo_resource_event(&json!({"type": "UPDATE", "body": "x"})),
            "a body that is no object"
        );
        assert!(
            !is_argo_resource_event(&json!({"type": "PATCH", "body": {}})),
            "not Argo's verb"
        );
        assert!(!is_argo_resource_event(&json!({"body": {}})), "no verb");
    }

    #[test]
    fn an_exporter_event_builds_the_resource_it_names() {
        let involved = json!({
            "apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance", "name": "db",
            "namespace": "team-a", "uid": "u1", "labels": {"crossplane.io/claim-name": "orders"},
            "annotations": {"crossplane.io/external-name": "db-x"}
        });
        let e = exporter(involved).unwrap();
        assert_eq!((e.id.as_str(), e.source.as_str()), ("ev:2", "k8s-events/crossplane"));
        assert_eq!(e.lifecycle, Lifecycle::Updated);
        assert_eq!(e.resource.external_name.as_deref(), Some("db-x"));
        assert_eq!(e.resource.uid.as_deref(), Some("u1"));
        assert!(e.resource.labels_known && e.resource.object.is_none());
        let e =
            exporter(json!({"apiVersion": "rds.aws.upbound.io/v1beta3", "kind": "Instance", "name": "db"})).unwrap();
        assert!(!e.resource.labels_known, "the exporter did not copy the labels");
    }

    #[test]
    fn a_malformed_involved_object_names_the_field() {
        let base = || json!({"apiVersion": "rds.aws.upbound.io/v1beta3", "kind": "Instance", "name": "db"});
        let cases = [
            ("apiVersion", json!("a/"), "involvedObject.apiVersion"),
            ("kind", json!(""), "involvedObject.kind"),
            ("name", json!(""), "involvedObject.name"),
            ("labels", json!({"a": 1}), "involvedObject.labels.a"),
            ("annotations", json!([]), "involvedObject.annotations"),
        ];
        for (field, value, at) in cases {
            let mut involved = base();
            involved[field] = value;
            assert_eq!(exporter(involved).unwrap_err().at, at, "{field}");
        }
    }

    #[test]
    fn a_rotation_names_the_secret_and_is_observed() {
        let event = serde_json::from_str::<Value>(include_str!(
            "../../../../events/eventbridge.secretsmanager-rotation-succeeded.json"
        ))
        .unwrap();
        let envelope: EventBridgeEvent = serde_json::from_value(event).unwrap();
        let event = rotation_event(envelope).unwrap();
        let secret =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-3f9a1c52-7b1e-4e0a-9c2d-5b8f1e2a7c40-AbCdEf";
        assert_eq!(event.rotated_secret.as_deref(), Some(secret));
        assert_eq!(event.resource.arn.as_deref(), Some(secret));
        assert_eq!(event.lifecycle, Lifecycle::Observed);
        assert_eq!(event.resource.region.as_deref(), Some("us-east-1"));
        assert!(!event.resource.identity_verified);
    }

    #[test]
    fn a_rotation_without_a_secret_arn_or_of_another_kind_is_refused() {
        let envelope = |detail: Value| -> EventBridgeEvent {
            serde_json::from_value(serde_json::json!({
                "version": "0", "id": "r1", "detail-type": "AWS Service Event via CloudTrail",
                "source": "aws.secretsmanager", "account": "123456789012", "region": "us-east-1",
                "time": "2026-12-01T00:00:00Z", "resources": [], "detail": detail
            }))
            .unwrap()
        };
        let cases = [
            (
                json!({"eventName": "RotationStarted", "additionalEventData": {"SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}}),
                "detail.eventName",
            ),
            (
                json!({"eventName": "RotationSucceeded"}),
                "detail.additionalEventData.SecretId",
            ),
            (
                json!({"eventName": "RotationSucceeded", "additionalEventData": {"SecretId": "arn:aws:rds:us-east-1:123456789012:db:x"}}),
                "detail.additionalEventData.SecretId",
            ),
            (json!({"additionalEventData": {}}), "detail"),
        ];
        for (detail, path) in cases {
            let error = rotation_event(envelope(detail.clone())).unwrap_err();
            assert!(error.to_string().contains(path), "{detail}: {error}");
        }
    }

    #[test]
    fn an_rds_event_with_an_empty_crossplane_name_is_refused() {
        let event: EventBridgeEvent = serde_json::from_value(json!({
            "detail-type": "RDS DB Instance Event", "source": "aws.rds", "detail": {
                "EventID": "RDS-EVENT-0005", "SourceType": "DB_INSTANCE", "SourceIdentifier": "db",
                "Tags": {"crossplane-kind": "instance.rds.aws.m.upbound.io", "crossplane-name": ""}}
        }))
        .unwrap();
        assert_eq!(rds_event(event).unwrap_err().at, "detail.name");
    }
}
