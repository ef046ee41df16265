//! Typed errors and their mapping to the Lambda `errorType`s of ARCHITECTURE.md §7.

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

/// Why handling an event failed. The variant decides the `errorType` and whether a retry helps.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HandlerError {
    #[error("invalid event: {0}")]
    Invalid(#[from] IntakeError),
    /// Throttling, timeouts, 5xx: the same event may succeed later.
    #[error("retryable failure: {0}")]
    Retryable(String),
    /// Configuration or permission problems, rejected requests: a retry would fail the same way.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl HandlerError {
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
            HandlerError::Retryable(m) | HandlerError::Permanent(m) => m.clone(),
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
}
