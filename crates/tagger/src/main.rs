//! The `tagger` Lambda function: its configuration is read at start; its SDK clients are built
//! once, on the first invocation (common::runtime::run), and once per other account and region
//! it acts in (common::fleet).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let settings = tagger::Settings::from_env();
    let fleet = common::fleet::FleetSettings::from_env()?;
    common::runtime::run(move || {
        let (settings, fleet) = (settings.clone(), fleet.clone());
        async move {
            let sdk = common::aws::load_config().await;
            // A sweep's continuation: the function invokes itself, from its own account.
            let requeue = common::sweep::LambdaRequeue(common::sdk_client!(aws_sdk_lambda, &sdk, None));
            Ok(tagger::fleet(sdk, settings, fleet, requeue, None))
        }
    })
    .await
}
