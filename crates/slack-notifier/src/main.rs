//! The `slack-notifier` Lambda function: configuration, SDK and HTTP clients are built once,
//! at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = slack_notifier::Settings::from_env()?;
    let sdk = common::aws::load_config().await;
    let notifier = slack_notifier::SlackNotifier::from_sdk_config(&sdk, settings, None)?;
    common::runtime::run(notifier).await
}
