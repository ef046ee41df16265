//! [`Persistence`] in DynamoDB: each method one conditional write or one read. Only the emulator
//! can test it (the moto tests of slack-notifier); the protocol above it is tested over
//! [`super::MemoryStore`], which keeps the same semantics.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{Claim, Persistence, millis, now};
use crate::aws::AwsError;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// [`Persistence`] in a DynamoDB table (partition key `id`, TTL attribute `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: DynamoClient,
    table: String,
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

fn existing(item: &HashMap<String, AttributeValue>) -> Claim {
    match text(item, "status") {
        Some(COMPLETED) => Claim::Completed(text(item, "result").unwrap_or_default().to_string()),
        _ => Claim::InProgress {
            until_ms: number(item, "in_progress_until").unwrap_or_default(),
        },
    }
}

/// The prefix of remembered facts' attributes, so they never clash with the record's own.
const FACT_PREFIX: &str = "fact_";

impl DynamoStore {
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, AwsError> {
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
            .item
            .filter(|item| number(item, "expires_at").is_none_or(|e| e >= now_s)))
    }
}

impl Persistence for DynamoStore {
    async fn claim(&self, key: &str, owner: &str, description: &str, until_ms: u64) -> Result<Claim, AwsError> {
        let now = now();
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
            .item("expires_at", n(until_ms / 1000 + 60))
            .condition_expression(
                "attribute_not_exists(id) OR expires_at < :now_s \
                 OR (#status = :in_progress AND in_progress_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now_s", n(now.as_secs()))
            .expression_attribute_values(":now_ms", n(millis(now)))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired { until_ms }),
            Err(e) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error() {
                    return Ok(match failed.item() {
                        // Our own claim: an earlier attempt of this very write took effect but
                        // its answer was lost, and the SDK sent it again.
                        Some(item)
                            if text(item, "owner") == Some(owner) && text(item, "status") == Some(IN_PROGRESS) =>
                        {
                            Claim::Acquired {
                                until_ms: number(item, "in_progress_until").unwrap_or(until_ms),
                            }
                        }
                        Some(item) => existing(item),
                        None => Claim::InProgress { until_ms: 0 },
                    });
                }
                Err(AwsError::from_sdk("PutItem", &e))
            }
        }
    }

    async fn peek(&self, key: &str) -> Result<Option<Claim>, AwsError> {
        Ok(self.get(key).await?.as_ref().map(existing))
    }

    async fn complete(&self, key: &str, owner: &str, result: &str, expires_s: u64) -> Result<bool, AwsError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression(
                "SET #status = :completed, #result = :result, expires_at = :expires REMOVE in_progress_until",
            )
            // Ours (or already completed by us on an earlier try whose answer was lost).
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":result", s(result))
            .expression_attribute_values(":expires", n(expires_s))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("UpdateItem", &e)),
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#owner = :owner AND #status = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner))
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

    async fn remember(
        &self,
        key: &str,
        facts: &BTreeMap<String, String>,
        expires_s: Option<u64>,
    ) -> Result<(), AwsError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s("FACTS"));
        for (name, value) in facts {
            request = request.item(format!("{FACT_PREFIX}{name}"), s(value));
        }
        if let Some(expires) = expires_s {
            request = request.item("expires_at", n(expires));
        }
        request.send().await.map_err(|e| AwsError::from_sdk("PutItem", &e))?;
        Ok(())
    }

    async fn recall(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
        Ok(self.get(key).await?.map(|item| {
            item.iter()
                .filter_map(|(name, value)| {
                    Some((name.strip_prefix(FACT_PREFIX)?.to_string(), value.as_s().ok()?.clone()))
                })
                .collect()
        }))
    }
}
