//! Metrics in CloudWatch Embedded Metric Format (EMF): JSON documents written to stdout with
//! the logs, which CloudWatch Logs turns into metrics with no API call and no added latency.
//!
//! One [`Metrics`] per invocation (it travels in [`crate::runtime::Invocation`]); handlers and
//! `dispatch` record into it, and [`Metrics::documents`] renders one EMF document per set of
//! dimension values when the invocation ends (`runtime::run` writes them, once). Dimensions
//! have bounded cardinality: function, lifecycle, kind, outcome, error type, AWS operation,
//! Slack answer class; never a resource name (those are properties of the document, for
//! correlation: the request id, the event ids and the managed resources).
//!
//! Every metric name and unit is listed once in [`METRICS`]: `tests/infra` checks that every
//! alarm and dashboard widget in `infra/` names one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "CrossplaneLambda";

/// A metric's unit, as EMF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Events handled, by outcome. Dimensions: Function, Lifecycle, Kind, Outcome.
pub const EVENTS: &str = "Events";
/// Events that failed, by error type. Dimensions: Function, Lifecycle, Kind, ErrorType.
pub const EVENT_ERRORS: &str = "EventErrors";
/// Time to handle one event. Dimensions: Function, Lifecycle, Kind.
pub const HANDLER_LATENCY: &str = "HandlerLatency";
/// Payloads refused before any event could be read. Dimensions: Function.
pub const INVALID_PAYLOADS: &str = "InvalidPayloads";
/// AWS calls made (each SDK attempt). Dimensions: Function, Operation.
pub const AWS_CALLS: &str = "AwsCalls";
/// AWS calls answered with throttling. Dimensions: Function, Operation.
pub const AWS_THROTTLES: &str = "AwsThrottles";
/// Slack's answers to posts, by class. Dimensions: Function, Class.
pub const SLACK_ANSWERS: &str = "SlackAnswers";

/// Every metric the suite emits, with its unit.
pub const METRICS: &[(&str, Unit)] = &[
    (EVENTS, Unit::Count),
    (EVENT_ERRORS, Unit::Count),
    (HANDLER_LATENCY, Unit::Milliseconds),
    (INVALID_PAYLOADS, Unit::Count),
    (AWS_CALLS, Unit::Count),
    (AWS_THROTTLES, Unit::Count),
    (SLACK_ANSWERS, Unit::Count),
];

/// The unit of a metric of [`METRICS`].
pub fn unit_of(name: &str) -> Option<Unit> {
    METRICS.iter().find(|(n, _)| *n == name).map(|(_, u)| *u)
}

/// One metric's values under one set of dimension values.
#[derive(Debug, Default)]
struct Series {
    values: Vec<f64>,
    events: BTreeSet<String>,
    resources: BTreeSet<String>,
}

type Dimensions = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Recorded {
    function: String,
    request_id: String,
    series: BTreeMap<(Dimensions, &'static str), Series>,
}

/// The metrics of one invocation. Cheap to clone (a handle); safe across the invocation's
/// concurrent events.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    recorded: Arc<Mutex<Recorded>>,
}

/// What an event-level sample is about, for its dimensions and its correlation properties.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub lifecycle: &'a str,
    /// `Kind.service`, e.g. `Instance.rds`: bounded, unlike a name.
    pub kind: &'a str,
    pub event: &'a str,
    pub resource: &'a str,
}

impl Metrics {
    pub fn new(function: &str, request_id: &str) -> Self {
        Metrics {
            recorded: Arc::new(Mutex::new(Recorded {
                function: function.to_string(),
                request_id: request_id.to_string(),
                series: BTreeMap::new(),
            })),
        }
    }

    fn record(&self, name: &'static str, dimensions: Dimensions, value: f64, about: Option<&About<'_>>) {
        let Ok(mut recorded) = self.recorded.lock() else {
            return;
        };
        let mut all = vec![("Function", recorded.function.clone())];
        all.extend(dimensions);
        let series = recorded.series.entry((all, name)).or_default();
        series.values.push(value);
        if let Some(about) = about {
            series.events.insert(about.event.to_string());
            series.resources.insert(about.resource.to_string());
        }
    }

    /// Adds `value` to a metric with the event's lifecycle and kind, and `extra` dimensions.
    pub fn event(&self, name: &'static str, about: &About<'_>, extra: &[(&'static str, &str)], value: f64) {
        let mut dimensions = vec![
            ("Lifecycle", about.lifecycle.to_string()),
            ("Kind", about.kind.to_string()),
        ];
        dimensions.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        self.record(name, dimensions, value, Some(about));
    }

    /// Adds `value` to a metric with only the given dimensions (besides Function).
    pub fn count(&self, name: &'static str, dimensions: &[(&'static str, &str)], value: f64) {
        self.record(
            name,
            dimensions.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
            None,
        );
    }

    /// Records the AWS calls [`count_aws_calls`] counted for this invocation.
    pub fn record_aws_calls(&self, calls: AwsCallCounts) {
        for ((operation, throttled), n) in calls {
            let name = if throttled { AWS_THROTTLES } else { AWS_CALLS };
            self.count(name, &[("Operation", operation.as_str())], n as f64);
        }
    }

    /// Writes [`Metrics::documents`], one JSON line each, and forgets them.
    pub fn write_to(&self, out: &mut impl std::io::Write) {
        for doc in self.documents() {
            let _ = writeln!(out, "{doc}");
        }
        if let Ok(mut recorded) = self.recorded.lock() {
            recorded.series.clear();
        }
    }

    /// One EMF document per set of dimension values, each with every metric recorded under it.
    pub fn documents(&self) -> Vec<Value> {
        let Ok(recorded) = self.recorded.lock() else {
            return Vec::new();
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut by_dimensions: BTreeMap<&Dimensions, Vec<(&'static str, &Series)>> = BTreeMap::new();
        for ((dimensions, name), series) in &recorded.series {
            by_dimensions.entry(dimensions).or_default().push((name, series));
        }
        let mut documents = Vec::new();
        for (dimensions, metrics) in by_dimensions {
            // EMF takes at most MAX_VALUES values of a metric in one document: more go in more.
            let chunks = metrics
                .iter()
                .map(|(_, series)| series.values.len().div_ceil(MAX_VALUES))
                .max()
                .unwrap_or(1);
            for chunk in 0..chunks {
                let mut doc = Map::new();
                let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
                let mut definitions = Vec::new();
                let (mut events, mut resources) = (BTreeSet::new(), BTreeSet::new());
                for (name, series) in &metrics {
                    let values: Vec<f64> = series
                        .values
                        .iter()
                        .copied()
                        .skip(chunk * MAX_VALUES)
                        .take(MAX_VALUES)
                        .collect();
                    let value = match values.as_slice() {
                        [] => continue,
                        [one] => json!(one),
                        _ => json!(values),
                    };
                    definitions.push(json!({"Name": name, "Unit": unit_of(name).map_or("None", Unit::as_str)}));
                    doc.insert((*name).to_string(), value);
                    events.extend(series.events.iter().cloned());
                    resources.extend(series.resources.iter().cloned());
                }
                doc.insert(
                    "_aws".into(),
                    json!({"Timestamp": timestamp, "CloudWatchMetrics": [
                        {"Namespace": NAMESPACE, "Dimensions": [names], "Metrics": definitions}
                    ]}),
                );
                for (key, value) in dimensions {
                    doc.insert((*key).to_string(), json!(value));
                }
                doc.insert("request_id".into(), json!(recorded.request_id));
                if !events.is_empty() {
                    doc.insert("events".into(), json!(capped(events)));
                    doc.insert("resources".into(), json!(capped(resources)));
                }
                documents.push(Value::Object(doc));
            }
        }
        documents
    }
}

/// EMF's limit on the values of one metric in one document.
pub const MAX_VALUES: usize = 100;
/// Correlation properties are bounded too (a log event has a size limit): at most this many
/// ids, each at most [`MAX_ID_CHARS`] characters.
const MAX_IDS: usize = 20;
const MAX_ID_CHARS: usize = 200;

fn capped(ids: BTreeSet<String>) -> Vec<String> {
    let total = ids.len();
    let mut kept: Vec<String> = ids
        .into_iter()
        .take(MAX_IDS)
        .map(|id| id.chars().take(MAX_ID_CHARS).collect())
        .collect();
    if total > MAX_IDS {
        kept.push(format!("… and {} more", total - MAX_IDS));
    }
    kept
}

/// AWS calls by (operation, throttled).
pub type AwsCallCounts = BTreeMap<(String, bool), u64>;

tokio::task_local! {
    /// The calls of the invocation whose work runs on this task: the SDK runs its interceptors
    /// on the task that awaits the call, so invocations handled at once (run_concurrent) each
    /// count their own.
    static INVOCATION_AWS_CALLS: Arc<Mutex<AwsCallCounts>>;
}

/// Runs `work`, counting the AWS calls made while it runs (on every client, by
/// [`AwsCallMetrics`]) apart from any other work's; returns its output and the counts.
pub async fn count_aws_calls<F: std::future::Future>(work: F) -> (F::Output, AwsCallCounts) {
    let counts = Arc::new(Mutex::new(AwsCallCounts::new()));
    let output = INVOCATION_AWS_CALLS.scope(Arc::clone(&counts), work).await;
    let counts = counts.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
    (output, counts)
}

/// Counts every attempt of every AWS call, and the throttled ones, for [`Metrics`]. Registered
/// on every SDK client by `sdk_client!`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsCallMetrics;

impl aws_smithy_runtime_api::client::interceptors::Intercept for AwsCallMetrics {
    fn name(&self) -> &'static str {
        "AwsCallMetrics"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        let operation = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".to_string());
        let throttled = context.response().is_some_and(|response| {
            let status = response.status().as_u16();
            let error_type = response.headers().get("x-amzn-errortype").unwrap_or_default();
            let body = response.body().bytes().unwrap_or_default();
            status == 429
                || (status >= 400
                    && crate::aws::THROTTLING_CODES
                        .iter()
                        .any(|code| error_type.starts_with(code) || contains(body, code.as_bytes())))
        });
        // A call outside any invocation (none is made today) is not counted.
        let _ = INVOCATION_AWS_CALLS.try_with(|counts| {
            if let Ok(mut counts) = counts.lock() {
                *counts.entry((operation.clone(), false)).or_default() += 1;
                if throttled {
                    *counts.entry((operation, true)).or_default() += 1;
                }
            }
        });
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // A throttling code in a JSON `__type` or an XML `<Code>`: quoted or bracketed, whole.
    haystack.windows(needle.len() + 2).any(|w| {
        w.get(1..=needle.len()) == Some(needle)
            && matches!(w.first(), Some(b'"' | b'>' | b'#'))
            && matches!(w.last(), Some(b'"' | b'<'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about<'a>(event: &'a str) -> About<'a> {
        About {
            lifecycle: "ready",
            kind: "Instance.rds",
            event,
            resource: "Instance/team-a/orders-db",
        }
    }

    #[test]
    fn documents_follow_the_emf_shape() {
        let metrics = Metrics::new("tagger", "req-1");
        metrics.event(EVENTS, &about("e1"), &[("Outcome", "applied")], 1.0);
        metrics.event(EVENTS, &about("e2"), &[("Outcome", "applied")], 1.0);
        metrics.event(HANDLER_LATENCY, &about("e1"), &[], 12.5);
        metrics.count(INVALID_PAYLOADS, &[], 1.0);
        let docs = metrics.documents();
        assert_eq!(docs.len(), 3, "{docs:?}");
        for doc in &docs {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], NAMESPACE);
            assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
            for dimension in directive["Dimensions"][0].as_array().unwrap() {
                assert!(doc[dimension.as_str().unwrap()].is_string(), "{doc}");
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert_eq!(metric["Unit"], unit_of(name).unwrap().as_str());
                assert!(doc[name].is_number() || doc[name].is_array(), "{doc}");
            }
            assert_eq!(doc["request_id"], "req-1");
            assert_eq!(doc["Function"], "tagger");
        }
        let events = docs.iter().find(|d| d["Outcome"] == "applied").unwrap();
        assert_eq!(events["Events"], json!([1.0, 1.0]));
        assert_eq!(events["events"], json!(["e1", "e2"]));
        assert_eq!(events["resources"], json!(["Instance/team-a/orders-db"]));
        assert!(
            !events.as_object().unwrap().contains_key("orders-db"),
            "no resource as a dimension"
        );
    }

    #[test]
    fn large_batches_stay_within_emf_limits() {
        let metrics = Metrics::new("tagger", "req-1");
        let long_id = "x".repeat(5000);
        for i in 0..250 {
            let event = format!("{i}-{long_id}");
            metrics.event(EVENTS, &about(&event), &[("Outcome", "applied")], 1.0);
        }
        let docs = metrics.documents();
        assert_eq!(docs.len(), 3, "250 values in documents of at most {MAX_VALUES}");
        let total: usize = docs.iter().map(|d| d["Events"].as_array().map_or(1, Vec::len)).sum();
        assert_eq!(total, 250);
        for doc in &docs {
            assert!(doc["Events"].as_array().is_none_or(|v| v.len() <= MAX_VALUES));
            assert!(doc.to_string().len() < 10_000, "correlation ids are capped");
        }
    }

    #[test]
    fn throttling_codes_are_found_whole() {
        assert!(contains(
            br#"{"__type":"ThrottlingException","message":"x"}"#,
            b"ThrottlingException"
        ));
        assert!(contains(b"<Code>Throttling</Code>", b"Throttling"));
        assert!(!contains(b"<Code>ThrottlingX</Code>", b"Throttling"));
    }
}
