//! AWS SDK glue: the configuration built once per execution environment, error classification,
//! and a counter of the calls made (the "AWS calls per event" of ARCHITECTURE.md §10).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thiserror::Error;

use crate::error::HandlerError;

/// Loads the SDK configuration from the environment: region, credentials, and
/// `AWS_ENDPOINT_URL` (how the tests and the demo reach the local AWS emulator).
///
/// Its HTTPS client is shared by every SDK client built from it and sets up TLS (the CA roots,
/// the crypto provider) once, on the first request, instead of once more for each client built:
/// left to itself, the SDK gives each client its own HTTPS client (BENCHMARKS.md).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(ConnectOnFirstRequest(https_client()))
        .load()
        .await
}

/// The HTTPS client the SDK would make for each of its clients (aws-smithy-runtime's
/// `default_https_client`, which is not public): rustls on aws-lc-rs, the connector settings and
/// sleep of the client using it, and the proxy from the environment (`HTTPS_PROXY`, `NO_PROXY`).
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            aws_smithy_http_client::Connector::builder().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector
            .proxy_config(aws_smithy_http_client::proxy::ProxyConfig::from_env())
            .build()
    })
}

/// The SDK's HTTPS client, less its eager check: the SDK builds a throwaway connector, its TLS
/// configuration included, for each client made from the configuration ("so that native certs
/// load at client initialization"); the real connectors are built on the first request and
/// cached by the client, which every SDK client here shares. BENCHMARKS.md measures it.
#[derive(Debug)]
struct ConnectOnFirstRequest(SharedHttpClient);

impl HttpClient for ConnectOnFirstRequest {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Builds an SDK client from the shared configuration, with the call counter when one is given:
/// `sdk_client!(aws_sdk_ssm, &sdk_config, counter)`, where `counter: Option<&CallCounter>`.
/// (Each service's config builder is its own type, hence a macro.)
#[macro_export]
macro_rules! sdk_client {
    ($service:ident, $sdk:expr, $counter:expr) => {{
        let mut builder = $service::config::Builder::from($sdk).interceptor($crate::metrics::AwsCallMetrics);
        if let Some(counter) = $counter {
            let counter: &$crate::aws::CallCounter = counter;
            builder = builder.interceptor(counter.clone());
            for extra in counter.extra_interceptors() {
                builder.push_interceptor(extra);
            }
        }
        $service::Client::from_conf(builder.build())
    }};
}

/// A failed AWS call, classified once so every handler treats it alike.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{operation} failed: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub retryable: bool,
    pub code: Option<String>,
    pub message: String,
}

/// Error codes that mean "slow down and try again".
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
];

impl AwsError {
    /// Classifies an SDK error: transport failures, timeouts, throttling and 5xx are retryable;
    /// everything else (access denied, validation, not found) is permanent.
    pub fn from_sdk<E>(operation: &'static str, error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let code = err.code().map(str::to_string);
                let retryable = code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c))
                    || service.raw().status().is_server_error();
                let message = match (err.code(), err.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_string(),
                    _ => err.to_string(),
                };
                AwsError {
                    operation,
                    retryable,
                    code,
                    message,
                }
            }
            SdkError::TimeoutError(_) => AwsError::transport(operation, "timed out"),
            SdkError::DispatchFailure(e) => AwsError::transport(operation, &format!("could not send: {e:?}")),
            SdkError::ResponseError(_) => AwsError::transport(operation, "the response could not be read"),
            other => AwsError {
                operation,
                retryable: false,
                code: None,
                message: format!("the request could not be built: {other}"),
            },
        }
    }

    fn transport(operation: &'static str, what: &str) -> Self {
        AwsError {
            operation,
            retryable: true,
            code: None,
            message: what.to_string(),
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl From<AwsError> for HandlerError {
    fn from(e: AwsError) -> Self {
        if e.retryable {
            HandlerError::retryable(e.to_string(), e)
        } else {
            HandlerError::permanent(e.to_string(), e)
        }
    }
}

/// Counts the AWS operations a client makes, by `Service.Operation`, once per operation
/// (not per retry attempt). Register it on each client with `.interceptor(counter.clone())`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Every operation ever counted, kept across [`CallCounter::reset`].
    seen: Arc<Mutex<BTreeSet<String>>>,
    /// When set, an operation outside it is refused before it is sent (tests: every call a
    /// function makes must be declared, and so granted by its IAM policy).
    declared: Option<Arc<BTreeSet<String>>>,
    /// Interceptors registered with this counter on every client (tests: fault injection).
    extra: Vec<SharedInterceptor>,
}

impl CallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter that also fails any call to an operation not in `declared` (`Service.Operation`),
    /// so the call itself fails, and with it the test that makes it.
    pub fn declared_only<'a>(declared: impl IntoIterator<Item = &'a str>) -> Self {
        CallCounter {
            declared: Some(Arc::new(declared.into_iter().map(str::to_string).collect())),
            ..Self::default()
        }
    }

    /// The calls made so far, e.g. `{"Resource Groups Tagging API.GetResources": 1}`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// How many calls were made to operations whose name matches `filter`.
    pub fn count_where(&self, filter: impl Fn(&str) -> bool) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(name, _)| filter(name))
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls that change something: by AWS's naming, every operation that is not a read.
    pub fn writes(&self) -> u64 {
        self.count_where(|name| !is_read_operation(name))
    }

    /// Every operation counted since the counter was made, resets included.
    pub fn operations_seen(&self) -> BTreeSet<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Registers `interceptor` on every client this counter is registered on.
    pub fn with_interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.extra.push(SharedInterceptor::new(interceptor));
        self
    }

    pub fn extra_interceptors(&self) -> Vec<SharedInterceptor> {
        self.extra.clone()
    }

    pub fn reset(&self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.clear();
        }
    }
}

/// Reads by AWS's naming conventions: `Get*`, `Describe*`, `List*`, `BatchGet*`.
pub fn is_read_operation(qualified: &str) -> bool {
    let operation = qualified.rsplit('.').next().unwrap_or(qualified);
    ["Get", "Describe", "List", "BatchGet"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".to_string());
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(name.clone());
        }
        if let Some(declared) = &self.declared
            && !declared.contains(&name)
        {
            return Err(format!("{name} is not declared in AWS_OPERATIONS (and so not in the IAM policy)").into());
        }
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(name).or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP client that counts the eager connector builds the SDK asks of it.
    #[derive(Debug, Clone, Default)]
    struct CountsEagerBuilds(Arc<std::sync::atomic::AtomicUsize>);

    impl HttpClient for CountsEagerBuilds {
        fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
            unreachable!("no request is made")
        }
        fn validate_base_client_config(
            &self,
            _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    fn eager_builds(wrap: bool) -> usize {
        let https = CountsEagerBuilds::default();
        let builder = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"));
        let sdk = if wrap {
            builder.http_client(ConnectOnFirstRequest(SharedHttpClient::new(https.clone())))
        } else {
            builder.http_client(https.clone())
        }
        .build();
        let _rds = aws_sdk_rds::Client::new(&sdk);
        let _tagging = aws_sdk_resourcegroupstagging::Client::new(&sdk);
        https.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_loaded_configuration_carries_the_one_https_client() {
        // Left to itself, aws-config sets no HTTP client (each SDK client would make its own).
        let sdk = load_config().await;
        let https = sdk.http_client().map(|c| format!("{c:?}"));
        assert!(https.is_some_and(|c| c.contains("ConnectOnFirstRequest")));
    }

    #[test]
    fn building_sdk_clients_sets_up_no_connection() {
        // The SDK's own client builds a connector (TLS set-up included) per client made…
        assert_eq!(eager_builds(false), 2);
        // …ours waits for the first request.
        assert_eq!(eager_builds(true), 0);
    }

    #[test]
    fn reads_and_writes_by_name() {
        assert!(is_read_operation("Resource Groups Tagging API.GetResources"));
        assert!(is_read_operation("RDS.DescribeDBInstances"));
        assert!(!is_read_operation("Resource Groups Tagging API.TagResources"));
        assert!(!is_read_operation("SecretsManager.PutSecretValue"));
    }

    #[test]
    fn aws_errors_map_to_handler_errors() {
        let e = AwsError {
            operation: "TagResources",
            retryable: true,
            code: None,
            message: "timed out".into(),
        };
        assert!(matches!(HandlerError::from(e), HandlerError::Retryable(m) if m == "TagResources failed: timed out"));
        let e = AwsError {
            operation: "GetResources",
            retryable: false,
            code: Some("AccessDenied".into()),
            message: "AccessDenied: no".into(),
        };
        assert!(matches!(HandlerError::from(e), HandlerError::Permanent(_)));
    }
}
