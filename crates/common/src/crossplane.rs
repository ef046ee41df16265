//! Crossplane's well-known names (labels, annotations, conditions, the AWS provider's tags), the
//! suite's own tags, and which tag keys are reserved: keys that identity and ownership decisions
//! read, so no tenant-controlled input may ever write them through us (ARCHITECTURE.md, "Trust").

/// Tags the AWS provider writes on every external resource it manages. Its tagger initializer
/// sets them in `spec.forProvider.tags` from the managed resource's own kind, name and namespace
/// on every reconcile, overwriting any value a tenant put there: they are platform-controlled.
pub const TAG_KIND: &str = "crossplane-kind";
pub const TAG_NAME: &str = "crossplane-name";
pub const TAG_NAMESPACE: &str = "crossplane-namespace";
pub const TAG_PROVIDER_CONFIG: &str = "crossplane-providerconfig";
/// Every provider tag starts with this.
pub const PROVIDER_TAG_PREFIX: &str = "crossplane-";

/// Labels Crossplane puts on composed resources (tenant-controlled for a managed resource a
/// tenant writes directly: read for display and tagging, never for identity).
pub const LABEL_CLAIM_NAME: &str = "crossplane.io/claim-name";
pub const LABEL_CLAIM_NAMESPACE: &str = "crossplane.io/claim-namespace";
pub const LABEL_COMPOSITE: &str = "crossplane.io/composite";
pub const ANNOTATION_EXTERNAL_NAME: &str = "crossplane.io/external-name";
pub const ANNOTATION_COMPOSITION_RESOURCE_NAME: &str = "crossplane.io/composition-resource-name";
/// The prefix of Crossplane's own labels and annotations, and of the tags the tagger derives.
pub const CROSSPLANE_IO_PREFIX: &str = "crossplane.io/";

/// Condition types and reasons the lifecycle rules read.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_SYNCED: &str = "Synced";
pub const REASON_RECONCILE_ERROR: &str = "ReconcileError";

/// Tags the suite itself writes (secret-syncer's ownership of secrets and parameters).
pub const SUITE_TAG_PREFIX: &str = "crossplane-lambda.io/";

/// Why a tag key may not be written from a label or the tag policy, or `None` when it may.
/// Reserved: the provider's `crossplane-*` tags (the guard's identity check reads them), the
/// `crossplane.io/*` tags the tagger derives itself, the suite's `crossplane-lambda.io/*`
/// ownership tags, and AWS's `aws:` prefix. Compared without regard to case, as AWS does for
/// its reserved prefix.
pub fn reserved_tag_key(key: &str) -> Option<&'static str> {
    let has = |prefix: &str| key.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if has(SUITE_TAG_PREFIX) {
        Some("crossplane-lambda.io/ tags record what the suite owns")
    } else if has(PROVIDER_TAG_PREFIX) {
        Some("crossplane-* tags are the AWS provider's record of which managed resource this is")
    } else if has(CROSSPLANE_IO_PREFIX) {
        Some("crossplane.io/ tags are derived by the tagger from Crossplane's own labels")
    } else if has("aws:") {
        Some("the aws: prefix is reserved by AWS")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_ownership_keys_are_reserved_in_any_case() {
        for key in [
            "crossplane-name",
            "crossplane-namespace",
            "Crossplane-Kind",
            "crossplane-providerconfig",
            "crossplane-lambda.io/resource",
            "CROSSPLANE-LAMBDA.IO/managed-by",
            "crossplane.io/claim-name",
            "aws:createdBy",
        ] {
            assert!(reserved_tag_key(key).is_some(), "{key}");
        }
        for key in [
            "team",
            "cost-center",
            "crossplane",
            "crossplanes/x",
            "my-crossplane-name",
        ] {
            assert_eq!(reserved_tag_key(key), None, "{key}");
        }
    }
}
