//! The platform's tag policy, a JSON document in SSM Parameter Store, cached with a TTL.
//!
//! ```json
//! {
//!   "tags":        {"cost-center": "platform", "managed-by": "crossplane"},
//!   "defaults":    {"owner": "platform-team"},
//!   "labelPrefix": "tags.platform.example.com/"
//! }
//! ```
//! `tags` are enforced (a drifted value is restored); `defaults` are set only where the resource
//! has no such tag, never overwriting someone else's value; labels of the managed resource with
//! `labelPrefix` become tags (the prefix removed).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::Client as SsmClient;
use common::HandlerError;
use common::aws::AwsError;
use common::cache::TtlCache;
use serde::Deserialize;

use crate::TagSet;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagPolicy {
    #[serde(default)]
    pub tags: TagSet,
    #[serde(default)]
    pub defaults: TagSet,
    #[serde(default)]
    pub label_prefix: Option<String>,
}

impl TagPolicy {
    /// Parses the document; a policy that names a reserved key (identity and ownership tags,
    /// see [`common::crossplane::reserved_tag_key`]) is refused as a whole.
    pub fn parse(text: &str, origin: &str) -> Result<Self, HandlerError> {
        let policy: TagPolicy = serde_json::from_str(text)
            .map_err(|e| HandlerError::permanent(format!("tag policy {origin} is not valid: {e}"), e))?;
        for key in policy.tags.keys().chain(policy.defaults.keys()) {
            if let Some(why) = common::crossplane::reserved_tag_key(key) {
                return Err(HandlerError::Permanent(
                    format!("tag policy {origin} names the reserved tag {key:?}: {why}").into(),
                ));
            }
        }
        Ok(policy)
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// An SSM parameter (String or SecureString) holding the JSON document.
    Ssm { client: SsmClient, name: String },
    /// A fixed policy: none configured (only tags derived from the resource), or tests.
    Fixed(TagPolicy),
}

impl PolicySource {
    async fn load(&self) -> Result<TagPolicy, HandlerError> {
        match self {
            PolicySource::Fixed(policy) => Ok(policy.clone()),
            PolicySource::Ssm { client, name } => {
                let output = client
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        let error = AwsError::from_sdk("GetParameter", &e);
                        if error.is_code("ParameterNotFound") {
                            HandlerError::permanent(format!("tag policy parameter {name} does not exist"), error)
                        } else {
                            error.into()
                        }
                    })?;
                let text = output.parameter().and_then(|p| p.value()).unwrap_or_default();
                TagPolicy::parse(text, name)
            }
        }
    }
}

/// The policy, loaded at most once per TTL (and only when an event needs it).
#[derive(Debug)]
pub struct CachedPolicy {
    source: PolicySource,
    cache: TtlCache<Arc<TagPolicy>>,
}

impl CachedPolicy {
    pub fn new(source: PolicySource, ttl: Duration) -> Self {
        Self {
            source,
            cache: TtlCache::new(ttl),
        }
    }

    pub async fn get(&self) -> Result<Arc<TagPolicy>, HandlerError> {
        self.cache
            .get_or_load(|| async { self.source.load().await.map(Arc::new) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let p = TagPolicy::parse(
            r#"{"tags":{"cost-center":"platform"},"defaults":{"owner":"team"},"labelPrefix":"tags.example.com/"}"#,
            "test",
        )
        .unwrap();
        assert_eq!(p.tags.get("cost-center").map(String::as_str), Some("platform"));
        assert_eq!(p.label_prefix.as_deref(), Some("tags.example.com/"));
        let e = TagPolicy::parse(r#"{"tagz":{}}"#, "/p").unwrap_err();
        assert!(matches!(e, HandlerError::Permanent(m) if m.contains("/p") && m.contains("tagz")));
    }

    #[test]
    fn a_policy_naming_a_reserved_key_is_refused() {
        for policy in [
            r#"{"tags":{"crossplane-name":"orders-db"}}"#,
            r#"{"defaults":{"crossplane-namespace":"team-a"}}"#,
            r#"{"tags":{"crossplane-lambda.io/resource":"x"}}"#,
        ] {
            let e = TagPolicy::parse(policy, "/p").unwrap_err();
            assert!(
                matches!(&e, HandlerError::Permanent(m) if m.contains("reserved")),
                "{policy}: {e:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reloads_after_the_ttl() {
        let fixed = TagPolicy {
            label_prefix: Some("a/".into()),
            ..Default::default()
        };
        let cache = CachedPolicy::new(PolicySource::Fixed(fixed), Duration::from_secs(60));
        let first = cache.get().await.unwrap();
        let again = cache.get().await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from the cache within the TTL");
        tokio::time::advance(Duration::from_secs(61)).await;
        let later = cache.get().await.unwrap();
        assert!(!Arc::ptr_eq(&first, &later), "reloaded after the TTL");
    }
}
