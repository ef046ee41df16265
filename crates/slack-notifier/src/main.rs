//! The `slack-notifier` Lambda function: its configuration is read and checked at start; its SDK
//! and HTTP clients are built once, on the first invocation (common::runtime::run).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = slack_notifier::Settings::from_env()?;
    settings.idempotency.check()?;
    common::runtime::run(move || {
        let settings = settings.clone();
        async move {
            let sdk = common::aws::load_config().await;
            slack_notifier::SlackNotifier::from_sdk_config(&sdk, settings, None)
        }
    })
    .await
}
