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
use crate::resolve::{Arn, Guard, Scope, arn_of, is_region};
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
        if target.account == home.account && self.may_act_at_home(home) {
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

    /// The function's own account is where it acts unless `ALLOWED_ACCOUNTS` lists others only.
    fn may_act_at_home(&self, home: &Scope) -> bool {
        let allowed = &self.settings.guard.allowed_accounts;
        allowed.is_empty() || allowed.contains(&home.account)
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
        if let Some(region) = event.resource.region.as_deref().filter(|r| !is_region(r)) {
            let why = format!("{region:?} is not an AWS region");
            return Ok(Outcome::new(OutcomeKind::Refused, None, why));
        }
        let target = Self::target_of(event, &invocation.scope);
        if target.account == invocation.scope.account && !self.may_act_at_home(&invocation.scope) {
            // An S3 bucket's ARN names no account: it is looked for in the function's own.
            let why = format!("account {} is not one this function may act on", target.account);
            return Ok(Outcome::new(OutcomeKind::Refused, None, why));
        }
        // The session name tells CloudTrail which function and invocation assumed the role.
        let handler = self
            .handler_at(&target, &invocation.scope, &invocation.request_id)
            .await?;
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

    /// Never built: every event here is refused before a handler is needed.
    struct Unreachable;

    impl Handler for Unreachable {
        fn name(&self) -> &'static str {
            "unreachable"
        }
        async fn handle(&self, _: &ResourceEvent, _: &Invocation) -> Result<Outcome, HandlerError> {
            Err(HandlerError::Permanent(
                "a refused event reached a handler".to_string().into(),
            ))
        }
    }

    fn event(arn: Option<&str>, region: Option<&str>) -> ResourceEvent {
        let listed = crate::sweep::Listed {
            arn: arn
                .unwrap_or("arn:aws:dynamodb:us-east-1:111111111111:table/orders")
                .into(),
            kind: "table.dynamodb.aws.upbound.io".into(),
            tags: None,
        };
        let mut event = crate::sweep::update_of(&listed, "e1".into(), "test");
        if arn.is_none() {
            event.resource.arn = None;
        }
        event.resource.region = region.map(str::to_string);
        event
    }

    /// A secret known by name only: no ARN can be built for it, so its region says where it is.
    fn no_arn_in(region: &str) -> ResourceEvent {
        let mut secret = event(None, Some(region));
        secret.resource.group = "secretsmanager.aws.m.upbound.io".into();
        secret.resource.kind = "Secret".into();
        secret
    }

    #[tokio::test]
    async fn refused_before_any_role_is_assumed_or_handler_built() {
        let settings = FleetSettings {
            guard: Guard {
                allowed_accounts: vec!["222222222222".into()],
                allowed_regions: vec![],
            },
            ..FleetSettings::default()
        };
        let home = SdkConfig::builder().region(Region::new("us-east-1")).build();
        let fleet: Fleet<Unreachable> = Fleet::new("test", home, settings, (), |_| Unreachable);
        let invocation = Invocation {
            request_id: "r1".into(),
            function_arn: "arn:aws:lambda:us-east-1:111111111111:function:test".into(),
            scope: Scope {
                account: "111111111111".into(),
                region: "us-east-1".into(),
            },
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(30),
            metrics: crate::metrics::Metrics::new("test", "r1"),
        };
        let cases = [
            (
                event(Some("arn:aws:dynamodb:us-east-1:333333333333:table/x"), None),
                "account 333333333333 is not one",
            ),
            (no_arn_in("nowhere"), "\"nowhere\" is not an AWS region"),
            // A bucket's ARN names no account: it is the function's own, which is not listed.
            (
                event(Some("arn:aws:s3:::logs"), Some("us-east-1")),
                "account 111111111111 is not one",
            ),
        ];
        for (event, why) in cases {
            let outcome = fleet.handle(&event, &invocation).await.unwrap();
            assert_eq!(outcome.kind, OutcomeKind::Refused, "{why}");
            assert!(outcome.detail.contains(why), "{why}: {}", outcome.detail);
        }
        assert!(fleet.handlers.lock().await.is_empty(), "no clients built");
        let error = fleet.sweep(SweepRequest::default(), &invocation).await.unwrap_err();
        assert!(error.message().contains("test does not sweep"), "{error}");
    }
}
