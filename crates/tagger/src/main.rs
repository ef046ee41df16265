//! The `tagger` Lambda function: configuration and SDK clients are built once, at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::logging::init();
    let sdk = common::aws::load_config().await;
    let tagger = tagger::Tagger::from_sdk_config(&sdk, tagger::Settings::from_env(), None);
    common::runtime::run(tagger).await
}
