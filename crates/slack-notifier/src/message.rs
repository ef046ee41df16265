//! The Slack message: Block Kit blocks with a plain-text fallback. Everything that comes from
//! the event is escaped (`&`, `<`, `>`), so no object name, label or condition message can
//! ping a channel (`<!channel>`), forge a link or break the message.

use common::ResourceEvent;
use common::model::Lifecycle;
use common::resolve::Arn;
use serde_json::{Value, json};

/// Slack's three control characters, as HTML entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut (Slack rejects over-long fields).
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A link to the resource in the AWS console of its partition.
pub fn console_link(arn: &str) -> Option<String> {
    let parsed = Arn::parse(arn)?;
    let host = match parsed.partition {
        "aws-cn" => "console.amazonaws.cn",
        "aws-us-gov" => "console.amazonaws-us-gov.com",
        "aws" => "console.aws.amazon.com",
        _ => return None,
    };
    let region = parsed.region;
    if parsed.service == "rds" && !region.is_empty() {
        let (cluster, id) = match parsed.resource.split_once(':') {
            Some(("db", id)) => (false, id),
            Some(("cluster", id)) => (true, id),
            _ => return Some(format!("https://{host}/go/view?arn={}", percent_encode(arn))),
        };
        return Some(format!(
            "https://{region}.{host}/rds/home?region={region}#database:id={};is-cluster={cluster}",
            percent_encode(id)
        ));
    }
    Some(format!("https://{host}/go/view?arn={}", percent_encode(arn)))
}

/// Everything a message says, gathered from the event and its resolution.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub event: &'a ResourceEvent,
    pub arn: Option<&'a str>,
    pub account: Option<&'a str>,
}

fn headline(event: &ResourceEvent) -> (&'static str, &'static str) {
    match event.lifecycle {
        Lifecycle::Ready => (":white_check_mark:", "is ready"),
        Lifecycle::Deleted => (":wastebasket:", "was deleted"),
        Lifecycle::Failed => (":rotating_light:", "failed"),
        Lifecycle::Updated => (":arrows_counterclockwise:", "was updated"),
        Lifecycle::Observed => (":eyes:", "was observed"),
    }
}

/// The webhook payload: `text` (notifications, and clients without blocks) and `blocks`.
pub fn build(facts: &Facts<'_>) -> Value {
    let event = facts.event;
    let resource = &event.resource;
    let (emoji, verb) = headline(event);
    let who = match &resource.namespace {
        Some(ns) => format!("{} {ns}/{}", resource.kind, resource.name),
        None => format!("{} {}", resource.kind, resource.name),
    };
    let region = facts
        .arn
        .and_then(Arn::parse)
        .map(|a| a.region.to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| resource.region.clone());
    let claim = match (
        resource.labels.get("crossplane.io/claim-namespace"),
        resource.labels.get("crossplane.io/claim-name"),
    ) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name.clone()),
        _ => None,
    };

    let mut text = format!("{emoji} {} {verb}", escape(&who));
    if let Some(arn) = facts.arn {
        text.push_str(&format!(" ({})", escape(arn)));
    }
    if event.lifecycle == Lifecycle::Failed
        && let Some(reason) = &event.reason
    {
        text.push_str(&format!(": {}", escape(&clip(reason, 200))));
    }

    let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escape(&clip(value, 1900)))});
    let mut fields = vec![
        field("Kind", &format!("{}.{}", resource.kind, resource.group)),
        field("Name", &resource.name),
    ];
    if let Some(ns) = &resource.namespace {
        fields.push(field("Namespace", ns));
    }
    if let Some(claim) = &claim {
        fields.push(field("Claim", claim));
    }
    if let Some(region) = &region {
        fields.push(field("Region", region));
    }
    if let Some(account) = facts.account.filter(|a| !a.is_empty()) {
        fields.push(field("Account", account));
    }

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
               "text": clip(&format!("{} {verb}", escape(&who)), 150)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(arn) = facts.arn {
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*ARN*\n`{}`", escape(arn))}}));
    }
    if event.lifecycle == Lifecycle::Failed || event.message.is_some() {
        let reason = event.reason.as_deref().unwrap_or("unknown");
        let mut detail = format!("*Reason*\n{}", escape(&clip(reason, 200)));
        if let Some(message) = &event.message {
            detail.push_str(&format!("\n```{}```", escape(&clip(message, 2500))));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": detail}}));
    }
    let mut context = vec![json!({"type": "mrkdwn", "text": escape(&format!(
        "{} · {} · event {}",
        event.transition_time.as_deref().unwrap_or("time unknown"),
        event.source,
        clip(&event.id, 100)
    ))})];
    if let Some(link) = facts.arn.and_then(console_link) {
        context.push(json!({"type": "mrkdwn", "text": format!("<{link}|Open in the AWS console>")}));
    }
    blocks.push(json!({"type": "context", "elements": context}));
    json!({"text": text, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::model::{ProfileEvent, Signal};

    fn event(signal: Signal, conditions: Value, labels: Value) -> ResourceEvent {
        ResourceEvent::from_profile(ProfileEvent {
            id: "uid:3:ready".into(),
            source: "crossplane://prod-eu-1".into(),
            subject: None,
            time: Some("2026-11-20T09:14:09Z".into()),
            signal,
            data: json!({"apiVersion": "rds.aws.m.upbound.io/v1beta1", "kind": "Instance",
                "metadata": {"name": "orders-db", "namespace": "team-a", "labels": labels},
                "spec": {"forProvider": {"region": "eu-west-1"}},
                "status": {"conditions": conditions}}),
        })
        .unwrap()
    }

    const ARN: &str = "arn:aws:rds:eu-west-1:111122223333:db:orders-db";

    #[test]
    fn escapes_the_three_characters() {
        assert_eq!(
            escape("<!channel> & <@U123|x>"),
            "&lt;!channel&gt; &amp; &lt;@U123|x&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn a_ready_message_carries_the_facts() {
        let e = event(
            Signal::Upsert,
            json!([{"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-11-20T09:14:07Z"}]),
            json!({"crossplane.io/claim-name": "orders", "crossplane.io/claim-namespace": "team-a"}),
        );
        let message = build(&Facts {
            event: &e,
            arn: Some(ARN),
            account: Some("111122223333"),
        });
        let text = message["text"].as_str().unwrap();
        assert_eq!(
            text,
            format!(":white_check_mark: Instance team-a/orders-db is ready ({ARN})")
        );
        let all = message.to_string();
        for expected in [
            "*Kind*\\nInstance.rds.aws.m.upbound.io",
            "*Claim*\\nteam-a/orders",
            "*Region*\\neu-west-1",
            "*Account*\\n111122223333",
            "2026-11-20T09:14:07Z",
        ] {
            assert!(all.contains(expected), "{expected} in {all}");
        }
        assert!(all.contains("https://eu-west-1.console.aws.amazon.com/rds/home?region=eu-west-1#database:id=orders-db;is-cluster=false"), "{all}");
        assert_eq!(message["blocks"][0]["type"], "header");
    }

    #[test]
    fn nothing_from_the_event_can_ping_or_break_the_message() {
        let e = event(
            Signal::Upsert,
            json!([{"type": "Ready", "status": "True"},
                   {"type": "Synced", "status": "False", "reason": "ReconcileError",
                    "message": "cannot update: <!channel> & <https://evil.example|click here>"}]),
            json!({"crossplane.io/claim-name": "<!here>"}),
        );
        assert_eq!(e.lifecycle, Lifecycle::Failed);
        let message = build(&Facts {
            event: &e,
            arn: Some(ARN),
            account: None,
        });
        let all = message.to_string();
        assert!(
            !all.contains("<!channel>") && !all.contains("<!here>") && !all.contains("<https://evil"),
            "{all}"
        );
        assert!(
            all.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;"),
            "{all}"
        );
        assert!(all.contains("&lt;!here&gt;"));
        // The only link is ours.
        assert_eq!(all.matches('<').count(), 1, "{all}");
    }

    #[test]
    fn console_links_by_partition_and_service() {
        assert_eq!(
            console_link("arn:aws-cn:rds:cn-north-1:1:cluster:c1").unwrap(),
            "https://cn-north-1.console.amazonaws.cn/rds/home?region=cn-north-1#database:id=c1;is-cluster=true"
        );
        assert_eq!(
            console_link("arn:aws:s3:::my-bucket").unwrap(),
            "https://console.aws.amazon.com/go/view?arn=arn%3Aaws%3As3%3A%3A%3Amy-bucket"
        );
        assert_eq!(console_link("not an arn"), None);
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(10_000);
        let e = event(
            Signal::Upsert,
            json!([{"type": "Synced", "status": "False", "reason": "ReconcileError", "message": long}]),
            json!({}),
        );
        let message = build(&Facts {
            event: &e,
            arn: None,
            account: None,
        });
        let section = message["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b.to_string().contains("*Reason*"))
            .unwrap();
        assert!(section["text"]["text"].as_str().unwrap().chars().count() < 3000);
    }
}
