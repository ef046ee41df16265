//! The sync's refusal decision, pure over the plans and where other databases stand: a target
//! someone else owns is refused, and details written for another database are overwritten
//! only once that database is gone (a secret is never repointed at a database while the one it
//! describes still exists).

use std::collections::{BTreeMap, BTreeSet};

use crate::parameters::ParametersPlan;
use crate::removal::Standing;
use crate::secrets::SecretPlan;

/// The other databases the targets to be overwritten were written for: the caller reads where
/// each stands for [`refusal`].
pub fn other_databases(secret: Option<&SecretPlan>, parameters: Option<&ParametersPlan>) -> BTreeSet<String> {
    secret
        .and_then(SecretPlan::other_database)
        .map(str::to_string)
        .into_iter()
        .chain(parameters.iter().flat_map(|p| p.other_databases.iter().cloned()))
        .collect()
}

/// Why the sync for the database `arn` changes nothing, if it must: every target someone else
/// owns, and every other database still there (one whose standing was not read counts as
/// there). `None`: write.
pub fn refusal(
    secret: Option<&SecretPlan>,
    parameters: Option<&ParametersPlan>,
    standings: &BTreeMap<String, Standing>,
    arn: &str,
) -> Option<String> {
    let mut refusals = Vec::new();
    if let Some(SecretPlan::NotOwned(why)) = secret {
        refusals.push(why.clone());
    }
    if let Some(plan) = parameters {
        refusals.extend(plan.not_owned.iter().cloned());
    }
    for other in other_databases(secret, parameters) {
        let why = match standings.get(&other) {
            Some(standing) => standing.still_there(),
            None => Some("whose standing was not read".to_string()),
        };
        if let Some(why) = why {
            refusals.push(format!(
                "the targets were written for {other}, {why}; not overwritten with {arn}"
            ));
        }
    }
    (!refusals.is_empty()).then(|| refusals.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db:orders";
    const OLD: &str = "arn:aws:rds:us-east-1:123456789012:db:orders-old";
    const OLDER: &str = "arn:aws:rds:us-east-1:123456789012:db:orders-older";

    fn update(recorded: Option<&str>) -> SecretPlan {
        SecretPlan::Update {
            previous: None,
            restore: false,
            recorded_arn: recorded.map(str::to_string),
            retag: recorded.is_some(),
        }
    }

    fn params(not_owned: &[&str], others: &[&str]) -> ParametersPlan {
        ParametersPlan {
            not_owned: not_owned.iter().map(|s| s.to_string()).collect(),
            other_databases: others.iter().map(|s| s.to_string()).collect(),
            ..ParametersPlan::default()
        }
    }

    fn standings(pairs: &[(&str, Standing)]) -> BTreeMap<String, Standing> {
        pairs.iter().map(|(arn, s)| (arn.to_string(), s.clone())).collect()
    }

    fn live() -> Standing {
        Standing::Live {
            status: Some("available".into()),
        }
    }

    #[test]
    fn every_refusal_of_a_sync() {
        let still = |other: &str| {
            format!(
                "the targets were written for {other}, which still exists (status available); not overwritten with {ARN}"
            )
        };
        type Case = (
            &'static str,
            Option<SecretPlan>,
            Option<ParametersPlan>,
            BTreeMap<String, Standing>,
            Option<String>,
        );
        let cases: Vec<Case> = vec![
            ("no targets", None, None, standings(&[]), None),
            (
                "a create",
                Some(SecretPlan::Create),
                Some(params(&[], &[])),
                standings(&[]),
                None,
            ),
            ("an update of our own", Some(update(None)), None, standings(&[]), None),
            (
                "the secret is someone else's",
                Some(SecretPlan::NotOwned("secret s is not ours: it belongs to x".into())),
                Some(params(&[], &[])),
                standings(&[]),
                Some("secret s is not ours: it belongs to x".into()),
            ),
            (
                "parameters are someone else's",
                Some(SecretPlan::Unchanged),
                Some(params(
                    &["parameter p/host is not ours", "parameter p/port is not ours"],
                    &[],
                )),
                standings(&[]),
                Some("parameter p/host is not ours; parameter p/port is not ours".into()),
            ),
            (
                "written for another database, gone",
                Some(update(Some(OLD))),
                Some(params(&[], &[OLD])),
                standings(&[(OLD, Standing::Gone)]),
                None,
            ),
            (
                "written for another database, going away",
                Some(update(Some(OLD))),
                None,
                standings(&[(OLD, Standing::GoingAway)]),
                None,
            ),
            (
                "written for another database, still there",
                Some(update(Some(OLD))),
                None,
                standings(&[(OLD, live())]),
                Some(still(OLD)),
            ),
            (
                "parameters written for another database, still there",
                None,
                Some(params(&[], &[OLD])),
                standings(&[(OLD, live())]),
                Some(still(OLD)),
            ),
            (
                "written for another database outside the guard",
                Some(update(Some(OLD))),
                None,
                standings(&[(OLD, Standing::Unchecked("account 1 is not allowed".into()))]),
                Some(format!(
                    "the targets were written for {OLD}, which cannot be checked (account 1 is not allowed); not overwritten with {ARN}"
                )),
            ),
            (
                "another database whose standing was not read",
                Some(update(Some(OLD))),
                None,
                standings(&[]),
                Some(format!(
                    "the targets were written for {OLD}, whose standing was not read; not overwritten with {ARN}"
                )),
            ),
            (
                "someone else's and another database there: every reason, once per database",
                Some(update(Some(OLDER))),
                Some(params(&["parameter p/host is not ours"], &[OLD, OLDER])),
                standings(&[(OLD, Standing::Gone), (OLDER, live())]),
                Some(format!("parameter p/host is not ours; {}", still(OLDER))),
            ),
        ];
        for (case, secret, parameters, standings, expected) in cases {
            assert_eq!(
                refusal(secret.as_ref(), parameters.as_ref(), &standings, ARN),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn other_databases_once_each() {
        let others = other_databases(Some(&update(Some(OLD))), Some(&params(&[], &[OLD, OLDER])));
        assert_eq!(
            others.into_iter().collect::<Vec<_>>(),
            vec![OLD.to_string(), OLDER.to_string()]
        );
        assert!(other_databases(Some(&SecretPlan::Create), None).is_empty());
    }
}
