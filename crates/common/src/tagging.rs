//! The AWS side of resolution: the Resource Groups Tagging API (tags of any resource, lookup by
//! Crossplane's tags) and a cheap liveness check for RDS.

use std::future::Future;

use aws_sdk_rds::Client as RdsClient;
use aws_sdk_resourcegroupstagging::Client as TaggingClient;
use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, TagFilter};

use crate::aws::AwsError;
use crate::kinds::KnownKind;
use crate::resolve::{Arn, TagReader, Tags};
use crate::sweep::{Inventory, Listed, Page};

/// [`TagReader`] over the Resource Groups Tagging API (`GetResources`), with RDS's own
/// `ListTagsForResource` for RDS ARNs: exact, and a real existence check (the tagging API can
/// list a resource for a while after it is gone).
#[derive(Debug, Clone)]
pub struct TaggingApi {
    client: TaggingClient,
    rds: RdsClient,
}

impl TaggingApi {
    pub fn new(client: TaggingClient, rds: RdsClient) -> Self {
        Self { client, rds }
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
        if Arn::parse(arn).is_some_and(|a| a.service == "rds") {
            return match self.rds.list_tags_for_resource().resource_name(arn).send().await {
                // As with GetResources, no tags at all reads as "not there": Crossplane tags
                // everything it manages.
                Ok(output) => Ok(Some(
                    output
                        .tag_list()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                        .collect::<Tags>(),
                )
                .filter(|tags| !tags.is_empty())),
                Err(e) => {
                    let error = AwsError::from_sdk("ListTagsForResource", &e);
                    if crate::rds::NOT_FOUND.iter().any(|code| error.is_code(code)) {
                        Ok(None)
                    } else {
                        Err(error)
                    }
                }
            };
        }
        let mut pages = self
            .client
            .get_resources()
            .resource_arn_list(arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("GetResources", &e))?;
            // Match the ARN ourselves (and follow pages: some implementations ignore the list).
            if let Some(mapping) = page
                .resource_tag_mapping_list()
                .iter()
                .find(|m| m.resource_arn() == Some(arn))
            {
                return Ok(Some(tags_of_mapping(mapping)));
            }
        }
        // A resource AWS did not return does not exist, or carries no tags at all.
        Ok(None)
    }

    async fn find_by_tags(&self, resource_type: &str, tags: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
        let mut found = Vec::new();
        let mut request = self.client.get_resources().resource_type_filters(resource_type);
        for (key, value) in tags {
            request = request.tag_filters(TagFilter::builder().key(*key).values(*value).build());
        }
        let mut pages = request.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("GetResources", &e))?;
            for mapping in page.resource_tag_mapping_list() {
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
        }
        Ok(found)
    }
}

impl Inventory for TaggingApi {
    /// One page (at most 100) of the resources of these kinds that Crossplane manages: the ones
    /// whose `crossplane-kind` tag names one of them (a sweep's listing, ARCHITECTURE.md §12).
    /// Anything else the API returns is dropped: a lax implementation cannot widen the sweep.
    async fn managed_page(&self, kinds: &[&'static KnownKind], token: Option<&str>) -> Result<Page, AwsError> {
        let kind_tags = crate::kinds::crossplane_kind_tags(kinds);
        let mut types: Vec<&str> = kinds.iter().map(|k| k.tagging_type).collect();
        types.sort_unstable();
        types.dedup();
        let page = self
            .client
            .get_resources()
            .tag_filters(
                TagFilter::builder()
                    .key(crate::crossplane::TAG_KIND)
                    .set_values(Some(kind_tags.clone()))
                    .build(),
            )
            .set_resource_type_filters(Some(types.into_iter().map(str::to_string).collect()))
            .resources_per_page(100)
            .set_pagination_token(token.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetResources", &e))?;
        let resources = page
            .resource_tag_mapping_list()
            .iter()
            .filter_map(|mapping| {
                let arn = mapping.resource_arn()?;
                let kind = mapping
                    .tags()
                    .iter()
                    .find(|t| t.key() == crate::crossplane::TAG_KIND)?
                    .value();
                kind_tags.iter().any(|k| k == kind).then(|| Listed {
                    arn: arn.to_string(),
                    kind: kind.to_string(),
                    tags: Some(tags_of_mapping(mapping)),
                })
            })
            .collect();
        Ok(Page {
            resources,
            next: page.pagination_token().filter(|t| !t.is_empty()).map(str::to_string),
        })
    }
}

/// Whether the external resource is there and not on its way out, checked right before a side
/// effect (ARCHITECTURE.md §4). `None`: no cheap check exists for this kind of resource.
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

impl LiveCheck for RdsLiveCheck {
    async fn is_live(&self, arn: &str) -> Result<Option<bool>, AwsError> {
        if Arn::parse(arn).is_none_or(|a| a.service != "rds") {
            return Ok(None);
        }
        Ok(Some(crate::rds::describe(&self.client, arn).await?.is_some()))
    }
}
