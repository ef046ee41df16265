//! The `slack-notifier` Lambda function: its configuration is read and checked at start; its SDK
//! and HTTP clients are built once, on the first invocation (common::runtime::run), and its
//! reads once per other account and region it acts in (common::fleet).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = slack_notifier::Settings::from_env()?;
    settings.idempotency.check()?;
    let fleet = common::fleet::FleetSettings::from_env()?;
    common::runtime::run(move || {
        let (settings, fleet) = (settings.clone(), fleet.clone());
        async move {
            let sdk = common::aws::load_config().await;
            slack_notifier::fleet(sdk, settings, fleet, None)
        }
    })
    .await
}
