//! The managed-resource kinds the suite knows, in both API-group families of the AWS provider:
//! cluster-scoped `<service>.aws.upbound.io` and Crossplane v2 namespaced `<service>.aws.m.upbound.io`.

/// How the ARN of a kind's external resource is formed from its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArnShape {
    /// `arn:P:rds:R:A:db:ID`
    RdsInstance,
    /// `arn:P:rds:R:A:cluster:ID`
    RdsCluster,
    /// `arn:P:s3:::ID` (no region, no account)
    S3Bucket,
    /// `arn:P:sqs:R:A:ID` (the external name is the queue URL)
    SqsQueue,
    /// `arn:P:dynamodb:R:A:table/ID`
    DynamoDbTable,
    /// The external name is the ARN itself (AWS appends a random suffix): never built.
    SecretsManagerSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKind {
    /// The service part of the API group: `rds` in `rds.aws.m.upbound.io`.
    pub service: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in API paths.
    pub plural: &'static str,
    /// The `spec.forProvider` field that holds the identifier when there is no external name.
    pub identifier_field: Option<&'static str>,
    pub arn: ArnShape,
    /// The storage version in the cluster-scoped group (provider v2.6.0).
    pub cluster_version: &'static str,
    /// `service:resourcetype` for the Resource Groups Tagging API.
    pub tagging_type: &'static str,
}

pub const KNOWN_KINDS: &[KnownKind] = &[
    KnownKind {
        service: "rds",
        kind: "Instance",
        plural: "instances",
        identifier_field: Some("identifier"),
        arn: ArnShape::RdsInstance,
        cluster_version: "v1beta3",
        tagging_type: "rds:db",
    },
    KnownKind {
        service: "rds",
        kind: "Cluster",
        plural: "clusters",
        identifier_field: None,
        arn: ArnShape::RdsCluster,
        cluster_version: "v1beta2",
        tagging_type: "rds:cluster",
    },
    KnownKind {
        service: "s3",
        kind: "Bucket",
        plural: "buckets",
        identifier_field: None,
        arn: ArnShape::S3Bucket,
        cluster_version: "v1beta2",
        tagging_type: "s3",
    },
    KnownKind {
        service: "sqs",
        kind: "Queue",
        plural: "queues",
        identifier_field: Some("name"),
        arn: ArnShape::SqsQueue,
        cluster_version: "v1beta1",
        tagging_type: "sqs",
    },
    KnownKind {
        service: "dynamodb",
        kind: "Table",
        plural: "tables",
        identifier_field: None,
        arn: ArnShape::DynamoDbTable,
        cluster_version: "v1beta2",
        tagging_type: "dynamodb:table",
    },
    KnownKind {
        service: "secretsmanager",
        kind: "Secret",
        plural: "secrets",
        identifier_field: Some("name"),
        arn: ArnShape::SecretsManagerSecret,
        cluster_version: "v1beta1",
        tagging_type: "secretsmanager:secret",
    },
];

/// The two API-group families of the AWS provider.
pub const CLUSTER_SCOPED_SUFFIX: &str = ".aws.upbound.io";
pub const NAMESPACED_SUFFIX: &str = ".aws.m.upbound.io";
/// Every namespaced managed resource of provider v2 is served as `v1beta1`.
pub const NAMESPACED_VERSION: &str = "v1beta1";

/// The service of an AWS provider API group, and whether the group is the namespaced family.
pub fn split_group(group: &str) -> Option<(&str, bool)> {
    if let Some(service) = group.strip_suffix(NAMESPACED_SUFFIX) {
        Some((service, true))
    } else {
        group
            .strip_suffix(CLUSTER_SCOPED_SUFFIX)
            .map(|service| (service, false))
    }
}

/// The known kind for an API group and kind, in either family.
pub fn lookup(group: &str, kind: &str) -> Option<&'static KnownKind> {
    let (service, _) = split_group(group)?;
    KNOWN_KINDS.iter().find(|k| k.service == service && k.kind == kind)
}

/// The known kind for a `crossplane-kind` tag value such as `instance.rds.aws.m.upbound.io`,
/// returning it with the API group.
pub fn from_crossplane_kind_tag(value: &str) -> Option<(&'static KnownKind, String)> {
    let (kind, group) = value.split_once('.')?;
    let (service, _) = split_group(group)?;
    KNOWN_KINDS
        .iter()
        .find(|k| k.service == service && k.kind.eq_ignore_ascii_case(kind))
        .map(|k| (k, group.to_string()))
}

/// The `crossplane-kind` tag values the provider writes for these kinds, in both families
/// (`instance.rds.aws.upbound.io`, `instance.rds.aws.m.upbound.io`): what a sweep lists.
pub fn crossplane_kind_tags(kinds: &[&KnownKind]) -> Vec<String> {
    kinds
        .iter()
        .flat_map(|known| {
            [CLUSTER_SCOPED_SUFFIX, NAMESPACED_SUFFIX]
                .map(|suffix| format!("{}.{}{suffix}", known.kind, known.service).to_ascii_lowercase())
        })
        .collect()
}

/// The plural of a kind for API paths: known kinds first, then the usual English rule.
pub fn plural(group: &str, kind: &str) -> String {
    if let Some(known) = lookup(group, kind) {
        return known.plural.to_string();
    }
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') || lower.ends_with('x') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The version a group serves a known kind at, for events that name no version.
pub fn default_version(group: &str, known: &KnownKind) -> &'static str {
    match split_group(group) {
        Some((_, true)) => NAMESPACED_VERSION,
        _ => known.cluster_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_tags() {
        assert_eq!(split_group("rds.aws.m.upbound.io"), Some(("rds", true)));
        assert_eq!(split_group("rds.aws.upbound.io"), Some(("rds", false)));
        assert_eq!(split_group("example.org"), None);
        let (k, g) = from_crossplane_kind_tag("instance.rds.aws.m.upbound.io").unwrap();
        assert_eq!((k.kind, g.as_str()), ("Instance", "rds.aws.m.upbound.io"));
        assert!(from_crossplane_kind_tag("widget.example.org").is_none());
        assert_eq!(plural("rds.aws.upbound.io", "Cluster"), "clusters");
        assert_eq!(plural("x.example.org", "Policy"), "policies");
        assert_eq!(plural("x.example.org", "Address"), "addresses");
    }

    #[test]
    fn kind_tags_name_both_families_and_read_back() {
        let rds: Vec<&KnownKind> = KNOWN_KINDS.iter().filter(|k| k.service == "rds").collect();
        let tags = crossplane_kind_tags(&rds);
        assert_eq!(
            tags,
            [
                "instance.rds.aws.upbound.io",
                "instance.rds.aws.m.upbound.io",
                "cluster.rds.aws.upbound.io",
                "cluster.rds.aws.m.upbound.io"
            ]
        );
        for tag in &tags {
            assert!(from_crossplane_kind_tag(tag).is_some(), "{tag}");
        }
    }
}
