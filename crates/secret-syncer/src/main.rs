//! The `secret-syncer` Lambda function: configuration and SDK clients are built once, at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = secret_syncer::Settings::from_env()?;
    let sdk = common::aws::load_config().await;
    let syncer = secret_syncer::SecretSyncer::from_sdk_config(&sdk, settings, None);
    common::runtime::run(syncer).await
}
