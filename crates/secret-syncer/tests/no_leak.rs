//! A secret value never appears in a log line (at any level, the SDK's own trace output
//! included), an error, an outcome or a panic message. Its own test binary: it installs the
//! process-wide log subscriber at TRACE.

use common::runtime::dispatch;
use common::testing::DeclaredCounter;
use common::testing::{Managed, create_instance, invocation, moto_config, ready_event};
use secret_syncer::{SecretSyncer, Settings};
use tracing::level_filters::LevelFilter;

/// moto's fixed password for RDS-managed master user secrets: a known value to look for.
const PASSWORD: &str = "P@55w0rd!";

#[tokio::test]
async fn the_password_reaches_no_log_line_error_or_outcome() {
    let captured = common::logging::Captured::default();
    let writer = captured.clone();
    common::logging::init_with_level(writer, LevelFilter::TRACE);

    let sdk = moto_config().await;
    let id = "ss-no-leak";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let settings = Settings {
        include_password: true,
        parameter_path_template: Some("/crossplane/{namespace}/{name}".into()),
        ..Settings::default()
    };
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let syncer = SecretSyncer::from_sdk_config(&sdk, settings, Some(&counter));
    let mut outputs = Vec::new();
    // First sync, replay, and a change: every code path that reads or writes the password.
    for event in [ready_event(id), ready_event(id)] {
        let response = dispatch(&syncer, event.to_string().as_bytes(), &invocation(), 4).await;
        outputs.push(format!("{response:?}"));
    }
    // An error path: the target secret name is invalid, so the write fails after the read.
    let broken = SecretSyncer::from_sdk_config(
        &sdk,
        Settings {
            include_password: true,
            secret_name_template: Some("bad name {name}".into()),
            ..Settings::default()
        },
        None,
    );
    let failed = dispatch(&broken, ready_event(id).to_string().as_bytes(), &invocation(), 4).await;
    assert!(failed.is_err(), "{failed:?}");
    outputs.push(format!("{failed:?}"));

    // The password really was handled: it is in the secret that was written.
    let written = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(format!("crossplane/team-a/{id}/connection"))
        .send()
        .await
        .unwrap();
    assert!(written.secret_string().unwrap().contains(PASSWORD));

    let logs = captured.text();
    assert!(
        logs.lines().count() > 50,
        "trace logging was on: {} lines",
        logs.lines().count()
    );
    assert!(
        logs.contains("PutParameter") || logs.contains("put_parameter") || logs.contains("CreateSecret"),
        "the SDK's own trace output was captured"
    );
    for (what, text) in [("logs", &logs), ("outcomes and errors", &outputs.join("\n"))] {
        assert!(!text.contains(PASSWORD), "the password appeared in the {what}");
        assert!(
            !text.contains("P@55w0rd"),
            "part of the password appeared in the {what}"
        );
    }
    counter.assert_all_declared();
}
