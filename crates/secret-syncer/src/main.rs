//! The `secret-syncer` Lambda function: its configuration is read and checked at start; its SDK
//! clients are built once, on the first invocation (common::runtime::run).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = secret_syncer::Settings::from_env()?;
    common::runtime::run(move || {
        let settings = settings.clone();
        async move {
            let sdk = common::aws::load_config().await;
            Ok(secret_syncer::SecretSyncer::from_sdk_config(&sdk, settings, None))
        }
    })
    .await
}
