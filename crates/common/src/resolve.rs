//! Resolution: from a managed resource to the ARN of its external resource (ARCHITECTURE.md §5),
//! and the guard that keeps a function to the accounts, regions and resources it may touch.

use std::collections::BTreeMap;
use std::future::Future;

use crate::aws::AwsError;
use crate::kinds::{self, ArnShape};
use crate::model::ManagedResource;

/// Tags of one AWS resource.
pub type Tags = BTreeMap<String, String>;

pub use crate::crossplane::{TAG_KIND, TAG_NAME, TAG_NAMESPACE};

/// The tag reads resolution needs, behind a trait so the logic is testable without AWS.
/// The AWS implementation is `Resource Groups Tagging API.GetResources`.
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

/// A [`TagReader`] that answers for one resource with the tags a listing just read (a sweep's),
/// and asks `reader` for everything else.
pub struct PrefetchedTags<'a, R> {
    pub arn: Option<&'a str>,
    pub tags: Option<&'a Tags>,
    pub reader: &'a R,
}

impl<R: TagReader> TagReader for PrefetchedTags<'_, R> {
    async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
        match (self.arn, self.tags) {
            (Some(listed), Some(tags)) if listed == arn => Ok(Some(tags.clone())),
            _ => self.reader.tags_of(arn).await,
        }
    }

    async fn find_by_tags(&self, resource_type: &str, tags: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
        self.reader.find_by_tags(resource_type, tags).await
    }
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

/// Whether `name` has the form of an AWS region (`us-east-1`, `us-gov-west-1`, `eusc-de-east-1`):
/// lower-case words joined by `-`, ending in a number. Anything else is refused before it can
/// name an endpoint or a set of clients.
pub fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.len() <= 2
        && number.bytes().all(|b| b.is_ascii_digit())
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
        (prefix == "arn" && !partition.is_empty() && !service.is_empty() && !resource.is_empty()).then_some(Arn {
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
    let path = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let mut segments = path.split('/').skip(1);
    Some((segments.next()?, segments.next()?))
}

/// Which accounts and regions a function may act on (ARCHITECTURE.md §5).
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

    /// Refuses, saying why, a malformed ARN (an empty or non-numeric account, an empty region,
    /// a partition that is not the region's) and an ARN outside the allowed accounts and regions.
    /// Only S3 bucket ARNs name no account and no region; their region is the resource's.
    pub fn check(&self, arn: &str, resource_region: Option<&str>, scope: &Scope) -> Result<(), String> {
        let parsed = Arn::parse(arn).ok_or_else(|| format!("{arn:?} is not an ARN"))?;
        let global = parsed.service == "s3" && parsed.account.is_empty() && parsed.region.is_empty();
        if !global {
            if parsed.account.len() != 12 || !parsed.account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{arn} does not name a 12-digit account"));
            }
            if parsed.region.is_empty() {
                return Err(format!("{arn} does not name a region"));
            }
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
        let region = Some(parsed.region).filter(|r| !r.is_empty()).or(resource_region);
        if let Some(region) = region {
            if !is_region(region) {
                return Err(format!("{region:?} is not an AWS region"));
            }
            if partition(region) != parsed.partition {
                return Err(format!(
                    "{arn} is in partition {}, but region {region} is in {}",
                    parsed.partition,
                    partition(region)
                ));
            }
            if !self.allowed_regions.is_empty() && !self.allowed_regions.iter().any(|r| r == region) {
                return Err(format!("region {region} is not one this function may act on"));
            }
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
            let tags = reader
                .tags_of(&arn)
                .await?
                .ok_or_else(|| Unresolved::NotFound(format!("{arn} does not exist (or carries no tags)")))?;
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
    let resource = check_managed(resource, &tags).map_err(|why| Unresolved::Refused(format!("{arn}: {why}")))?;
    Ok(Resolved { arn, tags, resource })
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
    let mut filters = vec![(TAG_KIND, kind_tag.as_str()), (TAG_NAME, resource.name.as_str())];
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
            found.iter().map(|(arn, _)| arn.as_str()).collect::<Vec<_>>().join(", ")
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
    // The provider overwrites crossplane-namespace only for namespaced managed resources; for a
    // cluster-scoped kind a value there may be anyone's (passed through spec.forProvider.tags),
    // so it is no fact about the resource and is ignored.
    let namespaced_kind = kinds::split_group(kind_tag.split_once('.').map_or("", |(_, group)| group))
        .is_some_and(|(_, namespaced)| namespaced);
    let namespace_tag = tags.get(TAG_NAMESPACE).filter(|_| namespaced_kind);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            account: "111122223333".into(),
            region: "us-east-1".into(),
        }
    }

    fn resource(api_version: &str, kind: &str, name: &str, for_provider: serde_json::Value) -> ManagedResource {
        let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": {"forProvider": for_provider}});
        if api_version.contains(".m.") {
            object["metadata"]["namespace"] = json!("team-a");
        }
        ManagedResource::from_object(&object).unwrap()
    }

    #[test]
    fn arns_for_every_kind_in_both_groups() {
        let cases = [
            (
                "rds.aws.m.upbound.io/v1beta1",
                "Instance",
                json!({"region": "eu-west-1", "identifier": "orders"}),
                "arn:aws:rds:eu-west-1:111122223333:db:orders",
            ),
            (
                "rds.aws.upbound.io/v1beta3",
                "Instance",
                json!({"region": "eu-west-1"}),
                "arn:aws:rds:eu-west-1:111122223333:db:mr-name",
            ),
            (
                "rds.aws.m.upbound.io/v1beta1",
                "Cluster",
                json!({"region": "cn-north-1"}),
                "arn:aws-cn:rds:cn-north-1:111122223333:cluster:mr-name",
            ),
            (
                "rds.aws.upbound.io/v1beta2",
                "Cluster",
                json!({}),
                "arn:aws:rds:us-east-1:111122223333:cluster:mr-name",
            ),
            (
                "s3.aws.m.upbound.io/v1beta1",
                "Bucket",
                json!({"region": "eu-west-1"}),
                "arn:aws:s3:::mr-name",
            ),
            (
                "s3.aws.upbound.io/v1beta2",
                "Bucket",
                json!({"region": "us-gov-west-1"}),
                "arn:aws-us-gov:s3:::mr-name",
            ),
            (
                "sqs.aws.m.upbound.io/v1beta1",
                "Queue",
                json!({"region": "eu-west-1", "name": "jobs"}),
                "arn:aws:sqs:eu-west-1:111122223333:jobs",
            ),
            (
                "sqs.aws.upbound.io/v1beta1",
                "Queue",
                json!({"region": "eu-west-1"}),
                "arn:aws:sqs:eu-west-1:111122223333:mr-name",
            ),
            (
                "dynamodb.aws.m.upbound.io/v1beta1",
                "Table",
                json!({"region": "eu-west-1"}),
                "arn:aws:dynamodb:eu-west-1:111122223333:table/mr-name",
            ),
            (
                "dynamodb.aws.upbound.io/v1beta2",
                "Table",
                json!({"region": "eu-west-1"}),
                "arn:aws:dynamodb:eu-west-1:111122223333:table/mr-name",
            ),
        ];
        for (api_version, kind, for_provider, expected) in cases {
            let r = resource(api_version, kind, "mr-name", for_provider);
            assert_eq!(arn_of(&r, &scope()).as_deref(), Some(expected), "{api_version} {kind}");
        }
    }

    #[test]
    fn external_names_that_are_urls_or_arns() {
        let mut queue = resource(
            "sqs.aws.m.upbound.io/v1beta1",
            "Queue",
            "q",
            json!({"region": "eu-west-1"}),
        );
        queue.external_name = Some("https://sqs.eu-west-1.amazonaws.com/444455556666/jobs".into());
        assert_eq!(
            arn_of(&queue, &scope()).as_deref(),
            Some("arn:aws:sqs:eu-west-1:444455556666:jobs")
        );
        let mut secret = resource(
            "secretsmanager.aws.m.upbound.io/v1beta1",
            "Secret",
            "s",
            json!({"region": "eu-west-1"}),
        );
        assert_eq!(arn_of(&secret, &scope()), None, "a secret's ARN cannot be built");
        secret.external_name = Some("arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf".into());
        assert_eq!(arn_of(&secret, &scope()), secret.external_name);
        let mut with_status = resource("rds.aws.m.upbound.io/v1beta1", "Instance", "x", json!({}));
        with_status.arn = Some("arn:aws:rds:eu-west-1:111122223333:db:from-status".into());
        assert_eq!(arn_of(&with_status, &scope()), with_status.arn);
        let unknown = resource("ec2.aws.m.upbound.io/v1beta1", "VPC", "v", json!({}));
        assert_eq!(arn_of(&unknown, &scope()), None);
    }

    #[test]
    fn the_guard() {
        let own = Guard::default();
        assert!(
            own.check("arn:aws:rds:us-east-1:111122223333:db:x", None, &scope())
                .is_ok()
        );
        let err = own
            .check("arn:aws:rds:us-east-1:999999999999:db:x", None, &scope())
            .unwrap_err();
        assert!(err.contains("999999999999"));
        assert!(
            own.check("arn:aws:s3:::bucket", Some("eu-west-1"), &scope()).is_ok(),
            "S3 ARNs name no account"
        );
        let listed = Guard {
            allowed_accounts: vec!["999999999999".into()],
            allowed_regions: vec!["eu-west-1".into()],
        };
        assert!(
            listed
                .check("arn:aws:rds:eu-west-1:999999999999:db:x", None, &scope())
                .is_ok()
        );
        assert!(
            listed
                .check("arn:aws:rds:eu-west-1:111122223333:db:x", None, &scope())
                .is_err()
        );
        assert!(
            listed
                .check("arn:aws:rds:us-east-1:999999999999:db:x", None, &scope())
                .unwrap_err()
                .contains("region")
        );
        assert!(
            listed
                .check("arn:aws:s3:::bucket", Some("us-east-1"), &scope())
                .is_err()
        );
        assert!(own.check("not-an-arn", None, &scope()).is_err());
    }

    #[test]
    fn an_arn_has_six_parts_and_names_partition_service_and_resource() {
        let parsed = Arn::parse("arn:aws:rds:us-east-1:111122223333:db:x:y").unwrap();
        assert_eq!(
            (
                parsed.partition,
                parsed.service,
                parsed.region,
                parsed.account,
                parsed.resource
            ),
            ("aws", "rds", "us-east-1", "111122223333", "db:x:y")
        );
        for malformed in [
            "arm:aws:rds:us-east-1:111122223333:db:x",
            "arn::rds:us-east-1:111122223333:db:x",
            "arn:aws::us-east-1:111122223333:db:x",
            "arn:aws:rds:us-east-1:111122223333:",
            "arn:aws:rds:us-east-1:111122223333",
        ] {
            assert_eq!(Arn::parse(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn only_an_s3_arn_may_name_no_account() {
        let own = Guard::default();
        for no_account in ["arn:aws:rds:us-east-1::db:x", "arn:aws:rds:::db:x"] {
            let err = own.check(no_account, None, &scope()).unwrap_err();
            assert!(err.contains("12-digit account"), "{no_account}: {err}");
        }
        let err = own.check("arn:aws:s3:us-east-1::bucket", None, &scope()).unwrap_err();
        assert!(
            err.contains("12-digit account"),
            "an S3 ARN with a region is not global: {err}"
        );
        let err = own
            .check("arn:aws:rds:us-east-1:1111222233ab:db:x", None, &scope())
            .unwrap_err();
        assert!(err.contains("12-digit account"), "{err}");
        let err = own.check("arn:aws:rds::111122223333:db:x", None, &scope()).unwrap_err();
        assert!(err.contains("does not name a region"), "{err}");
        let err = own
            .check("arn:aws-cn:rds:us-east-1:111122223333:db:x", None, &scope())
            .unwrap_err();
        assert!(err.contains("partition aws-cn"), "{err}");
    }

    #[test]
    fn the_allow_lists_come_from_the_environment() {
        // The only test that touches these variables, so no other test can see them change; the
        // crate reads the environment only through std, whose lock serialises it with set_var.
        unsafe {
            std::env::set_var("ALLOWED_ACCOUNTS", " 111122223333, ,444455556666 ");
            std::env::set_var("ALLOWED_REGIONS", "eu-west-1,");
        }
        let guard = Guard::from_env();
        unsafe {
            std::env::remove_var("ALLOWED_ACCOUNTS");
            std::env::remove_var("ALLOWED_REGIONS");
        }
        assert_eq!(guard.allowed_accounts, ["111122223333", "444455556666"]);
        assert_eq!(guard.allowed_regions, ["eu-west-1"]);
        assert_eq!(Guard::from_env(), Guard::default(), "unset: own account, any region");
    }

    /// A tag store of the test's choosing.
    struct Store(Vec<(String, Tags)>);

    impl TagReader for Store {
        async fn tags_of(&self, arn: &str) -> Result<Option<Tags>, AwsError> {
            Ok(self.0.iter().find(|(a, _)| a == arn).map(|(_, t)| t.clone()))
        }
        async fn find_by_tags(&self, _: &str, tags: &[(&str, &str)]) -> Result<Vec<(String, Tags)>, AwsError> {
            Ok(self
                .0
                .iter()
                .filter(|(_, t)| tags.iter().all(|(k, v)| t.get(*k).map(String::as_str) == Some(*v)))
                .cloned()
                .collect())
        }
    }

    fn crossplane_tags(name: &str, namespace: &str) -> Tags {
        [
            (TAG_KIND, "instance.rds.aws.m.upbound.io"),
            (TAG_NAME, name),
            (TAG_NAMESPACE, namespace),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const DB: &str = "arn:aws:rds:us-east-1:111122223333:db:orders";

    fn reference(name: &str) -> ManagedResource {
        ManagedResource::from_reference(&json!({"apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance", "name": name, "namespace": "team-a"}))
            .unwrap()
    }

    #[tokio::test]
    async fn resolves_built_arns_and_references() {
        let store = Store(vec![(DB.into(), crossplane_tags("orders", "team-a"))]);
        let built = resource("rds.aws.m.upbound.io/v1beta1", "Instance", "orders", json!({}));
        let resolved = resolve(&built, &scope(), &Guard::default(), &store).await.unwrap();
        assert_eq!(resolved.arn, DB);
        // A reference has no external name: the built ARN uses the name, and also resolves.
        let resolved = resolve(&reference("orders"), &scope(), &Guard::default(), &store)
            .await
            .unwrap();
        assert_eq!(resolved.arn, DB);
        let missing = resolve(&reference("nope"), &scope(), &Guard::default(), &store)
            .await
            .unwrap_err();
        assert!(matches!(missing, Unresolved::NotFound(_)), "{missing:?}");
    }

    #[tokio::test]
    async fn lookup_by_tags_when_no_arn_can_be_built() {
        let secret_tags: Tags = [
            (TAG_KIND, "secret.secretsmanager.aws.m.upbound.io"),
            (TAG_NAME, "db"),
            (TAG_NAMESPACE, "team-a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let secret_arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf";
        let secret = ManagedResource::from_reference(
            &json!({"apiVersion": "secretsmanager.aws.m.upbound.io/v1beta1", "kind": "Secret", "name": "db", "namespace": "team-a"}),
        )
        .unwrap();
        let store = Store(vec![(secret_arn.into(), secret_tags.clone())]);
        let resolved = resolve(&secret, &scope(), &Guard::default(), &store).await.unwrap();
        assert_eq!(resolved.arn, secret_arn);
        let twice = Store(vec![
            (secret_arn.into(), secret_tags.clone()),
            (format!("{secret_arn}2"), secret_tags),
        ]);
        let err = resolve(&secret, &scope(), &Guard::default(), &twice).await.unwrap_err();
        assert!(matches!(err, Unresolved::Ambiguous(m) if m.contains("2 resources")));
    }

    #[tokio::test]
    async fn refuses_what_crossplane_does_not_manage_as_this_resource() {
        let built = resource("rds.aws.m.upbound.io/v1beta1", "Instance", "orders", json!({}));
        let unmanaged = Store(vec![(DB.into(), [("team".to_string(), "dba".to_string())].into())]);
        let err = resolve(&built, &scope(), &Guard::default(), &unmanaged)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Unresolved::Refused(m) if m.contains("not managed by Crossplane")),
            "{err:?}"
        );
        let other = Store(vec![(DB.into(), crossplane_tags("orders", "team-b"))]);
        let err = resolve(&built, &scope(), &Guard::default(), &other).await.unwrap_err();
        assert!(
            matches!(&err, Unresolved::Refused(m) if m.contains("team-b/orders")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_namespace_tag_on_a_cluster_scoped_resource_is_ignored() {
        let mut tags = crossplane_tags("orders", "team-a");
        tags.insert(TAG_KIND.into(), "instance.rds.aws.upbound.io".into());
        let store = Store(vec![(DB.into(), tags)]);
        let cluster_scoped = resource("rds.aws.upbound.io/v1beta3", "Instance", "orders", json!({}));
        let resolved = resolve(&cluster_scoped, &scope(), &Guard::default(), &store)
            .await
            .unwrap();
        assert_eq!(resolved.resource.namespace, None);
        let mut from_aws = cluster_scoped.clone();
        from_aws.identity_verified = false;
        let adopted = resolve(&from_aws, &scope(), &Guard::default(), &store).await.unwrap();
        assert_eq!(
            adopted.resource.namespace, None,
            "not adopted from a tag anyone may set"
        );
    }

    #[tokio::test]
    async fn an_unverified_identity_is_taken_from_the_live_tags() {
        let mut from_aws = resource("rds.aws.m.upbound.io/v1beta1", "Instance", "orders", json!({}));
        from_aws.identity_verified = false;
        from_aws.namespace = None;
        let store = Store(vec![(DB.into(), crossplane_tags("orders-db-claim", "team-z"))]);
        let resolved = resolve(&from_aws, &scope(), &Guard::default(), &store).await.unwrap();
        assert_eq!(resolved.resource.name, "orders-db-claim");
        assert_eq!(resolved.resource.namespace.as_deref(), Some("team-z"));
        assert!(resolved.resource.identity_verified);
    }

    #[test]
    fn regions_have_the_form_of_one() {
        for region in [
            "us-east-1",
            "eu-west-3",
            "us-gov-west-1",
            "eusc-de-east-1",
            "ap-southeast-5",
        ] {
            assert!(is_region(region), "{region}");
        }
        for name in [
            "",
            "us",
            "us-east",
            "east-1",
            "us-east-123",
            "US-east-1",
            "us--1",
            "us-east-1\n",
            "us-east-x",
            "us_east-1",
        ] {
            assert!(!is_region(name), "{name:?}");
        }
        let guard = Guard::default();
        let scope = Scope {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let error = guard
            .check("arn:aws:rds:Us-East-1:123456789012:db:x", None, &scope)
            .unwrap_err();
        assert!(error.contains("is not an AWS region"), "{error}");
        let error = guard.check("arn:aws:s3:::logs", Some("nowhere"), &scope).unwrap_err();
        assert!(error.contains("is not an AWS region"), "{error}");
        assert_eq!(guard.check("arn:aws:s3:::logs", Some("eu-west-1"), &scope), Ok(()));
    }

    #[tokio::test]
    async fn prefetched_tags_answer_for_their_resource_only() {
        let listed_arn = "arn:aws:dynamodb:us-east-1:111111111111:table/orders";
        let other_arn = "arn:aws:dynamodb:us-east-1:111111111111:table/other";
        let tag = |value: &str| -> Tags { [("crossplane-name".to_string(), value.to_string())].into() };
        let store = Store(vec![
            (listed_arn.to_string(), tag("as read now")),
            (other_arn.to_string(), tag("other")),
        ]);
        let listed = tag("as listed");
        let reader = PrefetchedTags {
            arn: Some(listed_arn),
            tags: Some(&listed),
            reader: &store,
        };
        assert_eq!(reader.tags_of(listed_arn).await.unwrap(), Some(listed.clone()));
        assert_eq!(reader.tags_of(other_arn).await.unwrap(), Some(tag("other")));
        let unlisted = PrefetchedTags {
            arn: Some(listed_arn),
            tags: None,
            reader: &store,
        };
        assert_eq!(
            unlisted.tags_of(listed_arn).await.unwrap(),
            Some(tag("as read now")),
            "without listed tags: read"
        );
        // A lookup by tags is always the reader's.
        let found = reader
            .find_by_tags("dynamodb:table", &[("crossplane-name", "other")])
            .await
            .unwrap();
        assert_eq!(found, vec![(other_arn.to_string(), tag("other"))]);
    }
}
