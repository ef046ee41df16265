//! End to end: the real binaries under `cargo lambda watch` (the Lambda Runtime API
//! emulator), invoked with `cargo lambda invoke --data-file events/…`, against moto.
//! Run inside the test bed (`make test`).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Stops `cargo lambda watch` (and the function it runs) however the test ends.
struct Watch {
    pid: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.pid)).status();
    }
}

fn invoke(port: &str, file: &str) -> Output {
    invoke_function("tagger", port, file)
}

fn invoke_function(function: &str, port: &str, file: &str) -> Output {
    let cargo_lambda = root().join(".venv/bin/cargo-lambda");
    let cargo_lambda = cargo_lambda.to_str().unwrap();
    run(
        "timeout",
        &[
            "300",
            cargo_lambda,
            "lambda",
            "invoke",
            function,
            "-A",
            "127.0.0.1",
            "-P",
            port,
            "--data-file",
            file,
        ],
        &[],
    )
}

fn result(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "invoke failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn the_functions_through_cargo_lambda_watch_and_invoke() {
    let testbed = std::env::var("TESTBED_DIR").expect("run inside the test bed: `make test`");
    let arn = "arn:aws:rds:us-east-1:123456789012:db:orders-db";
    let created = run(
        "tests/testbed/aws.py",
        &["create-instance", "orders-db", "--tag", "cost-center=legacy"],
        &[],
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let policy = r#"{"tags":{"cost-center":"platform"},"defaults":{"owner":"platform-team"}}"#;
    let put = run("tests/testbed/aws.py", &["put-policy", "/e2e/tag-policy", policy], &[]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));

    let sink = std::env::var("SLACK_SINK_URL").expect("the Slack sink of the test bed");
    let webhook = format!(r#"{{"url": "{sink}/services/T0E2E/B0E2E/e2e"}}"#);
    for args in [
        &["create-table", "e2e-idempotency"][..],
        &["put-secret", "e2e/slack-webhook", &webhook][..],
    ] {
        let done = run("tests/testbed/aws.py", args, &[]);
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    }
    let watch = run(
        "tests/testbed/watch.sh",
        &[],
        &[
            ("TAG_POLICY_PARAMETER", "/e2e/tag-policy"),
            ("SSM_PATH_TEMPLATE", "/e2e/{namespace}/{name}"),
            ("SLACK_WEBHOOK_SECRET", "e2e/slack-webhook"),
            ("SLACK_ALLOW_LOOPBACK_HTTP", "true"),
            ("IDEMPOTENCY_TABLE", "e2e-idempotency"),
        ],
    );
    assert!(
        watch.status.success(),
        "watch: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    let port = String::from_utf8_lossy(&watch.stdout).trim().to_string();
    let pid = std::fs::read_to_string(format!("{testbed}/watch.pid"))
        .unwrap()
        .trim()
        .to_string();
    let _watch = Watch { pid };

    let first = result(&invoke(&port, "events/ready.namespaced.json"));
    assert_eq!(first["handler"], "tagger");
    assert_eq!(first["results"][0]["outcome"], "applied", "{first}");
    assert_eq!(first["results"][0]["resource"], arn);
    let tags = run("tests/testbed/aws.py", &["tags", arn, "--json"], &[]);
    let tags: Value = serde_json::from_slice(&tags.stdout).unwrap();
    assert_eq!(tags["cost-center"], "platform", "{tags}");
    assert_eq!(tags["owner"], "platform-team", "{tags}");
    assert_eq!(tags["crossplane.io/claim-name"], "orders", "{tags}");

    let replay = result(&invoke(&port, "events/ready.namespaced.json"));
    assert_eq!(replay["results"][0]["outcome"], "unchanged", "{replay}");

    // Not JSON at all: the function's own InvalidEvent, and the process stays up.
    let invalid = invoke(&port, "events/invalid/not-json.txt");
    assert!(!invalid.status.success());
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains("InvalidEvent") && stderr.contains("not valid JSON"),
        "{stderr}"
    );

    let batch = result(&invoke(&port, "events/sqs.batch-with-invalid-record.json"));
    assert_eq!(batch["batchItemFailures"].as_array().map(Vec::len), Some(1), "{batch}");
    assert_eq!(
        batch["batchItemFailures"][0]["itemIdentifier"],
        "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e05"
    );

    // The other two functions, served by the same `cargo lambda watch`.
    let synced = result(&invoke_function("secret-syncer", &port, "events/ready.namespaced.json"));
    assert_eq!(synced["results"][0]["outcome"], "applied", "{synced}");
    let again = result(&invoke_function("secret-syncer", &port, "events/ready.namespaced.json"));
    assert_eq!(again["results"][0]["outcome"], "unchanged", "{again}");
    let told = result(&invoke_function(
        "slack-notifier",
        &port,
        "events/ready.namespaced.json",
    ));
    assert_eq!(told["results"][0]["outcome"], "applied", "{told}");
    let same_change = result(&invoke_function(
        "slack-notifier",
        &port,
        "events/knative.resource-update.json",
    ));
    assert_eq!(same_change["results"][0]["outcome"], "duplicate", "{same_change}");
    let url = format!("{sink}/_sink/messages?path=/services/T0E2E/B0E2E/e2e");
    let python = root().join(".venv/bin/python");
    let fetch = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())";
    let received = run(python.to_str().unwrap(), &["-c", fetch, &url], &[]);
    let received: Value = serde_json::from_slice(&received.stdout).unwrap();
    assert_eq!(received.as_array().map(Vec::len), Some(1), "{received}");

    // One JSON log line per decision, with the event id and the resource.
    let log = std::fs::read_to_string(format!("{testbed}/watch.log")).unwrap();
    let decisions: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "decision")
        .collect();
    assert!(decisions.len() >= 4, "{log}");
    assert!(
        decisions.iter().all(|d| d["event"].is_string() && d["resource"] == arn),
        "{decisions:?}"
    );
}
