//! Exactly once per change, for any handler whose side effect cannot be read back first (a
//! Slack message): the change's identity ([`change_key`]), a persistence layer ([`Persistence`],
//! DynamoDB in production, [`MemoryStore`] in unit tests), and one entry, [`Idempotency::run`],
//! that runs the whole claim protocol around the side effect (README, "Exactly once"):
//!
//! 1. claim the key with one conditional write, which returns the old record when it fails
//!    ("done already" or "in progress elsewhere" without a second read); the claim holds for
//!    the invocation's remaining time, at most `max_in_progress`;
//! 2. act, with a deadline that ends [`CLAIM_MARGIN`] before the claim expires, so the claim
//!    always outlives the work it guards (no second invocation can claim while we act);
//! 3. done: complete the record, retried within the remaining time; if completing still fails
//!    the side effect happened all the same, so the answer is success with a warning, never an
//!    error that would make the caller retry and act twice;
//! 4. certainly failed: release the claim (only its owner can), so a retry can act;
//! 5. uncertain (the request left but no answer came back): as [`OnUncertain`] says;
//! 6. in progress elsewhere: wait briefly for that invocation; if it completes, `duplicate`;
//!    if its claim is released or lapses, claim again; else a retryable failure.
//!
//! The key comes from the change's meaning (function, managed resource, lifecycle, and the
//! facts that identify the change), never from a transport's ids or timestamps. The store also
//! remembers facts across changes ([`Persistence::remember`]), e.g. which lifetime of a
//! database was announced ready, so that its deletion can be proven and keyed.
//!
//! DynamoDB table: partition key `id` (String); TTL attribute `expires_at` (epoch seconds).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::aws::AwsError;
use crate::error::HandlerError;
use crate::model::Lifecycle;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoStore;

/// The act's deadline ends this long before its claim expires (clock skew, the completing write).
pub const CLAIM_MARGIN: Duration = Duration::from_secs(2);
/// A claim shorter than this cannot guard a side effect: refused at start.
pub const MIN_IN_PROGRESS: Duration = Duration::from_secs(5);

/// The idempotency key of one change: `function`, the managed resource (`subject`, its API
/// path), the lifecycle, and `identity`, the facts that name this change whatever delivered it
/// (e.g. `born=2026-11-20T09:02:41Z` for a database's lifetime). Returns (key, readable form).
pub fn change_key(function: &str, subject: &str, lifecycle: Lifecycle, identity: &str) -> (String, String) {
    let readable = format!("{function}#{subject}#{}#{identity}", lifecycle.as_str());
    // Keys stay short and uniform whatever the names; the readable form is stored beside it.
    let digest = hex::encode(Sha256::digest(readable.as_bytes()));
    (format!("{function}#{digest}"), readable)
}

/// The key of facts remembered about `about` (a subject, an ARN) under a `topic`.
pub fn fact_key(function: &str, topic: &str, about: &str) -> String {
    let digest = hex::encode(Sha256::digest(about.as_bytes()));
    format!("{function}#{topic}#{digest}")
}

/// An RFC 3339 time at second precision, so `…:07Z` and `…:07.000Z` (two producers' renderings
/// of one instant) name the same change. Anything unparsable is kept as it is.
pub fn normalise_time(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| time.to_string())
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours, until this epoch millisecond.
    Acquired { until_ms: u64 },
    /// Done before; the stored result.
    Completed(String),
    /// Another invocation holds it until this epoch millisecond.
    InProgress { until_ms: u64 },
}

/// How long records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The longest an in-progress claim lives (also bounded by the invocation's remaining time).
    pub max_in_progress: Duration,
    /// How long a completed record is kept (DynamoDB TTL).
    pub completed_ttl: Duration,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            max_in_progress: Duration::from_secs(900),
            completed_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The records behind the protocol. Every method is one conditional write or one read.
pub trait Persistence: Send + Sync {
    /// Claims `key` for `owner` until `until_ms` if it is new, its record has expired, or an
    /// in-progress claim has lapsed; else returns what holds it.
    fn claim(
        &self,
        key: &str,
        owner: &str,
        description: &str,
        until_ms: u64,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;
    /// The live record of `key`, if any.
    fn peek(&self, key: &str) -> impl Future<Output = Result<Option<Claim>, AwsError>> + Send;
    /// Marks `owner`'s claim completed with `result`, kept until `expires_s`. `Ok(false)`: the
    /// claim is no longer `owner`'s (it lapsed and another invocation took it).
    fn complete(
        &self,
        key: &str,
        owner: &str,
        result: &str,
        expires_s: u64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Deletes `owner`'s in-progress claim; someone else's is left alone.
    fn release(&self, key: &str, owner: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Stores facts under `key` (no expiry when `expires_s` is `None`).
    fn remember(
        &self,
        key: &str,
        facts: &BTreeMap<String, String>,
        expires_s: Option<u64>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The facts stored under `key`, if any and not expired.
    fn recall(&self, key: &str) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, AwsError>> + Send;
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The side effect's own account of what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// It happened; a short description to keep in the record.
    Done(String),
    /// It certainly did not happen (refused connection, an error answer): a retry may act.
    Failed(HandlerError),
    /// It may have happened: the request left, and no answer came back.
    Uncertain(HandlerError),
}

/// What to do when a side effect's result is unknown (`SLACK_ON_UNCERTAIN_DELIVERY` for Slack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUncertain {
    /// Record it as done (at most once: a lost answer may hide a lost message).
    AssumeDone,
    /// Release the claim and fail retryably (at least once: a lost answer may bring a duplicate).
    Retry,
}

impl OnUncertain {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "assume-delivered" => Some(OnUncertain::AssumeDone),
            "retry" => Some(OnUncertain::Retry),
            _ => None,
        }
    }
}

/// The protocol's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub expiry: Expiry,
    /// How long a duplicate waits for another invocation's claim to complete.
    pub wait_for_other: Duration,
    pub on_uncertain: OnUncertain,
    /// How often completing the record is tried after the side effect succeeded.
    pub complete_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            expiry: Expiry::default(),
            wait_for_other: Duration::from_secs(2),
            on_uncertain: OnUncertain::AssumeDone,
            complete_attempts: 4,
        }
    }
}

impl Config {
    /// Refuses a claim too short to guard any side effect.
    pub fn check(&self) -> Result<(), String> {
        if self.expiry.max_in_progress < MIN_IN_PROGRESS {
            return Err(format!(
                "IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS={} is below the {} s a claim needs to outlive the work it guards",
                self.expiry.max_in_progress.as_secs(),
                MIN_IN_PROGRESS.as_secs()
            ));
        }
        Ok(())
    }
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// We acted. `warning`: the record could not be completed, or the result was uncertain.
    Acted { result: String, warning: Option<String> },
    /// The change was done before.
    AlreadyDone(String),
    /// Another invocation did it while we waited.
    DoneByOther(String),
}

/// The claim protocol over a [`Persistence`].
#[derive(Debug)]
pub struct Idempotency<P> {
    store: P,
    config: Config,
}

/// Numbers each run of the protocol in this process.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a lapsed or released claim of another invocation is claimed again.
const RECLAIMS: u32 = 3;

impl<P: Persistence> Idempotency<P> {
    pub fn new(store: P, config: Config) -> Self {
        Idempotency { store, config }
    }

    pub fn store(&self) -> &P {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `act` at most once for `key` across every invocation (but see [`OnUncertain`]).
    /// `act` receives the deadline it must finish by: the invocation's, cut to end
    /// [`CLAIM_MARGIN`] before the claim expires.
    pub async fn run<F, Fut>(
        &self,
        key: &str,
        description: &str,
        owner: &str,
        deadline: Instant,
        act: F,
    ) -> Result<Ran, HandlerError>
    where
        F: FnOnce(Instant) -> Fut,
        Fut: Future<Output = Effect>,
    {
        // Unique per run, even for two deliveries of one event in one invocation: a claim that
        // comes back as ours is then only ever this run's own write, sent again by the SDK.
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = &format!("{owner}#{run}");
        let mut reclaims = 0;
        let until_ms = loop {
            let hold = deadline
                .saturating_duration_since(Instant::now())
                .min(self.config.expiry.max_in_progress);
            let until_ms = millis(now() + hold);
            match self.store.claim(key, owner, description, until_ms).await? {
                Claim::Acquired { until_ms } => break until_ms,
                Claim::Completed(result) => return Ok(Ran::AlreadyDone(result)),
                Claim::InProgress { until_ms } => match self.wait_for_other(key, until_ms, deadline).await? {
                    Some(result) => return Ok(Ran::DoneByOther(result)),
                    None if reclaims < RECLAIMS => reclaims += 1,
                    None => {
                        return Err(HandlerError::Retryable(
                            "another invocation holds this change; retry to confirm it was done".into(),
                        ));
                    }
                },
            }
        };
        let claim_left = Duration::from_millis(until_ms.saturating_sub(millis(now())));
        let act_deadline = deadline.min(Instant::now() + claim_left.saturating_sub(CLAIM_MARGIN));
        match act(act_deadline).await {
            Effect::Done(result) => Ok(self.complete(key, owner, &result, deadline).await),
            Effect::Failed(error) => {
                self.release(key, owner).await;
                Err(error)
            }
            Effect::Uncertain(error) => match self.config.on_uncertain {
                OnUncertain::AssumeDone => {
                    let result = format!("delivery uncertain, assumed done: {}", error.message());
                    let Ran::Acted { result, warning } = self.complete(key, owner, &result, deadline).await else {
                        return Err(error);
                    };
                    let warning = Some(warning.map_or(result.clone(), |w| format!("{result}; {w}")));
                    Ok(Ran::Acted { result, warning })
                }
                OnUncertain::Retry => {
                    self.release(key, owner).await;
                    Err(HandlerError::retryable(
                        format!("delivery uncertain, released for a retry: {}", error.message()),
                        error,
                    ))
                }
            },
        }
    }

    /// Completes the record, retried within the time left; the side effect happened, so a
    /// failure here is only a warning.
    async fn complete(&self, key: &str, owner: &str, result: &str, deadline: Instant) -> Ran {
        let expires_s = (now() + self.config.expiry.completed_ttl).as_secs();
        let mut pause = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 1..=self.config.complete_attempts.max(1) {
            match self.store.complete(key, owner, result, expires_s).await {
                Ok(true) => {
                    return Ran::Acted {
                        result: result.to_string(),
                        warning: None,
                    };
                }
                Ok(false) => {
                    last = "the claim had lapsed and another invocation holds it".to_string();
                    break;
                }
                Err(error) => last = error.to_string(),
            }
            if attempt < self.config.complete_attempts && Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                pause *= 2;
            } else {
                break;
            }
        }
        tracing::warn!(key, error = %last, "done, but the idempotency record could not be completed");
        Ran::Acted {
            result: result.to_string(),
            warning: Some(format!("the idempotency record could not be completed ({last})")),
        }
    }

    async fn release(&self, key: &str, owner: &str) {
        if let Err(error) = self.store.release(key, owner).await {
            tracing::warn!(key, error = %error, "could not release the idempotency claim; it expires on its own");
        }
    }

    /// Waits for another invocation's claim: `Some(result)` once it completes, `None` once it is
    /// released or has lapsed (claim again), or an error when waiting ran out.
    async fn wait_for_other(
        &self,
        key: &str,
        until_ms: u64,
        deadline: Instant,
    ) -> Result<Option<String>, HandlerError> {
        let budget = self
            .config
            .wait_for_other
            .min(deadline.saturating_duration_since(Instant::now()) / 4);
        let give_up = Instant::now() + budget;
        let mut held_until = until_ms;
        loop {
            if held_until <= millis(now()) {
                return Ok(None);
            }
            if Instant::now() >= give_up {
                return Err(HandlerError::Retryable(
                    "another invocation is acting on this change; retry to confirm it was done".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.store.peek(key).await? {
                Some(Claim::Completed(result)) => return Ok(Some(result)),
                Some(Claim::InProgress { until_ms }) => held_until = until_ms,
                Some(Claim::Acquired { .. }) | None => return Ok(None),
            }
        }
    }
}

/// [`Persistence`] in memory, with DynamoDB's semantics, for unit tests of the protocol and of
/// the handlers that use it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, MemoryRecord>>,
}

#[derive(Debug, Clone)]
enum MemoryRecord {
    InProgress {
        owner: String,
        until_ms: u64,
    },
    Completed {
        result: String,
        expires_s: u64,
    },
    Facts {
        facts: BTreeMap<String, String>,
        expires_s: Option<u64>,
    },
}

impl MemoryRecord {
    fn live(&self, now: Duration) -> bool {
        match self {
            MemoryRecord::InProgress { until_ms, .. } => *until_ms >= millis(now),
            MemoryRecord::Completed { expires_s, .. } => *expires_s >= now.as_secs(),
            MemoryRecord::Facts { expires_s, .. } => expires_s.is_none_or(|e| e >= now.as_secs()),
        }
    }
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, MemoryRecord>) -> T) -> Result<T, AwsError> {
        let mut records = self.records.lock().map_err(|_| AwsError {
            operation: "MemoryStore",
            retryable: false,
            code: None,
            message: "poisoned".into(),
        })?;
        Ok(f(&mut records))
    }
}

impl Persistence for MemoryStore {
    async fn claim(&self, key: &str, owner: &str, _description: &str, until_ms: u64) -> Result<Claim, AwsError> {
        let now = now();
        self.with(|records| match records.get(key).filter(|r| r.live(now)) {
            Some(MemoryRecord::Completed { result, .. }) => Claim::Completed(result.clone()),
            Some(MemoryRecord::InProgress {
                owner: holder,
                until_ms,
            }) if holder == owner => Claim::Acquired { until_ms: *until_ms },
            Some(MemoryRecord::InProgress { until_ms, .. }) => Claim::InProgress { until_ms: *until_ms },
            _ => {
                records.insert(
                    key.to_string(),
                    MemoryRecord::InProgress {
                        owner: owner.to_string(),
                        until_ms,
                    },
                );
                Claim::Acquired { until_ms }
            }
        })
    }

    async fn peek(&self, key: &str) -> Result<Option<Claim>, AwsError> {
        let now = now();
        self.with(|records| match records.get(key).filter(|r| r.live(now)) {
            Some(MemoryRecord::Completed { result, .. }) => Some(Claim::Completed(result.clone())),
            Some(MemoryRecord::InProgress { until_ms, .. }) => Some(Claim::InProgress { until_ms: *until_ms }),
            _ => None,
        })
    }

    async fn complete(&self, key: &str, owner: &str, result: &str, expires_s: u64) -> Result<bool, AwsError> {
        self.with(|records| match records.get(key) {
            Some(MemoryRecord::InProgress { owner: holder, .. }) if holder == owner => {
                records.insert(
                    key.to_string(),
                    MemoryRecord::Completed {
                        result: result.to_string(),
                        expires_s,
                    },
                );
                true
            }
            _ => false,
        })
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), AwsError> {
        self.with(|records| {
            if matches!(records.get(key), Some(MemoryRecord::InProgress { owner: holder, .. }) if holder == owner) {
                records.remove(key);
            }
        })
    }

    async fn remember(
        &self,
        key: &str,
        facts: &BTreeMap<String, String>,
        expires_s: Option<u64>,
    ) -> Result<(), AwsError> {
        self.with(|records| {
            records.insert(
                key.to_string(),
                MemoryRecord::Facts {
                    facts: facts.clone(),
                    expires_s,
                },
            );
        })
    }

    async fn recall(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
        let now = now();
        self.with(|records| match records.get(key).filter(|r| r.live(now)) {
            Some(MemoryRecord::Facts { facts, .. }) => Some(facts.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn protocol(config: Config) -> Idempotency<MemoryStore> {
        Idempotency::new(MemoryStore::default(), config)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn keys_name_the_change_not_the_delivery() {
        let subject = "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/a/instances/db";
        let (a, _) = change_key("slack-notifier", subject, Lifecycle::Ready, "born=2026-01-01T00:00:00Z");
        let (b, readable) = change_key("slack-notifier", subject, Lifecycle::Ready, "born=2026-01-01T00:00:00Z");
        assert_eq!(a, b);
        assert!(readable.contains(subject) && readable.contains("ready"));
        let (c, _) = change_key("slack-notifier", subject, Lifecycle::Ready, "born=2026-02-01T00:00:00Z");
        assert_ne!(a, c, "another lifetime is another change");
        let (d, _) = change_key(
            "slack-notifier",
            subject,
            Lifecycle::Deleted,
            "born=2026-01-01T00:00:00Z",
        );
        assert_ne!(a, d);
        let (e, _) = change_key("other-function", subject, Lifecycle::Ready, "born=2026-01-01T00:00:00Z");
        assert_ne!(a, e);
        assert!(a.len() < 100);
    }

    #[test]
    fn times_are_compared_at_second_precision() {
        assert_eq!(normalise_time("2026-11-21T15:02:10.456Z"), "2026-11-21T15:02:10Z");
        assert_eq!(normalise_time("2026-11-21T16:02:10+01:00"), "2026-11-21T15:02:10Z");
        assert_eq!(normalise_time("not a time"), "not a time");
    }

    #[tokio::test]
    async fn acts_once_then_answers_already_done() {
        let p = protocol(Config::default());
        let acted = AtomicU32::new(0);
        let act = |_| async {
            acted.fetch_add(1, Ordering::SeqCst);
            Effect::Done("posted".into())
        };
        let first = p.run("k", "d", "a", soon(), act).await.unwrap();
        assert!(matches!(first, Ran::Acted { warning: None, .. }), "{first:?}");
        let again = p
            .run("k", "d", "b", soon(), |_| async { Effect::Done("again".into()) })
            .await
            .unwrap();
        assert_eq!(again, Ran::AlreadyDone("posted".into()));
        assert_eq!(acted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_certain_failure_releases_the_claim_for_a_retry() {
        let p = protocol(Config::default());
        let failed = p
            .run("k", "d", "a", soon(), |_| async {
                Effect::Failed(HandlerError::Retryable("500".into()))
            })
            .await;
        assert!(matches!(failed, Err(HandlerError::Retryable(_))));
        let retried = p
            .run("k", "d", "b", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap();
        assert!(matches!(retried, Ran::Acted { .. }), "{retried:?}");
    }

    #[tokio::test]
    async fn uncertain_delivery_follows_the_policy() {
        let assume = protocol(Config::default());
        let uncertain = || async { Effect::Uncertain(HandlerError::Retryable("timed out".into())) };
        let ran = assume.run("k", "d", "a", soon(), |_| uncertain()).await.unwrap();
        assert!(
            matches!(&ran, Ran::Acted { warning: Some(w), .. } if w.contains("uncertain")),
            "{ran:?}"
        );
        let retry_after = assume
            .run("k", "d", "b", soon(), |_| async { Effect::Done("x".into()) })
            .await
            .unwrap();
        assert!(
            matches!(retry_after, Ran::AlreadyDone(_)),
            "assumed done: no second act"
        );

        let retry = protocol(Config {
            on_uncertain: OnUncertain::Retry,
            ..Config::default()
        });
        let err = retry.run("k", "d", "a", soon(), |_| uncertain()).await.unwrap_err();
        assert!(err.message().contains("uncertain"), "{err}");
        let second = retry
            .run("k", "d", "b", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap();
        assert!(matches!(second, Ran::Acted { .. }), "released: the retry acts");
    }

    /// A store whose completing write fails a given number of times.
    struct FailingComplete {
        inner: MemoryStore,
        failures: AtomicU32,
    }

    impl Persistence for FailingComplete {
        async fn claim(&self, k: &str, o: &str, d: &str, u: u64) -> Result<Claim, AwsError> {
            self.inner.claim(k, o, d, u).await
        }
        async fn peek(&self, k: &str) -> Result<Option<Claim>, AwsError> {
            self.inner.peek(k).await
        }
        async fn complete(&self, k: &str, o: &str, r: &str, e: u64) -> Result<bool, AwsError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(AwsError {
                    operation: "UpdateItem",
                    retryable: true,
                    code: Some("ThrottlingException".into()),
                    message: "throttled".into(),
                });
            }
            self.inner.complete(k, o, r, e).await
        }
        async fn release(&self, k: &str, o: &str) -> Result<(), AwsError> {
            self.inner.release(k, o).await
        }
        async fn remember(&self, k: &str, f: &BTreeMap<String, String>, e: Option<u64>) -> Result<(), AwsError> {
            self.inner.remember(k, f, e).await
        }
        async fn recall(&self, k: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
            self.inner.recall(k).await
        }
    }

    #[tokio::test]
    async fn success_is_never_reported_as_failure_when_completing_fails() {
        let p = Idempotency::new(
            FailingComplete {
                inner: MemoryStore::default(),
                failures: AtomicU32::new(2),
            },
            Config::default(),
        );
        let ran = p
            .run("k", "d", "a", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap();
        assert_eq!(
            ran,
            Ran::Acted {
                result: "posted".into(),
                warning: None
            },
            "retried until it completed"
        );
        let p = Idempotency::new(
            FailingComplete {
                inner: MemoryStore::default(),
                failures: AtomicU32::new(100),
            },
            Config::default(),
        );
        let ran = p
            .run("k", "d", "a", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap();
        assert!(
            matches!(&ran, Ran::Acted { warning: Some(w), .. } if w.contains("could not be completed")),
            "{ran:?}"
        );
    }

    #[test]
    fn fact_keys_name_the_function_the_topic_and_what_they_are_about() {
        let key = fact_key("slack-notifier", "lifetime", "arn:aws:rds:us-east-1:111122223333:db:a");
        assert!(key.starts_with("slack-notifier#lifetime#"), "{key}");
        assert_eq!(
            key.len(),
            "slack-notifier#lifetime#".len() + 64,
            "a SHA-256 of what it is about"
        );
        assert_eq!(
            key,
            fact_key("slack-notifier", "lifetime", "arn:aws:rds:us-east-1:111122223333:db:a")
        );
        assert_ne!(
            key,
            fact_key("slack-notifier", "lifetime", "arn:aws:rds:us-east-1:111122223333:db:b")
        );
        assert_ne!(
            key,
            fact_key("slack-notifier", "other", "arn:aws:rds:us-east-1:111122223333:db:a")
        );
        assert_ne!(
            key,
            fact_key("secret-syncer", "lifetime", "arn:aws:rds:us-east-1:111122223333:db:a")
        );
    }

    #[test]
    fn the_uncertain_delivery_policy_has_two_names() {
        assert_eq!(OnUncertain::parse("assume-delivered"), Some(OnUncertain::AssumeDone));
        assert_eq!(OnUncertain::parse("retry"), Some(OnUncertain::Retry));
        assert_eq!(OnUncertain::parse("Retry"), None);
        assert_eq!(OnUncertain::parse(""), None);
    }

    #[test]
    fn a_claim_of_the_minimum_hold_is_enough_and_a_shorter_one_is_refused() {
        let with_hold = |max_in_progress| Config {
            expiry: Expiry {
                max_in_progress,
                ..Expiry::default()
            },
            ..Config::default()
        };
        assert_eq!(with_hold(MIN_IN_PROGRESS).check(), Ok(()));
        let err = with_hold(MIN_IN_PROGRESS - Duration::from_millis(1))
            .check()
            .unwrap_err();
        assert!(err.contains("IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS=4"), "{err}");
        let config = Config {
            complete_attempts: 7,
            on_uncertain: OnUncertain::Retry,
            ..with_hold(Duration::from_secs(42))
        };
        assert_eq!(protocol(config).config(), &config);
    }

    #[tokio::test]
    async fn the_memory_store_answers_peeks_and_completes_as_dynamodb_does() {
        let store = MemoryStore::default();
        let until = millis(now() + Duration::from_secs(30));
        assert_eq!(store.peek("k").await.unwrap(), None);
        store.claim("k", "a#1", "d", until).await.unwrap();
        assert_eq!(
            store.peek("k").await.unwrap(),
            Some(Claim::InProgress { until_ms: until })
        );
        assert!(
            !store.complete("k", "b#1", "posted", u64::MAX).await.unwrap(),
            "not the holder"
        );
        assert_eq!(
            store.peek("k").await.unwrap(),
            Some(Claim::InProgress { until_ms: until })
        );
        assert!(store.complete("k", "a#1", "posted", u64::MAX).await.unwrap());
        assert_eq!(store.peek("k").await.unwrap(), Some(Claim::Completed("posted".into())));
    }

    /// A store that answers as scripted, counting calls: its completing write always fails;
    /// with `lapsing`, another invocation always holds the claim and its hold has always just
    /// lapsed, and past ten claims it fails loudly, so a run that never gives up ends the test.
    #[derive(Default)]
    struct Scripted {
        lapsing: bool,
        claims: AtomicU32,
        completes: AtomicU32,
    }

    fn throttled(operation: &'static str) -> AwsError {
        AwsError {
            operation,
            retryable: true,
            code: Some("ThrottlingException".into()),
            message: "throttled".into(),
        }
    }

    impl Persistence for Scripted {
        async fn claim(&self, _: &str, _: &str, _: &str, until_ms: u64) -> Result<Claim, AwsError> {
            let before = self.claims.fetch_add(1, Ordering::SeqCst);
            match (self.lapsing, before >= 10) {
                (false, _) => Ok(Claim::Acquired { until_ms }),
                (true, false) => Ok(Claim::InProgress { until_ms: 0 }),
                (true, true) => Err(throttled("PutItem")),
            }
        }
        async fn peek(&self, _: &str) -> Result<Option<Claim>, AwsError> {
            Ok(None)
        }
        async fn complete(&self, _: &str, _: &str, _: &str, _: u64) -> Result<bool, AwsError> {
            self.completes.fetch_add(1, Ordering::SeqCst);
            Err(throttled("UpdateItem"))
        }
        async fn release(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn remember(&self, _: &str, _: &BTreeMap<String, String>, _: Option<u64>) -> Result<(), AwsError> {
            Ok(())
        }
        async fn recall(&self, _: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
            Ok(None)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn completing_is_tried_with_doubling_pauses_while_the_deadline_allows() {
        let p = Idempotency::new(Scripted::default(), Config::default());
        let start = Instant::now();
        let ran = p.complete("k", "a#1", "posted", start + Duration::from_secs(60)).await;
        assert_eq!(p.store().completes.load(Ordering::SeqCst), 4, "complete_attempts");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100 + 200 + 400),
            "no pause after the last"
        );
        assert!(
            matches!(&ran, Ran::Acted { warning: Some(w), .. } if w.contains("throttled")),
            "{ran:?}"
        );

        // A pause that would reach the deadline is not taken: one attempt, no wait.
        let p = Idempotency::new(Scripted::default(), Config::default());
        let start = Instant::now();
        p.complete("k", "a#1", "posted", start + Duration::from_millis(100))
            .await;
        assert_eq!(p.store().completes.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_that_keeps_lapsing_is_claimed_again_three_times_then_left_for_a_retry() {
        let lapsing = Scripted {
            lapsing: true,
            ..Scripted::default()
        };
        let p = Idempotency::new(lapsing, Config::default());
        let err = p
            .run("k", "d", "b", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HandlerError::Retryable("another invocation holds this change; retry to confirm it was done".into())
        );
        assert_eq!(p.store().claims.load(Ordering::SeqCst), 1 + RECLAIMS);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_another_invocation_takes_at_most_a_quarter_of_the_time_left() {
        let p = protocol(Config {
            wait_for_other: Duration::from_secs(10),
            ..Config::default()
        });
        p.store()
            .claim("k", "other#1", "d", millis(now() + Duration::from_secs(600)))
            .await
            .unwrap();
        let start = Instant::now();
        let err = p
            .run("k", "d", "b", start + Duration::from_secs(2), |_| async {
                Effect::Done("posted".into())
            })
            .await
            .unwrap_err();
        assert!(
            err.message().contains("another invocation is acting on this change"),
            "{err}"
        );
        // A quarter of 2 s is 0.5 s, checked every 0.2 s: it gives up at the third check.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }

    #[tokio::test]
    async fn the_act_deadline_ends_before_the_claim() {
        let p = protocol(Config {
            expiry: Expiry {
                max_in_progress: Duration::from_secs(6),
                ..Expiry::default()
            },
            ..Config::default()
        });
        let invocation_deadline = Instant::now() + Duration::from_secs(60);
        let ran = p
            .run("k", "d", "a", invocation_deadline, |act_deadline| async move {
                let left = act_deadline.saturating_duration_since(Instant::now());
                assert!(left <= Duration::from_secs(6) - CLAIM_MARGIN, "{left:?}");
                assert!(left > Duration::from_secs(3), "{left:?}");
                Effect::Done("posted".into())
            })
            .await
            .unwrap();
        assert!(matches!(ran, Ran::Acted { .. }));
        assert!(
            Config {
                expiry: Expiry {
                    max_in_progress: Duration::from_secs(2),
                    ..Expiry::default()
                },
                ..Config::default()
            }
            .check()
            .is_err()
        );
        assert!(Config::default().check().is_ok());
    }

    #[tokio::test]
    async fn concurrent_runs_act_once() {
        let p = Arc::new(protocol(Config::default()));
        let acted = Arc::new(AtomicU32::new(0));
        let runs = (0..16).map(|i| {
            let (p, acted) = (Arc::clone(&p), Arc::clone(&acted));
            tokio::spawn(async move {
                p.run("k", "d", &format!("owner-{i}"), soon(), |_| async move {
                    acted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Effect::Done("posted".into())
                })
                .await
            })
        });
        let results = futures_util::future::join_all(runs).await;
        assert_eq!(acted.load(Ordering::SeqCst), 1);
        for result in results {
            let ran = result.unwrap().unwrap();
            assert!(
                !matches!(ran, Ran::Acted { .. })
                    || ran
                        == Ran::Acted {
                            result: "posted".into(),
                            warning: None
                        }
            );
        }
    }

    #[tokio::test]
    async fn a_released_claim_of_another_invocation_is_claimed_again() {
        let p = protocol(Config::default());
        let store = p.store();
        store
            .claim("k", "crashed", "d", millis(now() + Duration::from_millis(300)))
            .await
            .unwrap();
        let ran = p
            .run("k", "d", "b", soon(), |_| async { Effect::Done("posted".into()) })
            .await
            .unwrap();
        assert!(
            matches!(ran, Ran::Acted { .. }),
            "the lapsed claim is taken over: {ran:?}"
        );
    }

    #[tokio::test]
    async fn a_claim_sent_again_finds_itself_and_another_owner_does_not() {
        let store = MemoryStore::default();
        let until = millis(now() + Duration::from_secs(30));
        assert!(matches!(
            store.claim("k", "a#1", "d", until).await.unwrap(),
            Claim::Acquired { .. }
        ));
        assert!(
            matches!(
                store.claim("k", "a#1", "d", until).await.unwrap(),
                Claim::Acquired { .. }
            ),
            "the same write, sent again after its answer was lost"
        );
        assert!(matches!(
            store.claim("k", "a#2", "d", until).await.unwrap(),
            Claim::InProgress { .. }
        ));
    }

    #[tokio::test]
    async fn two_runs_of_one_invocation_and_event_act_once() {
        let p = protocol(Config::default());
        let acted = AtomicU32::new(0);
        let act = |_| async {
            acted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Effect::Done("posted".into())
        };
        let (a, b) = tokio::join!(
            p.run("k", "d", "req:event", soon(), act),
            p.run("k", "d", "req:event", soon(), act)
        );
        assert_eq!(acted.load(Ordering::SeqCst), 1, "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn facts_are_remembered_and_recalled() {
        let store = MemoryStore::default();
        let facts: BTreeMap<String, String> = [("arn".to_string(), "x".to_string())].into();
        store.remember("f", &facts, None).await.unwrap();
        assert_eq!(store.recall("f").await.unwrap(), Some(facts.clone()));
        store.remember("g", &facts, Some(1)).await.unwrap();
        assert_eq!(store.recall("g").await.unwrap(), None, "expired");
    }
}
