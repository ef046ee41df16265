//! Where the connection details go: names rendered from templates over the managed resource.
//!
//! One database must get one name whatever trigger delivered its event, so the placeholders
//! are facts every path establishes the same way (README, "Target names"):
//! `{namespace}` (the managed resource's namespace; `cluster` for a cluster-scoped one),
//! `{name}` and `{kind}` (lower case): from the event's object or reference, checked against
//! the provider's `crossplane-*` tags on the live resource, or taken from them for AWS events.
//! `{claim}` (the claim's name, from the `crossplane.io/claim-name` label) only exists where the
//! event carried the object's labels; on other paths rendering says so and nothing is written.

use common::ManagedResource;
use common::crossplane::LABEL_CLAIM_NAME;

/// Why a template could not be rendered for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The template itself is wrong: a configuration error.
    Invalid(String),
    /// This event cannot establish a fact the template needs (e.g. `{claim}` from an AWS event).
    NotEstablished(String),
}

/// Renders a template; an unknown placeholder is an error naming it.
pub fn render(template: &str, resource: &ManagedResource) -> Result<String, NameError> {
    let namespace = resource.namespace.as_deref().unwrap_or("cluster");
    let kind = resource.kind.to_ascii_lowercase();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        let (placeholder, tail) = after
            .split_once('}')
            .ok_or_else(|| NameError::Invalid(format!("template {template:?} has an unclosed '{{'")))?;
        let value = match placeholder {
            "namespace" => namespace,
            "name" => resource.name.as_str(),
            "kind" => kind.as_str(),
            "claim" => claim(resource)?,
            other => {
                return Err(NameError::Invalid(format!(
                    "template {template:?} has an unknown placeholder {{{other}}}"
                )));
            }
        };
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn claim(resource: &ManagedResource) -> Result<&str, NameError> {
    if !resource.labels_known {
        return Err(NameError::NotEstablished(format!(
            "{{claim}} needs the managed resource's labels, which this event does not carry \
             (only events with the object do): nothing written for {}",
            resource.display_name()
        )));
    }
    resource
        .labels
        .get(LABEL_CLAIM_NAME)
        .map(String::as_str)
        .ok_or_else(|| {
            NameError::NotEstablished(format!(
                "{{claim}}: {} has no {LABEL_CLAIM_NAME} label (it belongs to no claim)",
                resource.display_name()
            ))
        })
}

/// Secrets Manager names: 1–512 characters of `A-Za-z0-9/_+=.@-`.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid Secrets Manager secret name"))
    }
}

/// SSM parameter paths: start with `/`, at most 15 levels, `a-zA-Z0-9_.-/`, not `/aws` or `/ssm`.
pub fn check_parameter_path(path: &str) -> Result<(), String> {
    let lower = path.to_ascii_lowercase();
    let valid = path.starts_with('/')
        && path.len() <= 1000
        && path.matches('/').count() < 15
        && !lower.starts_with("/aws")
        && !lower.starts_with("/ssm")
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("{path:?} is not a valid SSM parameter path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(namespace: Option<&str>) -> ManagedResource {
        let mut object = json!({"apiVersion": "rds.aws.upbound.io/v1beta3", "kind": "Instance",
            "metadata": {"name": "orders-db", "labels": {"crossplane.io/claim-name": "orders"}}});
        if let Some(ns) = namespace {
            object["apiVersion"] = json!("rds.aws.m.upbound.io/v1beta1");
            object["metadata"]["namespace"] = json!(ns);
        }
        ManagedResource::from_object(&object).unwrap()
    }

    #[test]
    fn a_parameter_path_leaves_room_for_its_key_within_fifteen_levels() {
        // The path's parameters are `path/key`: a path of 14 levels makes names of 15, SSM's limit.
        let fourteen = "/l".repeat(14);
        assert_eq!(check_parameter_path(&fourteen), Ok(()));
        let fifteen = "/l".repeat(15);
        assert!(check_parameter_path(&fifteen).is_err());
    }

    #[test]
    fn renders_placeholders() {
        let r = resource(Some("team-a"));
        assert_eq!(
            render("crossplane/{namespace}/{name}/connection", &r).unwrap(),
            "crossplane/team-a/orders-db/connection"
        );
        assert_eq!(render("/apps/{claim}/{kind}", &r).unwrap(), "/apps/orders/instance");
        assert!(matches!(render("x/{nope}", &r), Err(NameError::Invalid(m)) if m.contains("{nope}")));
        assert!(matches!(render("x/{name", &r), Err(NameError::Invalid(m)) if m.contains("unclosed")));
    }

    #[test]
    fn the_namespace_is_the_managed_resources_own_never_a_label() {
        // A cluster-scoped managed resource of a claim in team-a: every trigger agrees on
        // `cluster`, including an AWS event that knows no labels.
        let r = resource(None);
        assert_eq!(render("{namespace}/{name}", &r).unwrap(), "cluster/orders-db");
    }

    #[test]
    fn a_claim_is_only_rendered_where_the_labels_are_known() {
        let mut r = resource(Some("team-a"));
        r.labels_known = false;
        assert!(matches!(render("/apps/{claim}", &r), Err(NameError::NotEstablished(m)) if m.contains("labels")));
        let mut unclaimed = resource(Some("team-a"));
        unclaimed.labels.clear();
        assert!(matches!(
            render("/apps/{claim}", &unclaimed),
            Err(NameError::NotEstablished(_))
        ));
        // Placeholders it does not use need no labels.
        assert_eq!(
            render("/apps/{namespace}/{name}", &r).unwrap(),
            "/apps/team-a/orders-db"
        );
    }

    #[test]
    fn checks_names() {
        assert!(check_secret_name("crossplane/team-a/orders-db").is_ok());
        assert!(check_secret_name("has space").is_err());
        assert!(check_parameter_path("/crossplane/team-a/orders-db").is_ok());
        assert!(check_parameter_path("crossplane/no-slash").is_err());
        assert!(check_parameter_path("/aws/reserved").is_err());
    }
}
