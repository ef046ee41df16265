//! Where the connection details go: names rendered from templates over the managed resource.
//!
//! Placeholders: `{namespace}` (the managed resource's namespace, else its claim's, else
//! `cluster`), `{name}`, `{claim}` (the claim's name, else `{name}`), `{kind}` (lower case).

use common::ManagedResource;

const CLAIM_NAME: &str = "crossplane.io/claim-name";
const CLAIM_NAMESPACE: &str = "crossplane.io/claim-namespace";

/// Renders a template; an unknown placeholder is an error naming it.
pub fn render(template: &str, resource: &ManagedResource) -> Result<String, String> {
    let namespace = resource
        .namespace
        .clone()
        .or_else(|| resource.labels.get(CLAIM_NAMESPACE).cloned())
        .unwrap_or_else(|| "cluster".to_string());
    let claim = resource
        .labels
        .get(CLAIM_NAME)
        .cloned()
        .unwrap_or_else(|| resource.name.clone());
    let kind = resource.kind.to_ascii_lowercase();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        let (placeholder, tail) = after
            .split_once('}')
            .ok_or_else(|| format!("template {template:?} has an unclosed '{{'"))?;
        let value = match placeholder {
            "namespace" => namespace.as_str(),
            "name" => resource.name.as_str(),
            "claim" => claim.as_str(),
            "kind" => kind.as_str(),
            other => {
                return Err(format!("template {template:?} has an unknown placeholder {{{other}}}"));
            }
        };
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
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
    fn renders_placeholders() {
        let r = resource(Some("team-a"));
        assert_eq!(
            render("crossplane/{namespace}/{name}/connection", &r).unwrap(),
            "crossplane/team-a/orders-db/connection"
        );
        assert_eq!(render("/apps/{claim}/{kind}", &r).unwrap(), "/apps/orders/instance");
        assert_eq!(render("{namespace}", &resource(None)).unwrap(), "cluster");
        assert!(render("x/{nope}", &r).unwrap_err().contains("{nope}"));
        assert!(render("x/{name", &r).unwrap_err().contains("unclosed"));
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
