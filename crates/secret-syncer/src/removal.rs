//! The deletion decision (ARCHITECTURE.md §11, destruction needs proof), pure over what was
//! read: only targets that are ours for this managed resource, and only once the database each
//! one recorded (its `source-arn` tag) is gone or going away. The event's own ARN proves
//! nothing (a reference builds it from the object's name).

use std::collections::{BTreeMap, BTreeSet};

use common::rds::Liveness;

use crate::parameters::DeleteTargets;
use crate::secrets::{DeleteTarget, SOURCE_ARN_TAG};

/// Where a database a target records stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Live {
        status: Option<String>,
    },
    GoingAway,
    Gone,
    /// It cannot be checked (outside the guard), so it counts as still there.
    Unchecked(String),
}

impl Standing {
    pub fn of(liveness: &Liveness) -> Self {
        match liveness {
            Liveness::Live(db) => Standing::Live {
                status: db.status.clone(),
            },
            Liveness::GoingAway(_) => Standing::GoingAway,
            Liveness::Gone => Standing::Gone,
        }
    }

    /// Why the database counts as still there; `None` when it is gone or going away.
    pub fn still_there(&self) -> Option<String> {
        match self {
            Standing::Live { status } => Some(format!(
                "which still exists (status {})",
                status.as_deref().unwrap_or("unknown")
            )),
            Standing::Unchecked(why) => Some(format!("which cannot be checked ({why})")),
            Standing::GoingAway | Standing::Gone => None,
        }
    }
}

/// What a deletion found at its targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The secret's name and what is there.
    pub secret: Option<(String, DeleteTarget)>,
    /// The parameters' path and what is under it.
    pub parameters: Option<(String, DeleteTargets)>,
}

impl Found {
    /// Each target of ours with the database it records, in the order the proof walks them.
    fn ours(&self) -> Vec<(String, Option<&str>)> {
        let secret = self.secret.iter().filter_map(|(name, target)| match target {
            DeleteTarget::Ours { recorded_arn } => Some((format!("secret {name}"), recorded_arn.as_deref())),
            DeleteTarget::Absent | DeleteTarget::AlreadyScheduled | DeleteTarget::NotOwned(_) => None,
        });
        let parameters = self.parameters.iter().flat_map(|(_, found)| {
            found
                .ours
                .iter()
                .map(|(name, recorded)| (format!("parameter {name}"), recorded.as_deref()))
        });
        secret.chain(parameters).collect()
    }

    /// Someone else's targets, each with why.
    fn left_alone(&self) -> Vec<String> {
        let secret = self.secret.iter().filter_map(|(_, target)| match target {
            DeleteTarget::NotOwned(why) => Some(why.clone()),
            _ => None,
        });
        let parameters = self
            .parameters
            .iter()
            .flat_map(|(_, found)| found.not_ours.iter().cloned());
        secret.chain(parameters).collect()
    }
}

/// The databases whose standing [`decide`] needs, in the order it asks: each recorded one
/// once, up to the first target that records none (the caller reads them in this order and
/// may stop at the first one still there).
pub fn databases_to_check(found: &Found) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut databases = Vec::new();
    for (_, recorded) in found.ours() {
        let Some(arn) = recorded else { break };
        if seen.insert(arn) {
            databases.push(arn.to_string());
        }
    }
    databases
}

/// What a deletion does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Nothing is deleted: a target of ours records no database, or the one it records is
    /// still there (`database`).
    Skip { database: Option<String>, detail: String },
    /// Nothing of ours is there; what is there is someone else's.
    Refuse(String),
    /// Nothing of ours is left.
    NothingLeft,
    /// Delete these (ours, their databases proven gone); leave the rest alone.
    Delete {
        secret: Option<String>,
        parameters: Vec<String>,
        left_alone: Vec<String>,
        /// A database the proof was about (the first, by ARN), for the outcome.
        database: Option<String>,
    },
}

/// The deletion decision over what was found and where the recorded databases stand. A
/// database whose standing was not read counts as still there.
pub fn decide(found: &Found, standings: &BTreeMap<String, Standing>) -> Removal {
    let mut checked = BTreeSet::new();
    for (what, recorded) in found.ours() {
        let Some(arn) = recorded else {
            return Removal::Skip {
                database: None,
                detail: format!("{what} records no database (no {SOURCE_ARN_TAG} tag): nothing deleted"),
            };
        };
        if !checked.insert(arn) {
            continue;
        }
        let why = match standings.get(arn) {
            Some(standing) => standing.still_there(),
            None => Some("whose standing was not read".to_string()),
        };
        if let Some(why) = why {
            return Removal::Skip {
                database: Some(arn.to_string()),
                detail: format!("the database {what} was written for, {arn}, {why}: nothing deleted"),
            };
        }
    }
    let secret = found.secret.as_ref().and_then(|(name, target)| match target {
        DeleteTarget::Ours { .. } => Some(name.clone()),
        _ => None,
    });
    let parameters: Vec<String> = found
        .parameters
        .iter()
        .flat_map(|(_, found)| found.ours.iter().map(|(name, _)| name.clone()))
        .collect();
    let left_alone = found.left_alone();
    if secret.is_none() && parameters.is_empty() {
        return if left_alone.is_empty() {
            Removal::NothingLeft
        } else {
            Removal::Refuse(left_alone.join("; "))
        };
    }
    Removal::Delete {
        secret,
        parameters,
        left_alone,
        database: checked.into_iter().next().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:rds:us-east-1:123456789012:db:a";
    const B: &str = "arn:aws:rds:us-east-1:123456789012:db:b";
    const SECRET: &str = "crossplane/team-a/a/connection";
    const PATH: &str = "/crossplane/team-a/a";

    fn secret(target: DeleteTarget) -> Option<(String, DeleteTarget)> {
        Some((SECRET.to_string(), target))
    }

    fn ours(recorded: Option<&str>) -> DeleteTarget {
        DeleteTarget::Ours {
            recorded_arn: recorded.map(str::to_string),
        }
    }

    fn parameters(ours: &[(&str, Option<&str>)], not_ours: &[&str]) -> Option<(String, DeleteTargets)> {
        Some((
            PATH.to_string(),
            DeleteTargets {
                ours: ours
                    .iter()
                    .map(|(key, recorded)| (format!("{PATH}/{key}"), recorded.map(str::to_string)))
                    .collect(),
                not_ours: not_ours.iter().map(|why| why.to_string()).collect(),
            },
        ))
    }

    fn standings(pairs: &[(&str, Standing)]) -> BTreeMap<String, Standing> {
        pairs.iter().map(|(arn, s)| (arn.to_string(), s.clone())).collect()
    }

    fn live() -> Standing {
        Standing::Live {
            status: Some("available".into()),
        }
    }

    fn delete(secret: bool, parameters: &[&str], left_alone: &[&str], database: Option<&str>) -> Removal {
        Removal::Delete {
            secret: secret.then(|| SECRET.to_string()),
            parameters: parameters.iter().map(|key| format!("{PATH}/{key}")).collect(),
            left_alone: left_alone.iter().map(|w| w.to_string()).collect(),
            database: database.map(str::to_string),
        }
    }

    fn skip(database: Option<&str>, detail: &str) -> Removal {
        Removal::Skip {
            database: database.map(str::to_string),
            detail: detail.to_string(),
        }
    }

    #[test]
    fn every_decision_of_a_deletion() {
        let gone = [(A, Standing::Gone)];
        let cases: Vec<(&str, Found, BTreeMap<String, Standing>, Removal)> = vec![
            (
                "no targets configured",
                Found::default(),
                standings(&[]),
                Removal::NothingLeft,
            ),
            (
                "nothing there",
                Found {
                    secret: secret(DeleteTarget::Absent),
                    parameters: parameters(&[], &[]),
                },
                standings(&[]),
                Removal::NothingLeft,
            ),
            (
                "the secret already scheduled (a delete seen twice)",
                Found {
                    secret: secret(DeleteTarget::AlreadyScheduled),
                    parameters: None,
                },
                standings(&[]),
                Removal::NothingLeft,
            ),
            (
                "only someone else's",
                Found {
                    secret: secret(DeleteTarget::NotOwned("secret x is not ours".into())),
                    parameters: parameters(&[], &["parameter y is not ours"]),
                },
                standings(&[]),
                Removal::Refuse("secret x is not ours; parameter y is not ours".into()),
            ),
            (
                "ours, the database gone",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: parameters(&[("host", Some(A)), ("port", Some(A))], &[]),
                },
                standings(&gone),
                delete(true, &["host", "port"], &[], Some(A)),
            ),
            (
                "ours, the database going away",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: None,
                },
                standings(&[(A, Standing::GoingAway)]),
                delete(true, &[], &[], Some(A)),
            ),
            (
                "ours and someone else's: ours go, theirs stay",
                Found {
                    secret: secret(DeleteTarget::NotOwned("secret x is not ours".into())),
                    parameters: parameters(&[("host", Some(A))], &[]),
                },
                standings(&gone),
                delete(false, &["host"], &["secret x is not ours"], Some(A)),
            ),
            (
                "the recorded database still exists",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: parameters(&[("host", Some(A))], &[]),
                },
                standings(&[(A, live())]),
                skip(
                    Some(A),
                    &format!(
                        "the database secret {SECRET} was written for, {A}, which still exists (status available): nothing deleted"
                    ),
                ),
            ),
            (
                "the recorded database cannot be checked",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: None,
                },
                standings(&[(A, Standing::Unchecked("account 1 is not allowed".into()))]),
                skip(
                    Some(A),
                    &format!(
                        "the database secret {SECRET} was written for, {A}, which cannot be checked (account 1 is not allowed): nothing deleted"
                    ),
                ),
            ),
            (
                "the recorded database not read",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: None,
                },
                standings(&[]),
                skip(
                    Some(A),
                    &format!(
                        "the database secret {SECRET} was written for, {A}, whose standing was not read: nothing deleted"
                    ),
                ),
            ),
            (
                "a target records no database",
                Found {
                    secret: secret(ours(None)),
                    parameters: parameters(&[("host", Some(A))], &[]),
                },
                standings(&gone),
                skip(
                    None,
                    &format!("secret {SECRET} records no database (no {SOURCE_ARN_TAG} tag): nothing deleted"),
                ),
            ),
            (
                "a parameter records another database, still there",
                Found {
                    secret: secret(ours(Some(A))),
                    parameters: parameters(&[("host", Some(A)), ("port", Some(B))], &[]),
                },
                standings(&[(A, Standing::Gone), (B, live())]),
                skip(
                    Some(B),
                    &format!(
                        "the database parameter {PATH}/port was written for, {B}, which still exists (status available): nothing deleted"
                    ),
                ),
            ),
            (
                "two recorded databases, both gone",
                Found {
                    secret: secret(ours(Some(B))),
                    parameters: parameters(&[("host", Some(A))], &[]),
                },
                standings(&[(A, Standing::Gone), (B, Standing::GoingAway)]),
                delete(true, &["host"], &[], Some(A)),
            ),
        ];
        for (case, found, standings, expected) in cases {
            assert_eq!(decide(&found, &standings), expected, "{case}");
        }
    }

    #[test]
    fn the_databases_to_check_stop_at_an_unrecorded_target() {
        let found = Found {
            secret: secret(ours(Some(B))),
            parameters: parameters(
                &[("host", Some(A)), ("port", Some(B)), ("user", None), ("x", Some("c"))],
                &[],
            ),
        };
        assert_eq!(databases_to_check(&found), vec![B.to_string(), A.to_string()]);
        assert!(databases_to_check(&Found::default()).is_empty());
    }

    #[test]
    fn standings_from_liveness() {
        assert_eq!(Standing::of(&Liveness::Gone), Standing::Gone);
        assert_eq!(Standing::Gone.still_there(), None);
        assert_eq!(Standing::GoingAway.still_there(), None);
        assert_eq!(
            Standing::Live { status: None }.still_there().as_deref(),
            Some("which still exists (status unknown)")
        );
    }
}
