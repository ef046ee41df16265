//! An idempotency store in DynamoDB, for any handler whose side effect must happen once per
//! change (DESIGN.md §6): Slack messages, and anything else that cannot be read back first.
//!
//! Beyond AWS Lambda Powertools' idempotency utility, where its users complain:
//! - the key comes from the meaning of the event (function, resource, lifecycle, transition
//!   time), not from the payload or CloudEvent id, so the same change arriving from two
//!   sources (our CloudEvent and a Knative update) is one change;
//! - one round trip to claim: a conditional `PutItem` that returns the old item when the
//!   condition fails (`ReturnValuesOnConditionCheckFailure`), so "already done" and "in
//!   progress elsewhere" need no second read;
//! - the in-progress record expires with the invocation (its remaining time, capped by a
//!   configurable maximum): a crashed or timed-out invocation never blocks the change for the
//!   whole record TTL, and a later retry acts exactly once;
//! - only the owner of a claim can release it: a slow invocation whose claim expired cannot
//!   delete the claim of the invocation that took over.
//!
//! Table: partition key `id` (String); TTL attribute `expires_at` (epoch seconds).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use sha2::{Digest, Sha256};

use crate::aws::AwsError;
use crate::model::ResourceEvent;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// The idempotency key of a change: what it means, not how it arrived.
pub fn key_for(function: &str, event: &ResourceEvent) -> String {
    let resource = event.resource.subject();
    // Without a transition time the change cannot be named: fall back to the occurrence.
    let when = event
        .transition_time
        .clone()
        .unwrap_or_else(|| format!("event:{}", event.id));
    let readable = format!("{function}#{resource}#{}#{when}", event.lifecycle.as_str());
    // Keys stay short and uniform whatever the names; the readable form is stored beside it.
    let digest = hex::encode(Sha256::digest(readable.as_bytes()));
    format!("{function}#{digest}")
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: act, then [`Store::complete`] or [`Store::release`].
    Acquired(ClaimToken),
    /// Done before; the stored result.
    Completed(String),
    /// Another invocation holds it; it expires at this epoch millisecond.
    InProgress { until_ms: u64 },
}

/// Proof of a claim, needed to complete or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    pub key: String,
    owner: String,
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

#[derive(Debug, Clone)]
pub struct Store {
    client: DynamoClient,
    table: String,
    expiry: Expiry,
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

impl Store {
    pub fn new(client: DynamoClient, table: impl Into<String>, expiry: Expiry) -> Self {
        Store {
            client,
            table: table.into(),
            expiry,
        }
    }

    /// Claims `key` as in progress for at most `remaining` (the invocation's remaining time),
    /// in one conditional write that succeeds when the key is new, its record has expired, or
    /// an in-progress claim has lapsed.
    pub async fn claim(
        &self,
        key: &str,
        description: &str,
        owner: &str,
        remaining: Duration,
    ) -> Result<Claim, AwsError> {
        let now = now();
        let hold = remaining.min(self.expiry.max_in_progress);
        let until_ms = (now + hold).as_millis() as u64;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s(IN_PROGRESS))
            .item("owner", s(owner))
            .item("description", s(description))
            .item("in_progress_until", n(until_ms))
            // Until completed, the record is only as durable as the claim (plus a margin for
            // DynamoDB's lazy TTL deletion, which the condition below does not rely on).
            .item("expires_at", n((now + hold).as_secs() + 60))
            .condition_expression(
                "attribute_not_exists(id) OR expires_at < :now_s \
                 OR (#status = :in_progress AND in_progress_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now_s", n(now.as_secs()))
            .expression_attribute_values(":now_ms", n(now.as_millis() as u64))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired(ClaimToken {
                key: key.to_string(),
                owner: owner.to_string(),
            })),
            Err(e) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error() {
                    return Ok(failed.item().map_or(Claim::InProgress { until_ms: 0 }, Self::existing));
                }
                Err(AwsError::from_sdk("PutItem", &e))
            }
        }
    }

    fn existing(item: &HashMap<String, AttributeValue>) -> Claim {
        match text(item, "status") {
            Some(COMPLETED) => Claim::Completed(text(item, "result").unwrap_or_default().to_string()),
            _ => Claim::InProgress {
                until_ms: number(item, "in_progress_until").unwrap_or_default(),
            },
        }
    }

    /// Reads the record of `key` (used while waiting on another invocation's claim).
    pub async fn peek(&self, key: &str) -> Result<Option<Claim>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", &e))?;
        let now_s = now().as_secs();
        Ok(output
            .item()
            .filter(|item| number(item, "expires_at").is_none_or(|e| e >= now_s))
            .map(Self::existing))
    }

    /// Marks the claim done, keeping a short result for the completed TTL.
    pub async fn complete(&self, token: &ClaimToken, result: &str) -> Result<(), AwsError> {
        let expires = (now() + self.expiry.completed_ttl).as_secs();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(&token.key))
            .update_expression(
                "SET #status = :completed, #result = :result, expires_at = :expires REMOVE in_progress_until",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":result", s(result))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateItem", &e))?;
        Ok(())
    }

    /// Gives the claim up after a failure, so a retry can act; only the claim's owner can.
    pub async fn release(&self, token: &ClaimToken) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(&token.key))
            .condition_expression("#owner = :owner AND #status = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(&token.owner))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else holds it now (ours had expired): theirs to finish.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsError::from_sdk("DeleteItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProfileEvent, Signal};
    use serde_json::json;

    fn event(id: &str, source: &str, ready_at: &str) -> ResourceEvent {
        ResourceEvent::from_profile(ProfileEvent {
            id: id.into(),
            source: source.into(),
            subject: None,
            time: None,
            signal: Signal::Upsert,
            data: json!({"apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance",
                "metadata": {"name": "db", "namespace": "a"},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}]}}),
        })
        .unwrap()
    }

    #[test]
    fn keys_name_the_change_not_the_delivery() {
        let ours = event("uid:3:ready", "crossplane://prod", "2026-01-01T00:00:00Z");
        let knative = event("5f9c-knative-uuid", "https://10.96.0.1:443", "2026-01-01T00:00:00Z");
        assert_eq!(key_for("slack-notifier", &ours), key_for("slack-notifier", &knative));
        let later = event("uid:4:ready", "crossplane://prod", "2026-02-01T00:00:00Z");
        assert_ne!(key_for("slack-notifier", &ours), key_for("slack-notifier", &later));
        assert_ne!(key_for("slack-notifier", &ours), key_for("other-function", &ours));
        assert!(key_for("slack-notifier", &ours).len() < 100);
    }
}
