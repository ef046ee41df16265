//! One model for "this Crossplane managed resource is in this state": [`ResourceEvent`].
//!
//! Every input shape becomes a [`ProfileEvent`] (a CloudEvent of our profile, ARCHITECTURE.md §3),
//! and every profile event becomes a [`ResourceEvent`] through [`ResourceEvent::from_profile`];
//! adapters that know a resource without its object build the [`ManagedResource`] directly. Both
//! end in `ResourceEvent::from_resource`, which applies the lifecycle rules of ARCHITECTURE.md §4
//! in one place.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::IntakeError;
use crate::kinds;

pub const TYPE_PREFIX: &str = "io.crossplane.managed.";
pub use crate::crossplane::ANNOTATION_EXTERNAL_NAME as EXTERNAL_NAME_ANNOTATION;
use crate::crossplane::{CONDITION_READY, CONDITION_SYNCED, REASON_RECONCILE_ERROR};

/// Where a managed resource stands, as far as the handlers are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// `Ready=True`: the external resource is available.
    Ready,
    /// The external resource changed, with no readiness transition.
    Updated,
    /// The managed resource is being or has been deleted.
    Deleted,
    /// `Synced=False` with `ReconcileError`, or a `Cannot*` warning.
    Failed,
    /// A state with no transition to act on: handlers skip it without any AWS call.
    Observed,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 5] = [
        Lifecycle::Ready,
        Lifecycle::Updated,
        Lifecycle::Deleted,
        Lifecycle::Failed,
        Lifecycle::Observed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Ready => "ready",
            Lifecycle::Updated => "updated",
            Lifecycle::Deleted => "deleted",
            Lifecycle::Failed => "failed",
            Lifecycle::Observed => "observed",
        }
    }

    /// From its name: `ready`, `updated`, `deleted`, `failed`, `observed`.
    pub fn parse(name: &str) -> Option<Lifecycle> {
        Lifecycle::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// From a CloudEvent `type` of our profile (`io.crossplane.managed.<name>`).
    pub fn from_event_type(ty: &str) -> Option<Lifecycle> {
        ty.strip_prefix(TYPE_PREFIX).and_then(Lifecycle::parse)
    }
}

/// A status condition of a managed resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
}

/// A Crossplane managed resource, from its object or from a reference to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Set for Crossplane v2 namespaced managed resources.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    /// `crossplane.io/external-name`, else the kind's identifier field.
    pub external_name: Option<String>,
    /// `spec.forProvider.region`.
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub conditions: Vec<Condition>,
    /// `status.atProvider.arn`, or the ARN an AWS event named.
    pub arn: Option<String>,
    pub deletion_timestamp: Option<String>,
    /// The whole object as Kubernetes served it; `None` for a reference.
    #[serde(skip)]
    pub object: Option<Value>,
    /// False when the resource is known only from an AWS event that did not carry Crossplane's
    /// tags: who manages it is then read from the live resource's `crossplane-*` tags.
    pub identity_verified: bool,
    /// Whether the event carried the object's labels (a whole object does; a reference, an AWS
    /// event or an exporter event without them does not): facts derived from labels, such as
    /// the claim's name, cannot be established without them.
    pub labels_known: bool,
}

impl ManagedResource {
    /// A managed resource known only by its external resource's ARN and the `crossplane-kind` tag
    /// it carries (a sweep's listing, a rotated secret): a placeholder whose identity resolution
    /// reads from the live resource's Crossplane tags (`identity_verified` is false).
    pub fn known_by_arn(arn: &str, kind_tag: &str) -> Self {
        let (group, kind) = crate::kinds::from_crossplane_kind_tag(kind_tag)
            .map(|(known, group)| (group, known.kind.to_string()))
            .unwrap_or_else(|| ("unknown".into(), "Unknown".into()));
        let parsed = crate::resolve::Arn::parse(arn);
        ManagedResource {
            version: crate::kinds::lookup(&group, &kind)
                .map_or("", |known| crate::kinds::default_version(&group, known))
                .to_string(),
            group,
            kind,
            namespace: None,
            name: parsed.as_ref().map_or(arn, |a| a.resource).to_string(),
            uid: None,
            external_name: None,
            region: parsed.map(|a| a.region.to_string()).filter(|r| !r.is_empty()),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            conditions: Vec::new(),
            arn: Some(arn.to_string()),
            deletion_timestamp: None,
            object: None,
            identity_verified: false,
            labels_known: false,
        }
    }

    /// From the object as Kubernetes serves it (a copy is kept; see [`ManagedResource::from_value`]).
    pub fn from_object(object: &Value) -> Result<Self, IntakeError> {
        Self::from_value(object.clone())
    }

    /// From the object as Kubernetes serves it, taking it: what intake does, so the object an
    /// event carried is kept without a copy.
    pub fn from_value(object: Value) -> Result<Self, IntakeError> {
        let (group, version) = api_version(&object)?;
        let kind = required_str(&object, "kind")?.to_string();
        let metadata = object
            .get("metadata")
            .filter(|m| m.is_object())
            .ok_or_else(|| IntakeError::new("metadata", "is missing or not an object"))?;
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| IntakeError::new("metadata.name", "is missing or empty"))?
            .to_string();
        let labels = string_map(metadata.get("labels"), "metadata.labels")?;
        let annotations = string_map(metadata.get("annotations"), "metadata.annotations")?;
        let for_provider = object.pointer("/spec/forProvider");
        let known = kinds::lookup(&group, &kind);
        let external_name = annotations
            .get(EXTERNAL_NAME_ANNOTATION)
            .filter(|n| !n.is_empty())
            .cloned()
            .or_else(|| {
                let field = known?.identifier_field?;
                for_provider?.get(field)?.as_str().map(str::to_string)
            });
        let namespace = opt_str(metadata.get("namespace"));
        let uid = opt_str(metadata.get("uid"));
        let deletion_timestamp = opt_str(metadata.get("deletionTimestamp"));
        let region = opt_str(for_provider.and_then(|f| f.get("region")));
        let conditions = conditions(&object)?;
        let arn = opt_str(object.pointer("/status/atProvider/arn"));
        Ok(ManagedResource {
            group,
            version,
            kind,
            namespace,
            name,
            uid,
            external_name,
            region,
            labels,
            annotations,
            conditions,
            arn,
            deletion_timestamp,
            object: Some(object),
            identity_verified: true,
            labels_known: true,
        })
    }

    /// From the `involvedObject` of a Kubernetes Event: a reference with the object's labels and
    /// annotations when the exporter copied them (then, and only then, `labels_known`).
    pub(crate) fn from_involved_object(involved: &Value) -> Result<Self, IntakeError> {
        let (group, version) = api_version(involved)?;
        let kind = required_str(involved, "kind")?;
        let name = involved
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| IntakeError::new("name", "is missing or empty"))?;
        let labels = string_map(involved.get("labels"), "labels")?;
        let annotations = string_map(involved.get("annotations"), "annotations")?;
        let external_name = annotations
            .get(EXTERNAL_NAME_ANNOTATION)
            .filter(|n| !n.is_empty())
            .cloned();
        Ok(ManagedResource {
            group,
            version,
            kind: kind.to_string(),
            namespace: opt_str(involved.get("namespace")),
            name: name.to_string(),
            uid: opt_str(involved.get("uid")),
            external_name,
            region: None,
            labels,
            annotations,
            conditions: Vec::new(),
            arn: None,
            deletion_timestamp: None,
            object: None,
            identity_verified: true,
            labels_known: involved.get("labels").is_some_and(Value::is_object),
        })
    }

    /// From a reference `{apiVersion, kind, name, namespace}`.
    pub fn from_reference(reference: &Value) -> Result<Self, IntakeError> {
        let (group, version) = api_version(reference)?;
        let kind = required_str(reference, "kind")?;
        let name = required_str(reference, "name")?;
        Ok(ManagedResource {
            group,
            version,
            kind: kind.to_string(),
            namespace: opt_str(reference.get("namespace")),
            name: name.to_string(),
            uid: opt_str(reference.get("uid")),
            external_name: None,
            region: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            conditions: Vec::new(),
            arn: None,
            deletion_timestamp: None,
            object: None,
            identity_verified: true,
            labels_known: false,
        })
    }

    /// The Kubernetes API path: our profile's `subject`.
    pub fn subject(&self) -> String {
        let plural = kinds::plural(&self.group, &self.kind);
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match &self.namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{}", self.name),
            None => format!("{prefix}/{plural}/{}", self.name),
        }
    }

    /// Which managed resource this is, whatever API version an event names it by (a served
    /// version, the storage version, the one an AWS event assumes): its API path without the
    /// version. Idempotency keys and remembered facts use it; [`same_resource`] compares paths.
    pub fn identity(&self) -> String {
        without_version(&self.subject())
    }

    /// The value Crossplane's AWS provider writes in the `crossplane-kind` tag.
    pub fn crossplane_kind_tag(&self) -> String {
        format!("{}.{}", self.kind, self.group).to_ascii_lowercase()
    }

    /// `Kind/namespace/name`, for log lines and outcomes.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// An API path without its version segment: `/apis/g/v1/…` → `/apis/g/…`, `/api/v1/…` → `/api/…`.
fn without_version(path: &str) -> String {
    let mut segments: Vec<&str> = path.split('/').collect();
    let version_at = match segments.get(1) {
        Some(&"apis") => 3,
        Some(&"api") => 2,
        _ => return path.to_string(),
    };
    if version_at < segments.len() {
        segments.remove(version_at);
    }
    segments.join("/")
}

/// Whether two API paths name the same managed resource, in any API version.
pub fn same_resource(a: &str, b: &str) -> bool {
    without_version(a) == without_version(b)
}

/// What the transport or shape said about the change, before looking at the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A delete event: Knative/Argo delete, `tf.action=delete`, RDS-EVENT-0003, …
    Delete,
    /// An add or update with no opinion on readiness: the object decides.
    Upsert,
    /// The lifecycle a producer already determined (our profile's `type`).
    Stated(Lifecycle),
}

/// A CloudEvent of our profile, validated, with its `data` parsed as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEvent {
    pub id: String,
    pub source: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    pub signal: Signal,
    pub data: Value,
}

/// A managed resource, its lifecycle and the transition that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceEvent {
    /// The CloudEvent id (unique per occurrence, differs between sources of one change).
    pub id: String,
    pub source: String,
    pub time: Option<String>,
    pub lifecycle: Lifecycle,
    /// When the transition happened: the condition's `lastTransitionTime`, the deletion
    /// timestamp, or the event time. With the resource and lifecycle, it names the change.
    pub transition_time: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub resource: ManagedResource,
    /// Set for a Secrets Manager `RotationSucceeded` event: the ARN of the rotated secret. The
    /// resource is then that secret, known by ARN only; the database that owns it is found by the
    /// handler that cares (secret-syncer), and the event is `Observed` for the others.
    pub rotated_secret: Option<String>,
    /// The live resource's tags as a sweep's listing read them a moment ago: resolution uses
    /// them instead of reading them again (the one read per resource a sweep would repeat).
    pub listed_tags: Option<crate::resolve::Tags>,
}

impl ResourceEvent {
    /// Applies the lifecycle rules (ARCHITECTURE.md §4) to a profile event, taking its data.
    pub fn from_profile(event: ProfileEvent) -> Result<Self, IntakeError> {
        let ProfileEvent {
            id,
            source,
            subject,
            time,
            signal,
            data,
        } = event;
        let resource = if data.get("metadata").is_some() {
            ManagedResource::from_value(data)
        } else {
            ManagedResource::from_reference(&data)
        }
        .map_err(|e| e.within("data"))?;
        if let Some(subject) = &subject {
            let expected = resource.subject();
            if *subject != expected {
                return Err(IntakeError::new(
                    "subject",
                    format!("{subject:?} does not name the resource in data ({expected:?})"),
                ));
            }
        }
        Ok(Self::from_resource(id, source, time, signal, resource))
    }

    /// Applies the lifecycle rules (ARCHITECTURE.md §4) to a resource an adapter built itself
    /// (an exporter event, an `aws.rds` event): the one place they are applied, with
    /// [`ResourceEvent::from_profile`].
    pub(crate) fn from_resource(
        id: String,
        source: String,
        time: Option<String>,
        signal: Signal,
        resource: ManagedResource,
    ) -> Self {
        let judged = judge(&resource, signal, time.as_deref());
        ResourceEvent {
            id,
            source,
            time,
            lifecycle: judged.lifecycle,
            transition_time: judged.transition_time,
            reason: judged.reason,
            message: judged.message,
            resource,
            rotated_secret: None,
            listed_tags: None,
        }
    }
}

struct Judgement {
    lifecycle: Lifecycle,
    transition_time: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

/// Level-triggered: the object's conditions decide, the signal only breaks ties where the
/// object cannot (deletions, references and partial objects without conditions).
fn judge(resource: &ManagedResource, signal: Signal, event_time: Option<&str>) -> Judgement {
    let at = |lifecycle, time: Option<&String>, reason: Option<&String>, message: Option<&String>| Judgement {
        lifecycle,
        transition_time: time.cloned().or_else(|| event_time.map(str::to_string)),
        reason: reason.cloned(),
        message: message.cloned(),
    };
    if matches!(signal, Signal::Delete | Signal::Stated(Lifecycle::Deleted)) || resource.deletion_timestamp.is_some() {
        let ready = resource.condition(CONDITION_READY);
        return at(
            Lifecycle::Deleted,
            resource.deletion_timestamp.as_ref(),
            ready.and_then(|c| c.reason.as_ref()),
            None,
        );
    }
    if resource.conditions.is_empty() {
        let lifecycle = match signal {
            Signal::Stated(l) => l,
            Signal::Upsert => Lifecycle::Updated,
            Signal::Delete => Lifecycle::Deleted,
        };
        return at(lifecycle, None, None, None);
    }
    if let Some(synced) = resource.condition(CONDITION_SYNCED)
        && synced.status == "False"
        && synced.reason.as_deref() == Some(REASON_RECONCILE_ERROR)
    {
        return at(
            Lifecycle::Failed,
            synced.last_transition_time.as_ref(),
            synced.reason.as_ref(),
            synced.message.as_ref(),
        );
    }
    match resource.condition(CONDITION_READY) {
        Some(ready) if ready.status == "True" => {
            let lifecycle = if signal == Signal::Stated(Lifecycle::Updated) {
                Lifecycle::Updated
            } else {
                Lifecycle::Ready
            };
            at(
                lifecycle,
                ready.last_transition_time.as_ref(),
                ready.reason.as_ref(),
                ready.message.as_ref(),
            )
        }
        ready => at(
            Lifecycle::Observed,
            ready.and_then(|c| c.last_transition_time.as_ref()),
            ready.and_then(|c| c.reason.as_ref()),
            ready.and_then(|c| c.message.as_ref()),
        ),
    }
}

fn api_version(value: &Value) -> Result<(String, String), IntakeError> {
    let api_version = required_str(value, "apiVersion")?;
    Ok(match api_version.split_once('/') {
        Some((group, version)) if !group.is_empty() && !version.is_empty() => (group.to_string(), version.to_string()),
        None => (String::new(), api_version.to_string()),
        Some(_) => {
            return Err(IntakeError::new(
                "apiVersion",
                format!("{api_version:?} is not group/version"),
            ));
        }
    })
}

fn required_str<'a>(value: &'a Value, field: &str) -> Result<&'a str, IntakeError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IntakeError::new(field, "is missing, empty or not a string"))
}

fn opt_str(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn string_map(value: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>, IntakeError> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(IntakeError::new(format!("{at}.{k}"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(IntakeError::new(at, "must be an object of strings")),
    }
}

fn conditions(object: &Value) -> Result<Vec<Condition>, IntakeError> {
    let Some(list) = object.pointer("/status/conditions") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| IntakeError::new("status.conditions", "must be an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("status.conditions[{i}]");
            let kind = c
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| IntakeError::new(&at, "has no type"))?;
            let status = c
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| IntakeError::new(&at, "has no status"))?;
            Ok(Condition {
                kind: kind.to_string(),
                status: status.to_string(),
                reason: opt_str(c.get("reason")),
                message: opt_str(c.get("message")),
                last_transition_time: opt_str(c.get("lastTransitionTime")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(conditions: Value) -> Value {
        json!({
            "apiVersion": "rds.aws.m.upbound.io/v1beta1",
            "kind": "Instance",
            "metadata": {
                "name": "orders-db",
                "namespace": "team-a",
                "uid": "6b2e",
                "labels": {"crossplane.io/claim-name": "orders"},
                "annotations": {"crossplane.io/external-name": "orders-db-x7k2p"}
            },
            "spec": {"forProvider": {"region": "eu-west-1", "identifier": "ignored-when-annotated"}},
            "status": {"atProvider": {"arn": "arn:aws:rds:eu-west-1:111122223333:db:orders-db-x7k2p"},
                       "conditions": conditions}
        })
    }

    fn event(signal: Signal, data: Value) -> Result<ResourceEvent, IntakeError> {
        ResourceEvent::from_profile(ProfileEvent {
            id: "e1".into(),
            source: "crossplane://test".into(),
            subject: None,
            time: Some("2026-01-01T00:00:00Z".into()),
            signal,
            data,
        })
    }

    const READY: &str = "2026-01-01T10:00:00Z";

    fn ready_true() -> Value {
        json!([{"type":"Ready","status":"True","reason":"Available","lastTransitionTime":READY},
               {"type":"Synced","status":"True","reason":"ReconcileSuccess"}])
    }

    #[test]
    fn ready_takes_the_transition_time_of_the_condition() {
        let e = event(Signal::Upsert, instance(ready_true())).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Ready);
        assert_eq!(e.transition_time.as_deref(), Some(READY));
        assert_eq!(e.resource.external_name.as_deref(), Some("orders-db-x7k2p"));
        assert_eq!(e.resource.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            e.resource.subject(),
            "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/orders-db"
        );
        assert_eq!(e.resource.crossplane_kind_tag(), "instance.rds.aws.m.upbound.io");
    }

    #[test]
    fn stated_ready_with_an_unready_object_is_only_observed() {
        let conditions = json!([{"type":"Ready","status":"False","reason":"Creating","lastTransitionTime":READY}]);
        let e = event(Signal::Stated(Lifecycle::Ready), instance(conditions)).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Observed);
        assert_eq!(e.reason.as_deref(), Some("Creating"));
    }

    #[test]
    fn reconcile_error_is_failed_even_when_ready() {
        let conditions = json!([{"type":"Ready","status":"True","reason":"Available"},
            {"type":"Synced","status":"False","reason":"ReconcileError","message":"cannot update: AccessDenied",
             "lastTransitionTime":"2026-01-02T00:00:00Z"}]);
        let e = event(Signal::Upsert, instance(conditions)).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Failed);
        assert_eq!(e.message.as_deref(), Some("cannot update: AccessDenied"));
        assert_eq!(e.transition_time.as_deref(), Some("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn deletion_wins_over_readiness() {
        let e = event(Signal::Delete, instance(ready_true())).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Deleted);
        let mut object = instance(ready_true());
        object["metadata"]["deletionTimestamp"] = json!("2026-01-03T00:00:00Z");
        let e = event(Signal::Upsert, object).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Deleted);
        assert_eq!(e.transition_time.as_deref(), Some("2026-01-03T00:00:00Z"));
    }

    #[test]
    fn stated_updated_keeps_the_ready_transition() {
        let e = event(Signal::Stated(Lifecycle::Updated), instance(ready_true())).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Updated);
        assert_eq!(e.transition_time.as_deref(), Some(READY));
    }

    #[test]
    fn an_object_with_conditions_but_no_ready_is_observed() {
        let e = event(Signal::Upsert, instance(json!([{"type":"Synced","status":"True"}]))).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Observed);
    }

    #[test]
    fn references_take_the_stated_lifecycle() {
        let reference = json!({"apiVersion":"rds.aws.upbound.io/v1beta3","kind":"Instance","name":"db"});
        let e = event(Signal::Stated(Lifecycle::Ready), reference.clone()).unwrap();
        assert_eq!(e.lifecycle, Lifecycle::Ready);
        assert_eq!(e.transition_time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(e.resource.subject(), "/apis/rds.aws.upbound.io/v1beta3/instances/db");
        assert_eq!(event(Signal::Upsert, reference).unwrap().lifecycle, Lifecycle::Updated);
    }

    #[test]
    fn identifier_field_when_no_external_name() {
        let mut object = instance(ready_true());
        object["metadata"]["annotations"] = json!({});
        let e = event(Signal::Upsert, object).unwrap();
        assert_eq!(e.resource.external_name.as_deref(), Some("ignored-when-annotated"));
    }

    #[test]
    fn bad_objects_name_the_field() {
        let mut object = instance(ready_true());
        object["metadata"]["name"] = json!("");
        assert_eq!(event(Signal::Upsert, object).unwrap_err().at, "data.metadata.name");
        let mut object = instance(ready_true());
        object["metadata"]["labels"] = json!({"a": 1});
        assert_eq!(event(Signal::Upsert, object).unwrap_err().at, "data.metadata.labels.a");
        let mut object = instance(ready_true());
        object["status"]["conditions"] = json!([{"status":"True"}]);
        assert_eq!(
            event(Signal::Upsert, object).unwrap_err().at,
            "data.status.conditions[0]"
        );
        assert_eq!(
            event(Signal::Upsert, json!({"kind":"Instance"})).unwrap_err().at,
            "data.apiVersion"
        );
    }

    #[test]
    fn a_subject_that_does_not_match_the_data_is_refused() {
        let err = ResourceEvent::from_profile(ProfileEvent {
            id: "e".into(),
            source: "s".into(),
            subject: Some("/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/other".into()),
            time: None,
            signal: Signal::Upsert,
            data: instance(ready_true()),
        })
        .unwrap_err();
        assert_eq!(err.at, "subject");
    }

    #[test]
    fn one_resource_in_every_api_version() {
        let a = "/apis/rds.aws.upbound.io/v1beta1/instances/db";
        assert!(same_resource(a, "/apis/rds.aws.upbound.io/v1beta3/instances/db"));
        assert!(!same_resource(a, "/apis/rds.aws.upbound.io/v1beta1/instances/other"));
        assert!(!same_resource(a, "/apis/rds.aws.m.upbound.io/v1beta1/instances/db"));
        assert!(same_resource(
            "/api/v1/namespaces/a/secrets/s",
            "/api/v2/namespaces/a/secrets/s"
        ));
        // A path that ends before its version segment is compared as it is.
        assert!(same_resource("/apis/rds.aws.upbound.io", "/apis/rds.aws.upbound.io"));
        assert!(!same_resource("/apis/rds.aws.upbound.io", "/apis/s3.aws.upbound.io"));
        let e = event(Signal::Upsert, instance(ready_true())).unwrap();
        assert_eq!(
            e.resource.identity(),
            "/apis/rds.aws.m.upbound.io/namespaces/team-a/instances/orders-db"
        );
    }

    #[test]
    fn event_types_round_trip() {
        for l in Lifecycle::ALL {
            assert_eq!(
                Lifecycle::from_event_type(&format!("io.crossplane.managed.{}", l.as_str())),
                Some(l)
            );
            assert_eq!(Lifecycle::parse(l.as_str()), Some(l));
        }
        assert_eq!(Lifecycle::from_event_type("io.crossplane.managed.exploded"), None);
    }
}
