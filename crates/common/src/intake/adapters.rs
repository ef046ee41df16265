//! The non-CloudEvent Crossplane shapes (ARCHITECTURE.md §2), adapted into events of our profile:
//! Knative ApiServerSource, Argo Events resource events, kubernetes-event-exporter events and
//! EventBridge `aws.rds` events.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::error::IntakeError;
use crate::kinds;
use crate::model::{EXTERNAL_NAME_ANNOTATION, Lifecycle, ProfileEvent, ResourceEvent, Signal};

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
/// `envelope` gives the id, source and time of a CloudEvent that carried it.
pub(crate) fn argo_resource_event(
    value: &Value,
    envelope: Option<(&str, String, Option<String>)>,
) -> Result<ProfileEvent, IntakeError> {
    let body = value.get("body").cloned().unwrap_or(Value::Null);
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
    let field = |name: &str| involved.get(name).cloned().unwrap_or(Value::Null);
    let mut metadata = json!({"name": field("name"), "uid": field("uid")});
    for optional in ["namespace", "labels", "annotations"] {
        if let Some(value) = involved.get(optional).filter(|v| !v.is_null()) {
            metadata[optional] = value.clone();
        }
    }
    // No conditions in this partial object: the event's reason decides the lifecycle.
    let data = json!({"apiVersion": field("apiVersion"), "kind": field("kind"), "metadata": metadata});
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
    let mut resource_event = ResourceEvent::from_profile(ProfileEvent {
        id: format!("{uid}:{count}"),
        source: format!("k8s-events/{component}"),
        subject: None,
        time,
        signal: Signal::Stated(lifecycle),
        data,
    })
    .map_err(|e| relocate(e, "involvedObject"))?;
    // The exporter copies the object's labels only when configured to.
    resource_event.resource.labels_known = involved.get("labels").is_some_and(Value::is_object);
    resource_event.reason = Some(reason.to_string()).filter(|r| !r.is_empty());
    resource_event.message = message;
    Ok(resource_event)
}

/// EventBridge `aws.rds` events (`RDS DB Instance Event`, `RDS DB Cluster Event`).
/// Crossplane's tags in `detail.Tags` lead back to the managed resource; without them the
/// identity is read from the live resource's tags during resolution.
pub(crate) fn rds_event(envelope: &Map<String, Value>) -> Result<ResourceEvent, IntakeError> {
    let detail = envelope
        .get("detail")
        .and_then(Value::as_object)
        .ok_or_else(|| IntakeError::new("detail", "must be an object"))?;
    let text = |map: &Map<String, Value>, key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    let event_id = text(detail, "EventID").ok_or_else(|| IntakeError::new("detail.EventID", "is missing"))?;
    // Some producers put the documentation URL in EventID: keep the RDS-EVENT-NNNN part.
    let event_code = event_id.rsplit(['#', '/']).next().unwrap_or(&event_id).to_string();
    let identifier = text(detail, "SourceIdentifier")
        .map(|id| id.strip_prefix("rds:").unwrap_or(&id).to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| IntakeError::new("detail.SourceIdentifier", "is missing or empty"))?;
    let cluster = match text(detail, "SourceType").as_deref() {
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
    let region = text(envelope, "region");
    let account = text(envelope, "account");
    let arn = text(detail, "SourceArn").or_else(|| {
        let (region, account) = (region.as_ref()?, account.as_ref()?);
        let partition = crate::resolve::partition(region);
        let ty = if cluster { "cluster" } else { "db" };
        Some(format!("arn:{partition}:rds:{region}:{account}:{ty}:{identifier}"))
    });
    let tags = detail.get("Tags").and_then(Value::as_object);
    let tag = |key: &str| {
        tags.and_then(|t| t.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let identity = tag("crossplane-kind")
        .as_deref()
        .and_then(kinds::from_crossplane_kind_tag);
    let identity_verified = identity.is_some() && tag("crossplane-name").is_some();
    let (kind, group) = match identity {
        Some((known, group)) if identity_verified => (known.kind, group),
        // A placeholder identity, replaced by the live resource's tags during resolution.
        _ => (
            if cluster { "Cluster" } else { "Instance" },
            format!("rds{}", kinds::NAMESPACED_SUFFIX),
        ),
    };
    let version = kinds::lookup(&group, kind).map_or(kinds::NAMESPACED_VERSION, |k| kinds::default_version(&group, k));
    let mut metadata = json!({
        "name": tag("crossplane-name").filter(|_| identity_verified).unwrap_or_else(|| identifier.clone()),
        "annotations": {EXTERNAL_NAME_ANNOTATION: identifier},
    });
    // Only a namespaced kind's crossplane-namespace is the provider's (see resolve::check_managed).
    let namespaced = kinds::split_group(&group).is_some_and(|(_, namespaced)| namespaced);
    if let Some(namespace) = tag("crossplane-namespace").filter(|_| identity_verified && namespaced) {
        metadata["namespace"] = Value::String(namespace);
    }
    let data = json!({
        "apiVersion": format!("{group}/{version}"),
        "kind": kind,
        "metadata": metadata,
        "spec": {"forProvider": {"region": region}},
        "status": {"atProvider": {"arn": arn}},
    });
    let mut resource_event = ResourceEvent::from_profile(ProfileEvent {
        id: text(envelope, "id").unwrap_or_else(|| format!("{identifier}:{event_code}")),
        source: "aws.rds".to_string(),
        subject: None,
        time: text(envelope, "time").or_else(|| text(detail, "Date")),
        signal: Signal::Stated(lifecycle),
        data,
    })
    .map_err(|e| relocate(e, "detail"))?;
    resource_event.resource.identity_verified = identity_verified;
    // An AWS event carries no Kubernetes labels.
    resource_event.resource.labels_known = false;
    resource_event.reason = Some(event_code);
    resource_event.message = text(detail, "Message");
    Ok(resource_event)
}

/// An error in the partial object an adapter built, named by where its field came from.
fn relocate(mut error: IntakeError, outer: &str) -> IntakeError {
    let inner = error.at.strip_prefix("data.").unwrap_or(&error.at);
    let inner = inner.strip_prefix("metadata.").unwrap_or(inner).to_string();
    error.at = inner;
    error.within(outer)
}
