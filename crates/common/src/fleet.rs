//! Many accounts and regions (ARCHITECTURE.md §12): one handler per account and region, built on
//! first use and kept for the life of the execution environment. In the function's own account
//! its clients use the function's credentials; in another, those of a role assumed there
//! (`ASSUME_ROLE_ARN_TEMPLATE`, `ASSUME_ROLE_EXTERNAL_ID`), refreshed before they expire by the
//! SDK's identity cache. `ALLOWED_ACCOUNTS` / `ALLOWED_REGIONS` decide where it may act, before any
//! role is assumed.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde_json::Value;

use crate::error::HandlerError;
use crate::model::ResourceEvent;
use crate::resolve::{Arn, Guard, Scope, arn_of};
use crate::runtime::{Handler, Invocation, Outcome, OutcomeKind};
use crate::sweep::{self, Requeue, SweepRequest, SweepSettings, Sweepable, Target};

/// The role a function assumes in another account: `ASSUME_ROLE_ARN_TEMPLATE`, with `{account}`
/// and `{function}` replaced, and the external id the role's trust policy requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub template: String,
    pub external_id: Option<String>,
}

impl AssumeRole {
    /// `None` when `ASSUME_ROLE_ARN_TEMPLATE` is unset: the function acts in its own account only.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(template) = var("ASSUME_ROLE_ARN_TEMPLATE").filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        let example = template
            .replace("{account}", "123456789012")
            .replace("{function}", "tagger");
        let parsed = Arn::parse(&example).filter(|arn| arn.service == "iam" && arn.resource.starts_with("role/"));
        if !template.contains("{account}") || parsed.is_none() {
            return Err(format!(
                "ASSUME_ROLE_ARN_TEMPLATE={template:?}: expected an IAM role ARN naming {{account}}, \
                 e.g. arn:aws:iam::{{account}}:role/crossplane-lambda-{{function}}"
            ));
        }
        Ok(Some(AssumeRole {
            template,
            external_id: var("ASSUME_ROLE_EXTERNAL_ID").filter(|id| !id.is_empty()),
        }))
    }

    pub fn role_arn(&self, account: &str, function: &str) -> String {
        self.template
            .replace("{account}", account)
            .replace("{function}", function)
    }
}

/// A role session name that says which function and which event or sweep assumed the role (it is
/// what CloudTrail shows in the member account): IAM allows `[\w+=,.@-]`, at most 64 characters.
pub fn session_name(function: &str, why: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let name: String = format!("{function}@{why}")
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(64)
        .collect();
    name
}

/// Where a fleet may act and how it gets there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSettings {
    pub guard: Guard,
    pub assume: Option<AssumeRole>,
    pub sweep: SweepSettings,
}

impl FleetSettings {
    pub fn from_env() -> Result<Self, String> {
        Ok(FleetSettings {
            guard: Guard::from_env(),
            assume: AssumeRole::from_vars(|name| std::env::var(name).ok())?,
            sweep: SweepSettings::from_env()?,
        })
    }
}

type Build<H> = Box<dyn Fn(&SdkConfig) -> H + Send + Sync>;

/// A function's handler in every account and region it may act in.
pub struct Fleet<H, R = ()> {
    function: &'static str,
    home: SdkConfig,
    settings: FleetSettings,
    build: Build<H>,
    handlers: tokio::sync::Mutex<HashMap<Target, Arc<H>>>,
    requeue: R,
}

impl<H: Handler, R: Requeue> Fleet<H, R> {
    /// `build` makes the handler for one account and region from an SDK configuration for it;
    /// `home` is the function's own configuration (its credentials assume the member roles).
    pub fn new(
        function: &'static str,
        home: SdkConfig,
        settings: FleetSettings,
        requeue: R,
        build: impl Fn(&SdkConfig) -> H + Send + Sync + 'static,
    ) -> Self {
        Fleet {
            function,
            home,
            settings,
            build: Box::new(build),
            handlers: tokio::sync::Mutex::new(HashMap::new()),
            requeue,
        }
    }

    /// The SDK configuration for `target`: the function's own in its own account, with the
    /// region changed; in another account, with the credentials of the role assumed there.
    async fn config_for(&self, target: &Target, home: &Scope, why: &str) -> Result<SdkConfig, HandlerError> {
        let region = Region::new(target.region.clone());
        if target.account == home.account {
            return Ok(self.home.clone().into_builder().region(region).build());
        }
        let allowed = self.settings.guard.allowed_accounts.contains(&target.account);
        let (true, Some(assume)) = (allowed, &self.settings.assume) else {
            return Err(HandlerError::Permanent(
                format!(
                    "{} cannot act in account {}: {}",
                    self.function,
                    target.account,
                    if allowed {
                        "ASSUME_ROLE_ARN_TEMPLATE is not set"
                    } else {
                        "it is not in ALLOWED_ACCOUNTS"
                    }
                )
                .into(),
            ));
        };
        let mut role = AssumeRoleProvider::builder(assume.role_arn(&target.account, self.function))
            .session_name(session_name(self.function, why))
            .configure(&self.home);
        if let Some(id) = &assume.external_id {
            role = role.external_id(id.clone());
        }
        let credentials = SharedCredentialsProvider::new(role.build().await);
        Ok(self
            .home
            .clone()
            .into_builder()
            .region(region)
            .credentials_provider(credentials)
            .build())
    }

    /// The account and region an event's resource is in: its ARN's, else the function's own
    /// account and the resource's region (an S3 bucket's ARN names neither).
    fn target_of(event: &ResourceEvent, home: &Scope) -> Target {
        let arn = arn_of(&event.resource, home);
        let parsed = arn.as_deref().and_then(Arn::parse);
        let account = parsed
            .as_ref()
            .map(|arn| arn.account)
            .filter(|a| !a.is_empty())
            .unwrap_or(&home.account);
        let region = parsed
            .as_ref()
            .map(|arn| arn.region)
            .filter(|r| !r.is_empty())
            .or(event.resource.region.as_deref())
            .unwrap_or(&home.region);
        Target {
            account: account.to_string(),
            region: region.to_string(),
        }
    }
}

impl<H: Handler, R: Requeue> Sweepable for Fleet<H, R> {
    type Handler = H;

    async fn handler_at(&self, target: &Target, home: &Scope, why: &str) -> Result<Arc<H>, HandlerError> {
        // Held while building: building makes no network call (credentials are fetched on the
        // first request), and two events for a new account must not build it twice.
        let mut handlers = self.handlers.lock().await;
        if let Some(handler) = handlers.get(target) {
            return Ok(Arc::clone(handler));
        }
        let config = self.config_for(target, home, why).await?;
        let handler = Arc::new((self.build)(&config));
        handlers.insert(target.clone(), Arc::clone(&handler));
        tracing::info!(function = self.function, target = %target, assumed = target.account != home.account, "clients built for account and region");
        Ok(handler)
    }
}

impl<H: Handler, R: Requeue + 'static> Handler for Fleet<H, R> {
    fn name(&self) -> &'static str {
        self.function
    }

    async fn handle(&self, event: &ResourceEvent, invocation: &Invocation) -> Result<Outcome, HandlerError> {
        // The guard first: no role is assumed for an account the function may not act in.
        if let Some(arn) = arn_of(&event.resource, &invocation.scope)
            && let Err(why) = self
                .settings
                .guard
                .check(&arn, event.resource.region.as_deref(), &invocation.scope)
        {
            return Ok(Outcome::new(OutcomeKind::Refused, Some(&arn), why));
        }
        let target = Self::target_of(event, &invocation.scope);
        let handler = self.handler_at(&target, &invocation.scope, &event.id).await?;
        handler.handle(event, invocation).await
    }

    async fn sweep(&self, request: SweepRequest, invocation: &Invocation) -> Result<Value, HandlerError> {
        if !H::SWEEPS {
            return Err(crate::runtime::does_not_sweep(self.function));
        }
        let targets = sweep::targets(&self.settings.guard, &invocation.scope);
        // Boxed: the sweep's future nests every handler's, deeper than the compiler's default
        // layout limit allows inline.
        Box::pin(sweep::sweep(
            self,
            request,
            &targets,
            self.settings.sweep,
            &self.requeue,
            invocation,
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_role_template_names_the_account_and_function() {
        assert_eq!(AssumeRole::from_vars(vars(&[])).unwrap(), None);
        let role = AssumeRole::from_vars(vars(&[
            (
                "ASSUME_ROLE_ARN_TEMPLATE",
                "arn:aws:iam::{account}:role/crossplane-lambda-{function}",
            ),
            ("ASSUME_ROLE_EXTERNAL_ID", "x-123"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            role.role_arn("210987654321", "tagger"),
            "arn:aws:iam::210987654321:role/crossplane-lambda-tagger"
        );
        assert_eq!(role.external_id.as_deref(), Some("x-123"));
        for bad in [
            "arn:aws:iam::123456789012:role/fixed",
            "crossplane-lambda-{function}",
            "arn:aws:s3:::{account}",
        ] {
            let error = AssumeRole::from_vars(vars(&[("ASSUME_ROLE_ARN_TEMPLATE", bad)])).unwrap_err();
            assert!(error.contains("ASSUME_ROLE_ARN_TEMPLATE"), "{error}");
        }
    }

    #[test]
    fn session_names_are_what_iam_accepts() {
        assert_eq!(session_name("tagger", "sweep-abc"), "tagger@sweep-abc");
        let odd = session_name("secret-syncer", "arn:aws:rds:us-east-1:1:db:x/y z");
        assert!(
            odd.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{odd}"
        );
        assert!(odd.starts_with("secret-syncer@arn-aws-rds"), "{odd}");
        assert_eq!(session_name("tagger", &"e".repeat(100)).len(), 64);
    }
}
