//! The benchmark's floor: the Lambda runtime and nothing else (no SDK, no TLS, no logging),
//! with the same release profile as the functions. `make bench` reports the functions' init
//! and latencies as ratios of this one's.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
