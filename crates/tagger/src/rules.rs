//! AWS tag rules, checked before anything is written (a rejected `TagResources` would fail the
//! whole set, and some services answer with a vague error).

use crate::TagSet;

/// At most this many user tags on one resource (tags with the `aws:` prefix do not count).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
pub const MAX_KEY_CHARS: usize = 128;
pub const MAX_VALUE_CHARS: usize = 256;

/// Letters, digits and white space in any script, and `_ . : / = + - @`.
fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// Why one tag breaks AWS's rules for the resource at `arn`, or `None` if it is valid.
pub fn violation(arn: &str, key: &str, value: &str) -> Option<String> {
    let key_chars = key.chars().count();
    if key_chars == 0 || key_chars > MAX_KEY_CHARS {
        return Some(format!(
            "key {key:?} must be 1 to {MAX_KEY_CHARS} characters, not {key_chars}"
        ));
    }
    let value_chars = value.chars().count();
    if value_chars > MAX_VALUE_CHARS {
        return Some(format!(
            "value of {key:?} must be at most {MAX_VALUE_CHARS} characters, not {value_chars}"
        ));
    }
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "key {key:?} contains {bad:?}, which AWS does not allow in tags"
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "value of {key:?} contains {bad:?}, which AWS does not allow in tags"
        ));
    }
    if has_prefix(key, "aws:") {
        return Some(format!("key {key:?} uses the reserved aws: prefix"));
    }
    if is_rds(arn) && has_prefix(key, "rds:") {
        return Some(format!("key {key:?} uses the rds: prefix, which RDS reserves"));
    }
    None
}

fn has_prefix(key: &str, prefix: &str) -> bool {
    key.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn is_rds(arn: &str) -> bool {
    common::resolve::Arn::parse(arn).is_some_and(|a| a.service == "rds")
}

/// The number of tags that count against the limit once `adding` is written over `current`.
pub fn count_after(current: &TagSet, adding: &TagSet) -> usize {
    let counted = |k: &&String| !has_prefix(k, "aws:");
    current.keys().filter(counted).count()
        + adding
            .keys()
            .filter(counted)
            .filter(|k| !current.contains_key(*k))
            .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RDS: &str = "arn:aws:rds:eu-west-1:111122223333:db:orders";
    const S3: &str = "arn:aws:s3:::bucket";

    #[test]
    fn valid_tags_pass() {
        assert_eq!(violation(RDS, "cost-center", "platform"), None);
        assert_eq!(violation(RDS, "crossplane.io/claim-name", "orders"), None);
        assert_eq!(violation(RDS, "équipe", "données @ 1+1=2"), None);
        assert_eq!(violation(RDS, "empty-value", ""), None);
        assert_eq!(violation(S3, "rds:ok-outside-rds", "x"), None);
    }

    #[test]
    fn each_rule_is_enforced() {
        assert!(violation(RDS, "", "x").unwrap().contains("1 to 128"));
        assert!(violation(RDS, &"k".repeat(129), "x").unwrap().contains("1 to 128"));
        assert_eq!(violation(RDS, &"k".repeat(128), &"v".repeat(256)), None);
        assert!(violation(RDS, "k", &"v".repeat(257)).unwrap().contains("at most 256"));
        assert!(violation(RDS, "bad*key", "x").unwrap().contains("'*'"));
        assert!(violation(RDS, "k", "semi;colon").unwrap().contains("';'"));
        assert!(violation(S3, "AWS:Owner", "x").unwrap().contains("aws:"));
        assert!(violation(RDS, "RDS:thing", "x").unwrap().contains("RDS reserves"));
    }

    #[test]
    fn the_limit_counts_user_tags_only() {
        let current: TagSet = (0..49)
            .map(|i| (format!("k{i}"), "v".into()))
            .chain([("aws:cloudformation:stack".into(), "s".into())])
            .collect();
        let adding: TagSet = [("k0".to_string(), "new".to_string()), ("extra".into(), "v".into())].into();
        assert_eq!(count_after(&current, &adding), 50);
        let adding: TagSet = [("extra".to_string(), "v".to_string()), ("extra2".into(), "v".into())].into();
        assert_eq!(count_after(&current, &adding), 51);
    }
}
