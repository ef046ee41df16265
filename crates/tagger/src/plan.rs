//! What the tags of a resource should be, and the difference to write.

use common::ManagedResource;
use common::crossplane::{
    ANNOTATION_COMPOSITION_RESOURCE_NAME, LABEL_CLAIM_NAME, LABEL_CLAIM_NAMESPACE, LABEL_COMPOSITE, reserved_tag_key,
};

use crate::TagSet;
use crate::policy::TagPolicy;
use crate::rules;

/// Labels and annotations Crossplane sets on composed resources, and the tag each becomes.
const DERIVED_FROM_LABELS: &[&str] = &[LABEL_CLAIM_NAME, LABEL_CLAIM_NAMESPACE, LABEL_COMPOSITE];
const DERIVED_FROM_ANNOTATIONS: &[&str] = &[ANNOTATION_COMPOSITION_RESOURCE_NAME];
pub const NAMESPACE_TAG: &str = "crossplane.io/namespace";

/// The tags to write, and the desired tags left out because AWS would refuse them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Only the difference: tags missing or with another value (defaults only where missing).
    pub to_set: TagSet,
    /// How many desired tags the resource already carries.
    pub already: usize,
    /// `key: why` for tags derived from the resource that break AWS's rules, or that a label
    /// would set on a reserved key (identity and ownership tags: never from tenant input).
    pub dropped: Vec<String>,
}

/// Tags derived from the managed resource: claim, composite, namespace, composition resource
/// name, and labels with the policy's prefix. A prefixed label that would name a reserved key
/// (`crossplane-name`, `crossplane.io/claim-name`, `crossplane-lambda.io/resource`, …) is left
/// out and reported: labels are the tenant's, and identity must not be writable through them.
pub fn derived_tags(resource: &ManagedResource, label_prefix: Option<&str>) -> (TagSet, Vec<String>) {
    let mut tags = TagSet::new();
    let mut refused = Vec::new();
    if let Some(prefix) = label_prefix.filter(|p| !p.is_empty()) {
        for (label, value) in &resource.labels {
            if let Some(key) = label.strip_prefix(prefix).filter(|k| !k.is_empty()) {
                match reserved_tag_key(key) {
                    Some(why) => refused.push(format!("label {label:?} names the reserved tag {key:?}: {why}")),
                    None => {
                        tags.insert(key.to_string(), value.clone());
                    }
                }
            }
        }
    }
    for key in DERIVED_FROM_LABELS {
        if let Some(value) = resource.labels.get(*key) {
            tags.insert((*key).to_string(), value.clone());
        }
    }
    for key in DERIVED_FROM_ANNOTATIONS {
        if let Some(value) = resource.annotations.get(*key) {
            tags.insert((*key).to_string(), value.clone());
        }
    }
    if let Some(namespace) = &resource.namespace {
        tags.insert(NAMESPACE_TAG.to_string(), namespace.clone());
    }
    (tags, refused)
}

/// Plans the write for one resource. Precedence: policy `tags` over derived tags over
/// `defaults`; defaults never overwrite a value already on the resource.
///
/// A policy tag that breaks AWS's rules is a configuration error (`Err`); a derived one is
/// dropped and reported, so one odd label does not block the rest.
pub fn plan(arn: &str, resource: &ManagedResource, current: &TagSet, policy: &TagPolicy) -> Result<Plan, String> {
    for (key, value) in policy.tags.iter().chain(&policy.defaults) {
        if let Some(why) = rules::violation(arn, key, value) {
            return Err(format!("the tag policy is invalid for {arn}: {why}"));
        }
    }
    let (derived, refused) = derived_tags(resource, policy.label_prefix.as_deref());
    let mut result = Plan {
        dropped: refused,
        ..Plan::default()
    };
    let mut enforced = TagSet::new();
    for (key, value) in derived {
        match rules::violation(arn, &key, &value) {
            Some(why) => result.dropped.push(why),
            None => {
                enforced.insert(key, value);
            }
        }
    }
    enforced.extend(policy.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (key, value) in &enforced {
        if current.get(key) == Some(value) {
            result.already += 1;
        } else {
            result.to_set.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in &policy.defaults {
        if enforced.contains_key(key) {
            continue;
        }
        if current.contains_key(key) {
            result.already += 1;
        } else {
            result.to_set.insert(key.clone(), value.clone());
        }
    }
    let total = rules::count_after(current, &result.to_set);
    if total > rules::MAX_TAGS_PER_RESOURCE {
        return Err(format!(
            "{arn} would carry {total} tags, more than the {} AWS allows",
            rules::MAX_TAGS_PER_RESOURCE
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:rds:eu-west-1:111122223333:db:orders";

    fn resource() -> ManagedResource {
        ManagedResource::from_object(&json!({
            "apiVersion": "rds.aws.m.upbound.io/v1beta1",
            "kind": "Instance",
            "metadata": {
                "name": "orders", "namespace": "team-a",
                "labels": {"crossplane.io/claim-name": "orders", "crossplane.io/composite": "orders-x7",
                           "tags.example.com/team": "payments", "tags.example.com/bad": "semi;colon", "app": "x"},
                "annotations": {"crossplane.io/composition-resource-name": "database"}
            }
        }))
        .unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> TagSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn policy() -> TagPolicy {
        TagPolicy {
            tags: tags(&[("cost-center", "platform"), ("team", "platform-wins")]),
            defaults: tags(&[("owner", "platform-team")]),
            label_prefix: Some("tags.example.com/".into()),
        }
    }

    #[test]
    fn derives_tags_from_the_resource() {
        let (derived, refused) = derived_tags(&resource(), Some("tags.example.com/"));
        assert!(refused.is_empty());
        assert_eq!(
            derived,
            tags(&[
                ("crossplane.io/claim-name", "orders"),
                ("crossplane.io/composite", "orders-x7"),
                ("crossplane.io/composition-resource-name", "database"),
                ("crossplane.io/namespace", "team-a"),
                ("team", "payments"),
                ("bad", "semi;colon"),
            ])
        );
    }

    #[test]
    fn first_plan_sets_everything_valid_and_reports_the_rest() {
        let p = plan(ARN, &resource(), &TagSet::new(), &policy()).unwrap();
        assert_eq!(
            p.to_set.get("team").map(String::as_str),
            Some("platform-wins"),
            "policy beats labels"
        );
        assert_eq!(p.to_set.get("owner").map(String::as_str), Some("platform-team"));
        assert!(!p.to_set.contains_key("bad"));
        assert_eq!(p.dropped.len(), 1);
        assert!(p.dropped[0].contains("';'"));
        assert_eq!(p.to_set.len(), 7);
    }

    #[test]
    fn only_the_difference_is_written_and_defaults_never_overwrite() {
        let first = plan(ARN, &resource(), &TagSet::new(), &policy()).unwrap();
        let mut current = first.to_set.clone();
        assert!(plan(ARN, &resource(), &current, &policy()).unwrap().to_set.is_empty());
        current.insert("owner".into(), "someone-else".into());
        current.insert("cost-center".into(), "drifted".into());
        let p = plan(ARN, &resource(), &current, &policy()).unwrap();
        assert_eq!(p.to_set, tags(&[("cost-center", "platform")]));
    }

    #[test]
    fn a_tag_already_in_place_is_counted_not_written() {
        let first = plan(ARN, &resource(), &TagSet::new(), &policy()).unwrap();
        assert_eq!(first.already, 0, "nothing is in place on a bare resource");
        let mut current = first.to_set.clone();
        let replay = plan(ARN, &resource(), &current, &policy()).unwrap();
        assert_eq!(replay.already, 7, "six enforced tags and one default, all in place");
        // A default someone changed by hand still counts as in place (defaults never overwrite);
        // an enforced tag that drifted is written again, not counted.
        current.insert("owner".into(), "someone-else".into());
        current.insert("cost-center".into(), "drifted".into());
        let drifted = plan(ARN, &resource(), &current, &policy()).unwrap();
        assert_eq!(drifted.already, 6);
        assert_eq!(drifted.to_set.len(), 1);
    }

    #[test]
    fn a_label_naming_a_reserved_key_is_reported_by_the_plan_not_written() {
        let mut forged = resource();
        forged
            .labels
            .insert("tags.example.com/crossplane-name".into(), "someone-else".into());
        let p = plan(ARN, &forged, &TagSet::new(), &policy()).unwrap();
        assert!(!p.to_set.contains_key("crossplane-name"));
        assert_eq!(p.dropped.len(), 2, "{:?}", p.dropped);
        assert!(
            p.dropped
                .iter()
                .any(|why| why.contains("reserved tag \"crossplane-name\"")),
            "{:?}",
            p.dropped
        );
    }

    #[test]
    fn exactly_fifty_tags_is_within_the_limit() {
        // The first plan adds seven tags; 43 unrelated ones make exactly AWS's 50.
        let at_limit: TagSet = (0..43).map(|i| (format!("k{i}"), "v".into())).collect();
        let p = plan(ARN, &resource(), &at_limit, &policy()).unwrap();
        assert_eq!(rules::count_after(&at_limit, &p.to_set), rules::MAX_TAGS_PER_RESOURCE);
        let over: TagSet = (0..44).map(|i| (format!("k{i}"), "v".into())).collect();
        let err = plan(ARN, &resource(), &over, &policy()).unwrap_err();
        assert!(err.contains("51 tags"), "{err}");
    }

    #[test]
    fn an_invalid_policy_or_too_many_tags_is_an_error() {
        let mut bad = policy();
        bad.tags.insert("rds:owner".into(), "x".into());
        assert!(
            plan(ARN, &resource(), &TagSet::new(), &bad)
                .unwrap_err()
                .contains("rds:")
        );
        let crowded: TagSet = (0..48).map(|i| (format!("k{i}"), "v".into())).collect();
        let err = plan(ARN, &resource(), &crowded, &policy()).unwrap_err();
        assert!(err.contains("55 tags"), "{err}");
    }
}
