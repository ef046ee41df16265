//! Recognises one payload (or an SQS body, an SNS message, an EventBridge detail) by its shape:
//! structured CloudEvents (single, batch, `Invocation` input), and hands the envelopes and the
//! adapted shapes to their own files.

use cloudevents::event::Data;
use cloudevents::{AttributesReader, Event};
use serde_json::Value;

use super::{adapters, eventbridge, sns};
use crate::cloudevent;
use crate::error::IntakeError;
use crate::model::{Lifecycle, ProfileEvent, ResourceEvent, Signal};

/// The key the AWS provider's `Invocation` adds to the input in `CRUD` lifecycle scope.
const INVOCATION_KEY: &str = "tf";

/// A structured-mode CloudEvent, possibly the input of a Crossplane `Invocation`, validated as
/// CloudEvents 1.0 (the first step for every payload with `specversion`), and whether the
/// `Invocation` said it is being deleted.
#[derive(Debug, Clone)]
pub struct Structured {
    pub event: Event,
    pub deleting: bool,
}

/// Structured-mode CloudEvents: one object, or a JSON batch (an array) of them, each member
/// valid or the whole refused, naming the member. For a caller holding a borrowed value (the
/// CloudEvents conformance suite): the production path [`structured_owned`] on a copy.
pub fn structured(value: &Value) -> Result<Vec<Structured>, IntakeError> {
    structured_owned(value.clone())
}

/// The production path of every structured event and batch, and what the CloudEvents
/// conformance suite runs (`tests/conformance.rs`).
pub(crate) fn structured_owned(value: Value) -> Result<Vec<Structured>, IntakeError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| structured_one(item).map_err(|e| e.within(&format!("[{i}]"))))
            .collect(),
        other => structured_one(other).map(|one| vec![one]),
    }
}

fn structured_one(value: Value) -> Result<Structured, IntakeError> {
    let mut object = match value {
        Value::Object(object) => object,
        other => {
            return Err(IntakeError::new(
                "$",
                format!("expected a CloudEvent object, found {}", cloudevent::json_kind(&other)),
            ));
        }
    };
    let deleting = match object.remove(INVOCATION_KEY) {
        None => false,
        Some(tf) => invocation_action(&tf)? == "delete",
    };
    let event = cloudevent::parse_owned(Value::Object(object))?;
    Ok(Structured { event, deleting })
}

fn is_cloudevent(value: &Value) -> bool {
    value.get("specversion").is_some()
}

pub(crate) fn events_from_value(value: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    match value {
        // A CloudEvents batch: validated as one, then each member read.
        Value::Array(items) if !items.is_empty() && items.iter().all(is_cloudevent) => {
            structured_owned(Value::Array(items))?
                .into_iter()
                .enumerate()
                .map(|(i, one)| from_structured(one).map_err(|e| e.within(&format!("[{i}]"))))
                .collect()
        }
        Value::Array(items) => {
            let mut events = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                events.extend(single(item).map_err(|e| e.within(&format!("[{i}]")))?);
            }
            Ok(events)
        }
        other => single(other),
    }
}

fn single(value: Value) -> Result<Vec<ResourceEvent>, IntakeError> {
    let Some(object) = value.as_object() else {
        return Err(IntakeError::new(
            "$",
            format!("expected an event object, found {}", cloudevent::json_kind(&value)),
        ));
    };
    if object.contains_key("specversion") {
        return structured_owned(value)?.into_iter().map(from_structured).collect();
    }
    if eventbridge::is_event(object) {
        return eventbridge::events(value);
    }
    if sns::is_notification(object) {
        // An SNS notification delivered to SQS (or HTTP) without raw message delivery.
        return sns::notification(value);
    }
    if object.contains_key("involvedObject") {
        return adapters::kubernetes_event(object).map(|e| vec![e]);
    }
    if adapters::is_argo_resource_event(&value) {
        return ResourceEvent::from_profile(adapters::argo_resource_event(value, None)?).map(|e| vec![e]);
    }
    Err(IntakeError::new(
        "$",
        "unrecognised event shape: expected a CloudEvent (specversion), an SQS/SNS/EventBridge envelope, \
         an Argo Events resource event, or a Kubernetes event with involvedObject",
    ))
}

fn from_structured(one: Structured) -> Result<ResourceEvent, IntakeError> {
    from_cloudevent(one.event, one.deleting.then_some(Signal::Delete))
}

fn invocation_action(tf: &Value) -> Result<&str, IntakeError> {
    match tf.get("action").and_then(Value::as_str) {
        Some(action @ ("create" | "update" | "delete")) => Ok(action),
        Some(other) => Err(IntakeError::new(
            "tf.action",
            format!("{other:?} is not create, update or delete"),
        )),
        None => Err(IntakeError::new("tf.action", "is missing")),
    }
}

/// Any validated CloudEvent (structured or binary) to a resource event, adapting the shapes
/// that arrive as CloudEvents of another type.
pub(crate) fn from_cloudevent(mut event: Event, signal_override: Option<Signal>) -> Result<ResourceEvent, IntakeError> {
    let (_, _, data) = event.take_data();
    let data = event_data(data)?;
    let ty = event.ty();
    let time = event.time().map(adapters::rfc3339);
    let source = event.source().to_string();
    let profile = if let Some(lifecycle) = Lifecycle::from_event_type(ty) {
        ProfileEvent {
            id: event.id().to_string(),
            source,
            subject: event.subject().map(str::to_string),
            time,
            signal: Signal::Stated(lifecycle),
            data,
        }
    } else if let Some(action) = ty.strip_prefix(adapters::KNATIVE_PREFIX) {
        adapters::knative(event.id(), source, time, action, data)?
    } else if adapters::is_argo_resource_event(&data) {
        adapters::argo_resource_event(data, Some((event.id(), source, time)))?
    } else if ty.starts_with(crate::model::TYPE_PREFIX) {
        return Err(IntakeError::new(
            "type",
            format!("{ty:?} is not a lifecycle of our profile (ready, updated, deleted, failed, observed)"),
        ));
    } else {
        return Err(IntakeError::new(
            "type",
            format!("CloudEvent type {ty:?} is not one this suite handles"),
        ));
    };
    let signal = signal_override.unwrap_or(profile.signal);
    ResourceEvent::from_profile(ProfileEvent { signal, ..profile })
}

/// The event's data as JSON: our profile carries `application/json` only.
fn event_data(data: Option<Data>) -> Result<Value, IntakeError> {
    match data {
        Some(Data::Json(value)) => Ok(value),
        Some(Data::String(text)) => super::parse_json(text.as_bytes(), "data")
            .map_err(|e| IntakeError::new("data", format!("must be JSON ({})", e.reason))),
        Some(Data::Binary(bytes)) => super::parse_json(&bytes, "data_base64")
            .map_err(|e| IntakeError::new("data_base64", format!("must decode to JSON ({})", e.reason))),
        None => Err(IntakeError::new(
            "data",
            "is missing: the event must carry the managed resource",
        )),
    }
}
