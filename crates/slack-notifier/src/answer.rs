//! What the notifier answers, decided from what happened and nothing else (no AWS, no Slack):
//! whether a lifecycle is wanted at all, what a post's result means to the claim protocol, and
//! the outcome of each way a run of the protocol ends.

use std::fmt::Display;

use common::idempotency::{Effect, Ran};
use common::model::Lifecycle;
use common::runtime::{Outcome, OutcomeKind};

use crate::webhook::Undelivered;

/// `Some(skipped)` when `NOTIFY_ON` does not name the event's lifecycle: nothing is read or posted.
pub fn unwanted(notify_on: &[Lifecycle], lifecycle: Lifecycle) -> Option<Outcome> {
    (!notify_on.contains(&lifecycle)).then(|| {
        Outcome::new(
            OutcomeKind::Skipped,
            None,
            format!("{}: not one of NOTIFY_ON", lifecycle.as_str()),
        )
    })
}

/// A post's result as the claim protocol needs it: done, certainly not done (the claim is
/// released for a retry), or perhaps done (`SLACK_ON_UNCERTAIN_DELIVERY` decides).
pub fn effect(posted: Result<(), Undelivered>, lifecycle: Lifecycle, description: &str) -> Effect {
    match posted {
        Ok(()) => Effect::Done(format!("posted {} for {description}", lifecycle.as_str())),
        Err(Undelivered::Certainly(error)) => Effect::Failed(error),
        Err(Undelivered::Perhaps(error)) => Effect::Uncertain(error),
    }
}

/// The outcome of a run: `applied` when this invocation posted (with any warning: the record
/// not completed, an uncertain delivery, a deletion's lifetime whose expiry was not set),
/// `duplicate` when the change was announced before or by another invocation meanwhile.
pub fn answer(ran: Ran, arn: Option<&str>, webhook: impl Display, lifetime_not_expiring: Option<&str>) -> Outcome {
    match ran {
        Ran::Acted { warning, .. } => {
            let mut detail = format!("posted to Slack ({webhook})");
            if let Some(error) = lifetime_not_expiring {
                detail.push_str(&format!("; warning: the lifetime's expiry was not set ({error})"));
            }
            if let Some(warning) = warning {
                detail.push_str(&format!("; warning: {warning}"));
            }
            Outcome::new(OutcomeKind::Applied, arn, detail)
        }
        Ran::AlreadyDone(result) => Outcome::new(OutcomeKind::Duplicate, arn, format!("already notified: {result}")),
        Ran::DoneByOther(result) => Outcome::new(
            OutcomeKind::Duplicate,
            arn,
            format!("notified by another invocation: {result}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use common::HandlerError;

    use super::*;

    const ARN: &str = "arn:aws:rds:us-east-1:111122223333:db:orders";

    #[test]
    fn only_the_lifecycles_of_notify_on_are_wanted() {
        let notify_on = [Lifecycle::Ready, Lifecycle::Deleted];
        assert_eq!(unwanted(&notify_on, Lifecycle::Ready), None);
        assert_eq!(unwanted(&notify_on, Lifecycle::Deleted), None);
        let skipped = unwanted(&notify_on, Lifecycle::Failed).unwrap();
        assert_eq!(skipped.kind, OutcomeKind::Skipped);
        assert_eq!(skipped.detail, "failed: not one of NOTIFY_ON");
        assert!(
            unwanted(&[], Lifecycle::Ready).is_some(),
            "an empty NOTIFY_ON wants nothing"
        );
    }

    #[test]
    fn a_post_is_done_failed_or_uncertain() {
        assert_eq!(
            effect(Ok(()), Lifecycle::Ready, "orders"),
            Effect::Done("posted ready for orders".into())
        );
        let refused = HandlerError::Permanent("404 channel_not_found".into());
        assert_eq!(
            effect(Err(Undelivered::Certainly(refused.clone())), Lifecycle::Ready, "orders"),
            Effect::Failed(refused)
        );
        let unheard = HandlerError::Retryable("timed out after sending".into());
        assert_eq!(
            effect(Err(Undelivered::Perhaps(unheard.clone())), Lifecycle::Deleted, "orders"),
            Effect::Uncertain(unheard)
        );
    }

    #[test]
    fn each_way_a_run_ends_has_its_outcome() {
        type Case = (Ran, Option<&'static str>, OutcomeKind, &'static str);
        let cases: [Case; 5] = [
            (
                Ran::Acted {
                    result: "posted".into(),
                    warning: None,
                },
                None,
                OutcomeKind::Applied,
                "posted to Slack (hooks.slack.com)",
            ),
            (
                Ran::Acted {
                    result: "posted".into(),
                    warning: Some("the record was not completed".into()),
                },
                None,
                OutcomeKind::Applied,
                "posted to Slack (hooks.slack.com); warning: the record was not completed",
            ),
            (
                Ran::Acted {
                    result: "posted".into(),
                    warning: Some("uncertain".into()),
                },
                Some("throttled"),
                OutcomeKind::Applied,
                "posted to Slack (hooks.slack.com); warning: the lifetime's expiry was not set (throttled); warning: uncertain",
            ),
            (
                Ran::AlreadyDone("posted ready".into()),
                None,
                OutcomeKind::Duplicate,
                "already notified: posted ready",
            ),
            (
                Ran::DoneByOther("posted ready".into()),
                None,
                OutcomeKind::Duplicate,
                "notified by another invocation: posted ready",
            ),
        ];
        for (ran, lifetime_error, kind, detail) in cases {
            let outcome = answer(ran.clone(), Some(ARN), "hooks.slack.com", lifetime_error);
            assert_eq!((outcome.kind, outcome.detail.as_str()), (kind, detail), "{ran:?}");
            assert_eq!(outcome.resource.as_deref(), Some(ARN));
        }
    }
}
