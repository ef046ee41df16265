//! Writing tags with `TagResources`: at most 20 ARNs a call, and the per-resource failures of
//! `FailedResourcesMap` (which come back with HTTP 200) handled: throttled entries are retried
//! with backoff inside the invocation's remaining time, any other failure is an error.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use common::HandlerError;
use common::aws::{AwsError, THROTTLING_CODES};
use common::tagging::TaggingApi;
use tokio::time::Instant;

use crate::TagSet;

/// `TagResources` accepts at most this many ARNs in one call.
pub const MAX_ARNS_PER_CALL: usize = 20;

/// One entry of `FailedResourcesMap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFailure {
    pub code: String,
    pub status: Option<i32>,
    pub message: String,
}

impl TagFailure {
    pub fn is_throttled(&self) -> bool {
        THROTTLING_CODES.contains(&self.code.as_str()) || self.status == Some(429)
    }
}

/// The tag write, behind a trait so the retry logic is testable without AWS.
pub trait TagWriter: Send + Sync {
    /// Tags every ARN (at most [`MAX_ARNS_PER_CALL`]); returns the per-ARN failures.
    fn tag_resources(
        &self,
        arns: &[String],
        tags: &TagSet,
    ) -> impl Future<Output = Result<BTreeMap<String, TagFailure>, AwsError>> + Send;
}

impl TagWriter for TaggingApi {
    async fn tag_resources(&self, arns: &[String], tags: &TagSet) -> Result<BTreeMap<String, TagFailure>, AwsError> {
        let output = self
            .client()
            .tag_resources()
            .set_resource_arn_list(Some(arns.to_vec()))
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResources", &e))?;
        Ok(output
            .failed_resources_map()
            .into_iter()
            .flatten()
            .map(|(arn, info)| {
                let failure = TagFailure {
                    code: info.error_code().map(|c| c.as_str().to_string()).unwrap_or_default(),
                    status: Some(info.status_code()).filter(|s| *s != 0),
                    message: info.error_message().unwrap_or_default().to_string(),
                };
                (arn.clone(), failure)
            })
            .collect())
    }
}

/// How throttled entries are retried.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Time kept in hand at the end of the invocation, to report instead of being killed.
    pub reserve: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reserve: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    /// Full jitter: a delay between half and all of the exponential step.
    fn delay(&self, attempt: u32) -> Duration {
        let step = self.first.saturating_mul(2u32.saturating_pow(attempt)).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
        step.mul_f64(fraction)
    }
}

/// Writes `tags` on every ARN, at most 20 a call, retrying throttled ARNs until `deadline`.
/// Returns the number of `TagResources` calls made.
pub async fn write_tags(
    writer: &impl TagWriter,
    arns: &[String],
    tags: &TagSet,
    backoff: Backoff,
    deadline: Instant,
) -> Result<u32, HandlerError> {
    let mut calls = 0;
    for chunk in arns.chunks(MAX_ARNS_PER_CALL) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        loop {
            calls += 1;
            let failures = writer.tag_resources(&pending, tags).await?;
            if failures.is_empty() {
                break;
            }
            if let Some((arn, failure)) = failures.iter().find(|(_, f)| !f.is_throttled()) {
                return Err(HandlerError::Permanent(
                    format!("TagResources failed for {arn}: {} {}", failure.code, failure.message).into(),
                ));
            }
            let delay = backoff.delay(attempt);
            if Instant::now() + delay + backoff.reserve > deadline {
                return Err(HandlerError::Retryable(
                    format!(
                        "TagResources still throttled for {} after {} attempts; no time left to retry",
                        failures.keys().cloned().collect::<Vec<_>>().join(", "),
                        attempt + 1
                    )
                    .into(),
                ));
            }
            tracing::info!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                throttled = failures.len(),
                "retrying throttled TagResources"
            );
            tokio::time::sleep(delay).await;
            pending = failures.into_keys().collect();
            attempt += 1;
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers each call from a script of failure maps, recording what it was asked.
    struct Scripted {
        answers: Mutex<Vec<BTreeMap<String, TagFailure>>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(answers: Vec<BTreeMap<String, TagFailure>>) -> Self {
            Scripted {
                answers: Mutex::new(answers),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl TagWriter for Scripted {
        async fn tag_resources(&self, arns: &[String], _: &TagSet) -> Result<BTreeMap<String, TagFailure>, AwsError> {
            self.calls.lock().unwrap().push(arns.to_vec());
            let mut answers = self.answers.lock().unwrap();
            Ok(if answers.is_empty() {
                BTreeMap::new()
            } else {
                answers.remove(0)
            })
        }
    }

    fn failure(code: &str) -> TagFailure {
        TagFailure {
            code: code.into(),
            status: Some(400),
            message: "m".into(),
        }
    }

    fn arns(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("arn:aws:sqs:us-east-1:1:q{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_of_twenty() {
        let writer = Scripted::new(vec![]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let calls = write_tags(&writer, &arns(45), &TagSet::new(), Backoff::default(), deadline)
            .await
            .unwrap();
        assert_eq!(calls, 3);
        let sizes: Vec<usize> = writer.calls.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![20, 20, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_the_throttled_arns() {
        let all = arns(3);
        let throttled: BTreeMap<_, _> = [(all[1].clone(), failure("ThrottlingException"))].into();
        let writer = Scripted::new(vec![throttled]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let calls = write_tags(&writer, &all, &TagSet::new(), Backoff::default(), deadline)
            .await
            .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(writer.calls.lock().unwrap()[1], vec![all[1].clone()]);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_permanent() {
        let all = arns(1);
        let writer = Scripted::new(vec![[(all[0].clone(), failure("InvalidParameterException"))].into()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = write_tags(&writer, &all, &TagSet::new(), Backoff::default(), deadline)
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Permanent(m) if m.contains("InvalidParameterException")));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_as_retryable_when_time_runs_out() {
        let all = arns(1);
        let throttled: BTreeMap<_, _> = [(all[0].clone(), failure("ThrottlingException"))].into();
        let writer = Scripted::new(vec![throttled; 100]);
        let deadline = Instant::now() + Duration::from_secs(3);
        let err = write_tags(&writer, &all, &TagSet::new(), Backoff::default(), deadline)
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Retryable(m) if m.contains("still throttled")));
        let calls = writer.calls.lock().unwrap().len();
        assert!((2..100).contains(&calls), "retried within the time only: {calls} calls");
    }
}
