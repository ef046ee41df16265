//! The AWS side of resolution: the Resource Groups Tagging API (tags of any resource, lookup by
//! Crossplane's tags) and a cheap liveness check for RDS.

use std::future::Future;

use aws_sdk_rds::Client as RdsClient;
use aws_sdk_resourcegroupstagging::Client as TaggingClient;
use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, TagFilter};

use crate::aws::AwsError;
use crate::resolve::{Arn, TagReader, Tags};

/// [`TagReader`] over `ResourceGroupsTaggingAPI.GetResources`.
#[derive(Debug, Clone)]
pub struct TaggingApi {
    client: TaggingClient,
}

impl TaggingApi {
    pub fn new(client: TaggingClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &TaggingClient {
        &self.client
    }
}

fn tags_of_mapping(mapping: &ResourceTagMapping) -> Tags {
    mapping
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

impl TagReader for TaggingApi {
    async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
        let output = self
            .client
            .get_resources()
            .resource_arn_list(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetResources", &e))?;
        // Match the ARN ourselves: a resource AWS did not return does not exist (or has no tags).
        Ok(output
            .resource_tag_mapping_list()
            .iter()
            .find(|m| m.resource_arn() == Some(arn))
            .map(tags_of_mapping))
    }

    async fn find_by_tags(
        &self,
        resource_type: &str,
        tags: &[(&str, &str)],
    ) -> Result<Vec<(String, Tags)>, AwsError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self
                .client
                .get_resources()
                .resource_type_filters(resource_type);
            for (key, value) in tags {
                request =
                    request.tag_filters(TagFilter::builder().key(*key).values(*value).build());
            }
            let output = request
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetResources", &e))?;
            for mapping in output.resource_tag_mapping_list() {
                let Some(arn) = mapping.resource_arn() else {
                    continue;
                };
                let resource_tags = tags_of_mapping(mapping);
                // Check the filters ourselves too, so a lax implementation cannot widen the match.
                if tags
                    .iter()
                    .all(|(k, v)| resource_tags.get(*k).map(String::as_str) == Some(*v))
                {
                    found.push((arn.to_string(), resource_tags));
                }
            }
            match output.pagination_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }
}

/// Whether the external resource is there and not on its way out, checked right before a side
/// effect (DESIGN.md §4). `None`: no cheap check exists for this kind of resource.
pub trait LiveCheck: Send + Sync {
    fn is_live(&self, arn: &str) -> impl Future<Output = Result<Option<bool>, AwsError>> + Send;
}

/// [`LiveCheck`] with `DescribeDBInstances` / `DescribeDBClusters` for RDS; other services have
/// no check this cheap, and rely on the tag read of resolution.
#[derive(Debug, Clone)]
pub struct RdsLiveCheck {
    client: RdsClient,
}

impl RdsLiveCheck {
    pub fn new(client: RdsClient) -> Self {
        Self { client }
    }
}

const GOING_AWAY: &[&str] = &[
    "deleting",
    "deleted",
    "failed",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
];

impl LiveCheck for RdsLiveCheck {
    async fn is_live(&self, arn: &str) -> Result<Option<bool>, AwsError> {
        let Some(parsed) = Arn::parse(arn).filter(|a| a.service == "rds") else {
            return Ok(None);
        };
        if parsed.resource.starts_with("db:") {
            let result = self
                .client
                .describe_db_instances()
                .db_instance_identifier(arn)
                .send()
                .await;
            return match result {
                Ok(out) => Ok(Some(out.db_instances().iter().any(|db| {
                    db.db_instance_status()
                        .is_some_and(|s| !GOING_AWAY.contains(&s))
                }))),
                Err(e) => {
                    let error = AwsError::from_sdk("DescribeDBInstances", &e);
                    if error.is_code("DBInstanceNotFound")
                        || error.is_code("DBInstanceNotFoundFault")
                    {
                        Ok(Some(false))
                    } else {
                        Err(error)
                    }
                }
            };
        }
        if parsed.resource.starts_with("cluster:") {
            let result = self
                .client
                .describe_db_clusters()
                .db_cluster_identifier(arn)
                .send()
                .await;
            return match result {
                Ok(out) => {
                    Ok(Some(out.db_clusters().iter().any(|c| {
                        c.status().is_some_and(|s| !GOING_AWAY.contains(&s))
                    })))
                }
                Err(e) => {
                    let error = AwsError::from_sdk("DescribeDBClusters", &e);
                    if error.is_code("DBClusterNotFoundFault") || error.is_code("DBClusterNotFound")
                    {
                        Ok(Some(false))
                    } else {
                        Err(error)
                    }
                }
            };
        }
        Ok(None)
    }
}
