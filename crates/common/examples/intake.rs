//! What the intake makes of a payload: `cargo run -p common --example intake -- FILE`.
//! Prints one JSON object: the transport and, per event, its id, lifecycle, transition time,
//! subject and ARN; or the error that names what is wrong (exit status 1).

use common::intake::{Intake, read_payload};
use common::{IntakeError, ResourceEvent};
use serde_json::{Value, json};

fn summary(event: &ResourceEvent) -> Value {
    json!({
        "id": event.id,
        "lifecycle": event.lifecycle,
        "transition_time": event.transition_time,
        "subject": event.resource.subject(),
        "arn": event.resource.arn,
        "reason": event.reason,
    })
}

fn events(result: &Result<Vec<ResourceEvent>, IntakeError>) -> Value {
    match result {
        Ok(events) => Value::Array(events.iter().map(summary).collect()),
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: intake FILE");
        std::process::exit(2);
    };
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let (output, ok) = match read_payload(&raw) {
        Ok(Intake::Direct(list)) => (json!({"transport": "direct", "events": events(&Ok(list))}), true),
        Ok(Intake::Http(result)) => (json!({"transport": "http", "events": events(&result)}), result.is_ok()),
        Ok(Intake::Sqs(records)) => {
            let records: Vec<Value> = records
                .iter()
                .map(|r| json!({"messageId": r.message_id, "events": events(&r.events)}))
                .collect();
            (json!({"transport": "sqs", "records": records}), true)
        }
        Ok(Intake::Sweep(request)) => (
            json!({"transport": "direct", "sweep": {"continues": request.continuation.is_some()}}),
            true,
        ),
        Err(e) => (json!({"error": e.to_string()}), false),
    };
    println!("{output}");
    if !ok {
        std::process::exit(1);
    }
}
