//! Typed errors and their mapping to the Lambda `errorType`s of ARCHITECTURE.md §7.

use std::fmt;
use std::sync::Arc;

use lambda_runtime::Diagnostic;
use thiserror::Error;

/// The input could not be understood. Carries where (`at`: a field, a record) and why.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{at}: {reason}")]
pub struct IntakeError {
    /// Where the problem is, e.g. `Records[2].body`, `subject`, `data.metadata.name`.
    pub at: String,
    /// What is wrong there.
    pub reason: String,
}

impl IntakeError {
    pub fn new(at: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            reason: reason.into(),
        }
    }

    /// The same error seen from an enclosing envelope: `Records[0].body` + `subject`.
    pub fn within(self, outer: &str) -> Self {
        let at = if self.at.is_empty() || self.at == "$" {
            outer.to_string()
        } else if self.at.starts_with('[') {
            format!("{outer}{}", self.at)
        } else {
            format!("{outer}.{}", self.at)
        };
        Self {
            at,
            reason: self.reason,
        }
    }
}

/// A failure's message (what the caller is told, verbatim) and the typed error it came from,
/// if any (an [`AwsError`](crate::aws::AwsError), an [`IntakeError`], a transport error),
/// exposed through [`std::error::Error::source`] for logs and tests; never a secret value.
#[derive(Debug, Clone)]
pub struct Failure {
    message: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            cause: None,
        }
    }

    /// A failure whose message is `message`, caused by `cause`.
    pub fn caused_by(message: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure {
            message: message.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The typed error this failure came from.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Two failures are the same when they say the same thing and come from the same cause (as it
/// prints: causes are of any type).
impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
            && self.cause.as_ref().map(ToString::to_string) == other.cause.as_ref().map(ToString::to_string)
    }
}

impl Eq for Failure {}

impl PartialEq<str> for Failure {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for Failure {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

/// The message, as text (`failure.contains(..)`).
impl std::ops::Deref for Failure {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::new(message)
    }
}

/// Why handling an event failed. The variant decides the `errorType` and whether a retry helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    Invalid(IntakeError),
    /// Throttling, timeouts, 5xx: the same event may succeed later.
    Retryable(Failure),
    /// Configuration or permission problems, rejected requests: a retry would fail the same way.
    Permanent(Failure),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Invalid(e) => write!(f, "invalid event: {e}"),
            HandlerError::Retryable(failure) => write!(f, "retryable failure: {failure}"),
            HandlerError::Permanent(failure) => write!(f, "permanent failure: {failure}"),
        }
    }
}

/// The source is the typed cause: the [`IntakeError`], or the error a failure came from.
impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandlerError::Invalid(e) => Some(e),
            HandlerError::Retryable(failure) | HandlerError::Permanent(failure) => std::error::Error::source(failure),
        }
    }
}

impl From<IntakeError> for HandlerError {
    fn from(e: IntakeError) -> Self {
        HandlerError::Invalid(e)
    }
}

impl HandlerError {
    /// A retryable failure told as `message`, caused by `cause`.
    pub fn retryable(message: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandlerError::Retryable(Failure::caused_by(message, cause))
    }

    /// A permanent failure told as `message`, caused by `cause`.
    pub fn permanent(message: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandlerError::Permanent(Failure::caused_by(message, cause))
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Invalid(_) => "InvalidEvent",
            HandlerError::Retryable(_) => "RetryableFailure",
            HandlerError::Permanent(_) => "PermanentFailure",
        }
    }

    /// Ranks errors so that a batch reports the one that decides what the caller should do:
    /// a retryable failure wins (a retry may fix it), then permanent, then invalid input.
    pub fn severity(&self) -> u8 {
        match self {
            HandlerError::Retryable(_) => 3,
            HandlerError::Permanent(_) => 2,
            HandlerError::Invalid(_) => 1,
        }
    }

    pub fn message(&self) -> String {
        match self {
            HandlerError::Invalid(e) => e.to_string(),
            HandlerError::Retryable(failure) | HandlerError::Permanent(failure) => failure.message().to_string(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.message(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_prefixes_paths() {
        let e = IntakeError::new("subject", "is empty");
        assert_eq!(e.clone().within("Records[1].body").at, "Records[1].body.subject");
        assert_eq!(IntakeError::new("$", "x").within("detail").at, "detail");
        assert_eq!(IntakeError::new("[2]", "x").within("Records").at, "Records[2]");
    }

    #[test]
    fn error_types_follow_the_contract() {
        let d: Diagnostic = HandlerError::Invalid(IntakeError::new("id", "is empty")).into();
        assert_eq!(d.error_type, "InvalidEvent");
        assert_eq!(d.error_message, "id: is empty");
        let d: Diagnostic = HandlerError::Retryable("throttled".into()).into();
        assert_eq!(d.error_type, "RetryableFailure");
        let d: Diagnostic = HandlerError::Permanent("denied".into()).into();
        assert_eq!(d.error_type, "PermanentFailure");
    }

    #[test]
    fn a_failure_keeps_its_typed_source_and_its_message() {
        use std::error::Error as _;
        let cause = crate::aws::AwsError {
            operation: "DescribeDBInstances",
            retryable: true,
            code: Some("Throttling".into()),
            message: "slow down".into(),
        };
        let e = HandlerError::retryable("the database could not be read", cause.clone());
        assert_eq!(e.message(), "the database could not be read");
        assert_eq!(e.to_string(), "retryable failure: the database could not be read");
        let source = e.source().and_then(|s| s.downcast_ref::<crate::aws::AwsError>());
        assert_eq!(source, Some(&cause));
        let d: Diagnostic = e.into();
        assert_eq!(d.error_message, "the database could not be read");

        let from_aws = HandlerError::from(cause.clone());
        assert_eq!(
            from_aws.message(),
            cause.to_string(),
            "the message callers see is unchanged"
        );
        assert!(from_aws.source().is_some_and(|s| s.is::<crate::aws::AwsError>()));

        let invalid = HandlerError::from(IntakeError::new("id", "is empty"));
        assert!(invalid.source().is_some_and(|s| s.is::<IntakeError>()));
        assert!(HandlerError::Permanent("denied".into()).source().is_none());
    }
}
