//! Resolution: from a managed resource to the ARN of its external resource (DESIGN.md §5),
//! and the guard that keeps a function to the accounts, regions and resources it may touch.

use std::collections::BTreeMap;
use std::future::Future;

use crate::aws::AwsError;
use crate::kinds::{self, ArnShape};
use crate::model::ManagedResource;

/// Tags of one AWS resource.
pub type Tags = BTreeMap<String, String>;

pub const TAG_KIND: &str = "crossplane-kind";
pub const TAG_NAME: &str = "crossplane-name";
pub const TAG_NAMESPACE: &str = "crossplane-namespace";

/// The tag reads resolution needs, behind a trait so the logic is testable without AWS.
/// The AWS implementation is `ResourceGroupsTaggingAPI.GetResources`.
pub trait TagReader: Send + Sync {
    /// The tags of one resource, or `None` when it does not exist (or carries no tags at all).
    fn tags_of(&self, arn: &str) -> impl Future<Output = Result<Option<Tags>, AwsError>> + Send;
    /// Every resource of a tagging type (`rds:db`, …) that carries all these tags.
    fn find_by_tags(
        &self,
        resource_type: &str,
        tags: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<(String, Tags)>, AwsError>> + Send;
}

/// The AWS partition a region belongs to.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

/// The parts of an ARN: `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (prefix, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        (prefix == "arn" && !partition.is_empty() && !service.is_empty() && !resource.is_empty())
            .then_some(Arn {
                partition,
                service,
                region,
                account,
                resource,
            })
    }
}

/// Where the function runs: the account and region an ARN is built for when the resource
/// does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

/// Builds the ARN of a managed resource's external resource without any AWS call:
/// `status.atProvider.arn` when present, else from the kind, external name, region and account.
pub fn arn_of(resource: &ManagedResource, scope: &Scope) -> Option<String> {
    if let Some(arn) = resource.arn.as_ref().filter(|a| Arn::parse(a).is_some()) {
        return Some(arn.clone());
    }
    let known = kinds::lookup(&resource.group, &resource.kind)?;
    // Upjet's default external name is the object's name.
    let id = resource.external_name.as_deref().unwrap_or(&resource.name);
    let region = resource.region.as_deref().unwrap_or(&scope.region);
    let part = partition(region);
    let account = &scope.account;
    Some(match known.arn {
        ArnShape::RdsInstance => format!("arn:{part}:rds:{region}:{account}:db:{id}"),
        ArnShape::RdsCluster => format!("arn:{part}:rds:{region}:{account}:cluster:{id}"),
        ArnShape::S3Bucket => format!("arn:{part}:s3:::{id}"),
        ArnShape::DynamoDbTable => format!("arn:{part}:dynamodb:{region}:{account}:table/{id}"),
        ArnShape::SqsQueue => match sqs_url_parts(id) {
            // The external name of a Queue is its URL, which names the account.
            Some((url_account, name)) => format!("arn:{part}:sqs:{region}:{url_account}:{name}"),
            None => format!("arn:{part}:sqs:{region}:{account}:{id}"),
        },
        ArnShape::SecretsManagerSecret => {
            // Its external name is the ARN itself (AWS appends a random suffix).
            return Arn::parse(id).is_some().then(|| id.to_string());
        }
    })
}

fn sqs_url_parts(url: &str) -> Option<(&str, &str)> {
    let path = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let mut segments = path.split('/').skip(1);
    Some((segments.next()?, segments.next()?))
}

/// Which accounts and regions a function may act on (DESIGN.md §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    /// Empty: only the function's own account.
    pub allowed_accounts: Vec<String>,
    /// Empty: any region.
    pub allowed_regions: Vec<String>,
}

impl Guard {
    /// `ALLOWED_ACCOUNTS` and `ALLOWED_REGIONS`, comma-separated.
    pub fn from_env() -> Self {
        let list = |name: &str| {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        Guard {
            allowed_accounts: list("ALLOWED_ACCOUNTS"),
            allowed_regions: list("ALLOWED_REGIONS"),
        }
    }

    /// Refuses an ARN outside the allowed accounts and regions, saying why.
    pub fn check(
        &self,
        arn: &str,
        resource_region: Option<&str>,
        scope: &Scope,
    ) -> Result<(), String> {
        let parsed = Arn::parse(arn).ok_or_else(|| format!("{arn:?} is not an ARN"))?;
        if !parsed.account.is_empty() {
            let allowed = if self.allowed_accounts.is_empty() {
                parsed.account == scope.account
            } else {
                self.allowed_accounts.iter().any(|a| a == parsed.account)
            };
            if !allowed {
                return Err(format!(
                    "account {} is not one this function may act on",
                    parsed.account
                ));
            }
        }
        let region = Some(parsed.region)
            .filter(|r| !r.is_empty())
            .or(resource_region);
        if let Some(region) = region
            && !self.allowed_regions.is_empty()
            && !self.allowed_regions.iter().any(|r| r == region)
        {
            return Err(format!(
                "region {region} is not one this function may act on"
            ));
        }
        Ok(())
    }
}

/// The external resource behind a managed resource, checked live.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub arn: String,
    /// The live resource's tags, as read during resolution.
    pub tags: Tags,
    /// The managed resource, its identity taken from the live tags when the event did not carry it.
    pub resource: ManagedResource,
}

/// Why resolution did not produce a resource to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Unresolved {
    /// No such external resource (yet, or any more): nothing to do.
    NotFound(String),
    /// The guard refused it: another account or region, or not managed by Crossplane.
    Refused(String),
    /// AWS could not be asked.
    Aws(AwsError),
    /// The event is consistent but ambiguous, e.g. two resources carry the same Crossplane tags.
    Ambiguous(String),
}

impl From<AwsError> for Unresolved {
    fn from(e: AwsError) -> Self {
        Unresolved::Aws(e)
    }
}

/// Resolves a managed resource to its live external resource: one tag read when the ARN can be
/// built, else one lookup by Crossplane's tags. Then the guard: allowed account and region, and
/// the live resource must carry Crossplane's tags naming this very managed resource.
pub async fn resolve(
    resource: &ManagedResource,
    scope: &Scope,
    guard: &Guard,
    reader: &impl TagReader,
) -> Result<Resolved, Unresolved> {
    let (arn, tags) = match arn_of(resource, scope) {
        Some(arn) => {
            guard
                .check(&arn, resource.region.as_deref(), scope)
                .map_err(Unresolved::Refused)?;
            let tags = reader.tags_of(&arn).await?.ok_or_else(|| {
                Unresolved::NotFound(format!("{arn} does not exist (or carries no tags)"))
            })?;
            (arn, tags)
        }
        None => {
            let (arn, tags) = find_by_crossplane_tags(resource, reader).await?;
            guard
                .check(&arn, resource.region.as_deref(), scope)
                .map_err(Unresolved::Refused)?;
            (arn, tags)
        }
    };
    let resource = check_managed(resource, &tags)
        .map_err(|why| Unresolved::Refused(format!("{arn}: {why}")))?;
    Ok(Resolved {
        arn,
        tags,
        resource,
    })
}

async fn find_by_crossplane_tags(
    resource: &ManagedResource,
    reader: &impl TagReader,
) -> Result<(String, Tags), Unresolved> {
    let known = kinds::lookup(&resource.group, &resource.kind).ok_or_else(|| {
        Unresolved::Refused(format!(
            "{}/{} is not a kind this suite resolves",
            resource.group, resource.kind
        ))
    })?;
    let kind_tag = resource.crossplane_kind_tag();
    let mut filters = vec![
        (TAG_KIND, kind_tag.as_str()),
        (TAG_NAME, resource.name.as_str()),
    ];
    if let Some(namespace) = &resource.namespace {
        filters.push((TAG_NAMESPACE, namespace.as_str()));
    }
    let mut found = reader.find_by_tags(known.tagging_type, &filters).await?;
    match found.len() {
        0 => Err(Unresolved::NotFound(format!(
            "no {} carries the tags of {}",
            known.tagging_type,
            resource.display_name()
        ))),
        1 => Ok(found.remove(0)),
        n => Err(Unresolved::Ambiguous(format!(
            "{n} resources carry the Crossplane tags of {}: {}",
            resource.display_name(),
            found
                .iter()
                .map(|(arn, _)| arn.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The live resource must carry Crossplane's tags for this managed resource. When the event
/// did not know the resource's identity (an AWS event without tags), it is taken from the tags.
fn check_managed(resource: &ManagedResource, tags: &Tags) -> Result<ManagedResource, String> {
    let kind_tag = tags
        .get(TAG_KIND)
        .ok_or("not managed by Crossplane (no crossplane-kind tag)")?;
    let name_tag = tags
        .get(TAG_NAME)
        .ok_or("not managed by Crossplane (no crossplane-name tag)")?;
    let namespace_tag = tags.get(TAG_NAMESPACE);
    if !resource.identity_verified {
        let (known, group) = kinds::from_crossplane_kind_tag(kind_tag)
            .ok_or_else(|| format!("managed as {kind_tag}, a kind this suite does not handle"))?;
        let mut adopted = resource.clone();
        adopted.version = kinds::default_version(&group, known).to_string();
        adopted.group = group;
        adopted.kind = known.kind.to_string();
        adopted.name = name_tag.clone();
        adopted.namespace = namespace_tag.cloned();
        adopted.identity_verified = true;
        return Ok(adopted);
    }
    let expected_kind = resource.crossplane_kind_tag();
    let same = *kind_tag == expected_kind
        && *name_tag == resource.name
        && namespace_tag.map(String::as_str) == resource.namespace.as_deref();
    if same {
        Ok(resource.clone())
    } else {
        Err(format!(
            "managed by Crossplane as {kind_tag} {}{name_tag}, not as {expected_kind} {}",
            namespace_tag.map(|n| format!("{n}/")).unwrap_or_default(),
            resource.display_name()
        ))
    }
}
