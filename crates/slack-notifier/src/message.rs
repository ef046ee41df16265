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

/// Slack's limits on what one message may hold (Block Kit reference): a longer one is refused
/// whole (`invalid_blocks`), so the change would never be announced.
pub mod limits {
    pub const SECTION_TEXT: usize = 3000;
    pub const FIELD_TEXT: usize = 2000;
    pub const FIELDS_PER_SECTION: usize = 10;
    pub const HEADER_TEXT: usize = 150;
    pub const CONTEXT_TEXT: usize = 2000;
    pub const BLOCKS: usize = 50;
    /// The fallback `text`: Slack truncates beyond 40,000 and advises at most 4,000.
    pub const FALLBACK_TEXT: usize = 4000;
}

/// `text` escaped, then cut to at most `max` characters (Slack counts characters) with an
/// ellipsis: cut on character boundaries and never inside an entity, so the result is never
/// longer than the limit and never holds half an `&amp;`.
pub fn escape_clipped(text: &str, max: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let piece = escape(c.encode_utf8(&mut [0; 4]));
        let len = piece.chars().count();
        if used + len > budget {
            break;
        }
        out.push_str(&piece);
        used += len;
    }
    out.push('…');
    out
}

/// `prefix` (ours, trusted) followed by `text` (the event's) escaped and clipped, the whole at
/// most `max` characters.
fn labelled(prefix: &str, text: &str, max: usize) -> String {
    let room = max.saturating_sub(prefix.chars().count());
    format!("{prefix}{}", escape_clipped(text, room))
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
    /// The managed resource, its identity verified (for an AWS event, taken from the live tags
    /// or the remembered lifetime rather than from the event).
    pub resource: &'a common::ManagedResource,
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
    let resource = facts.resource;
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
        text.push_str(&format!(": {}", escape_clipped(reason, 200)));
    }
    let text = clip_trusted(&text, limits::FALLBACK_TEXT);

    let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": labelled(&format!("*{label}*\n"), value, limits::FIELD_TEXT)});
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
    fields.truncate(limits::FIELDS_PER_SECTION);

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
               "text": labelled("", &format!("{} {verb}", who), limits::HEADER_TEXT)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(arn) = facts.arn {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*ARN*\n`{}`", escape_clipped(arn, limits::SECTION_TEXT - 10))}}));
    }
    if event.lifecycle == Lifecycle::Failed || event.message.is_some() {
        let reason = event.reason.as_deref().unwrap_or("unknown");
        let mut detail = labelled("*Reason*\n", reason, 200 + 9);
        if let Some(message) = &event.message {
            let room = limits::SECTION_TEXT - detail.chars().count() - "\n``````".len();
            detail.push_str(&format!("\n```{}```", escape_clipped(message, room)));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": detail}}));
    }
    let when = event.transition_time.as_deref().unwrap_or("time unknown");
    let mut context = vec![json!({"type": "mrkdwn", "text": escape_clipped(
        &format!("{} · {} · event {}", clip_trusted(when, 64), clip_trusted(&event.source, 200), clip_trusted(&event.id, 100)),
        limits::CONTEXT_TEXT,
    )})];
    let link = facts
        .arn
        .and_then(console_link)
        .map(|link| format!("<{link}|Open in the AWS console>"))
        // An ARN this long is no real resource's: leave the link out rather than break the message.
        .filter(|text| text.chars().count() <= limits::CONTEXT_TEXT);
    if let Some(link) = link {
        context.push(json!({"type": "mrkdwn", "text": link}));
    }
    blocks.push(json!({"type": "context", "elements": context}));
    blocks.truncate(limits::BLOCKS);
    json!({"text": text, "blocks": blocks})
}

/// At most `max` characters of text that is already safe (escaped, or ours), with an ellipsis.
fn clip_trusted(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    // Never end inside an entity the cut would break.
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
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

    fn ready() -> ResourceEvent {
        event(
            Signal::Upsert,
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T09:14:07Z"}]),
            json!({}),
        )
    }

    fn message_of(e: &ResourceEvent, arn: Option<&str>) -> Value {
        build(&Facts {
            event: e,
            resource: &e.resource,
            arn,
            account: None,
        })
    }

    /// The texts of the section blocks that have one.
    fn sections(message: &Value) -> Vec<String> {
        message["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "section")
            .filter_map(|b| b["text"]["text"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn console_links_follow_the_partition_and_only_a_regional_database_gets_the_rds_page() {
        assert_eq!(
            console_link("arn:aws-us-gov:rds:us-gov-west-1:111122223333:db:x").as_deref(),
            Some(
                "https://us-gov-west-1.console.amazonaws-us-gov.com/rds/home?region=us-gov-west-1#database:id=x;is-cluster=false"
            )
        );
        assert_eq!(
            console_link("arn:aws-cn:rds:cn-north-1:111122223333:cluster:c").as_deref(),
            Some("https://cn-north-1.console.amazonaws.cn/rds/home?region=cn-north-1#database:id=c;is-cluster=true")
        );
        assert_eq!(
            console_link("arn:aws:rds:::db:x").as_deref(),
            Some("https://console.aws.amazon.com/go/view?arn=arn%3Aaws%3Ards%3A%3A%3Adb%3Ax"),
            "no region: the generic page"
        );
        assert_eq!(console_link("arn:aws-iso:rds:us-iso-east-1:111122223333:db:x"), None);
    }

    #[test]
    fn the_region_is_the_arns_or_else_the_resources() {
        let e = ready();
        let fields = |message: &Value| message["blocks"].to_string();
        assert!(
            fields(&message_of(&e, Some("arn:aws:rds:us-east-2:111122223333:db:orders-db")))
                .contains("*Region*\\nus-east-2")
        );
        assert!(
            fields(&message_of(&e, Some("arn:aws:s3:::logs"))).contains("*Region*\\neu-west-1"),
            "an S3 ARN names none"
        );
    }

    #[test]
    fn a_reason_section_for_a_failure_or_a_message_only() {
        let ready = ready();
        assert!(
            !sections(&message_of(&ready, None))
                .iter()
                .any(|t| t.starts_with("*Reason*"))
        );
        let mut failed = ready.clone();
        failed.lifecycle = Lifecycle::Failed;
        assert!(sections(&message_of(&failed, None)).contains(&"*Reason*\nunknown".to_string()));
        let mut told = ready.clone();
        told.message = Some("resized".into());
        assert!(
            sections(&message_of(&told, None))
                .iter()
                .any(|t| t.starts_with("*Reason*"))
        );
    }

    #[test]
    fn a_reason_and_a_message_fill_their_section_and_no_more() {
        let mut failed = ready();
        failed.lifecycle = Lifecycle::Failed;
        failed.reason = Some("r".repeat(500));
        let reason_only = sections(&message_of(&failed, None))
            .into_iter()
            .find(|t| t.starts_with("*Reason*"))
            .unwrap();
        assert_eq!(
            reason_only.chars().count(),
            200 + 9,
            "a reason of at most 200 characters after its label"
        );
        failed.message = Some("m".repeat(10_000));
        let with_message = sections(&message_of(&failed, None))
            .into_iter()
            .find(|t| t.starts_with("*Reason*"))
            .unwrap();
        let length = with_message.chars().count();
        assert!(
            (limits::SECTION_TEXT - 10..=limits::SECTION_TEXT).contains(&length),
            "the message takes the room left: {length}"
        );
    }

    #[test]
    fn a_clip_never_ends_inside_an_entity_but_keeps_a_whole_one() {
        assert_eq!(clip_trusted("a&amp;b&amp;c", 9), "a&amp;b…");
        assert_eq!(clip_trusted("ab&amp;cdef", 8), "ab&amp;…");
        assert_eq!(clip_trusted("short", 9), "short");
    }

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
            resource: &e.resource,
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
            resource: &e.resource,
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

    /// Issue 9: 10,000 characters of Slack's control characters in every field the event
    /// controls: every block stays within Slack's limits, no entity is cut in half, and the
    /// only link is ours.
    #[test]
    fn hostile_lengths_stay_within_every_slack_limit() {
        let hostile = "<&>".repeat(3334);
        let mut e = event(
            Signal::Upsert,
            json!([{"type": "Synced", "status": "False", "reason": "ReconcileError", "message": hostile,
                    "lastTransitionTime": hostile}]),
            json!({"crossplane.io/claim-name": hostile, "crossplane.io/claim-namespace": hostile}),
        );
        e.resource.name = hostile.clone();
        e.resource.namespace = Some(hostile.clone());
        e.resource.kind = hostile.clone();
        e.resource.group = hostile.clone();
        e.resource.region = Some(hostile.clone());
        e.reason = Some(hostile.clone());
        e.source = hostile.clone();
        e.id = hostile.clone();
        let arn = format!("arn:aws:rds:eu-west-1:111122223333:db:{hostile}");
        let message = build(&Facts {
            event: &e,
            resource: &e.resource,
            arn: Some(&arn),
            account: Some(&hostile),
        });
        let count = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(count(&message["text"]) <= limits::FALLBACK_TEXT);
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= limits::BLOCKS);
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => assert!(count(&block["text"]["text"]) <= limits::HEADER_TEXT),
                "section" => {
                    if let Some(text) = block.get("text") {
                        assert!(count(&text["text"]) <= limits::SECTION_TEXT, "{}", count(&text["text"]));
                    }
                    if let Some(fields) = block.get("fields").and_then(Value::as_array) {
                        assert!(fields.len() <= limits::FIELDS_PER_SECTION);
                        for field in fields {
                            assert!(count(&field["text"]) <= limits::FIELD_TEXT);
                        }
                    }
                }
                "context" => {
                    for element in block["elements"].as_array().unwrap() {
                        assert!(count(&element["text"]) <= limits::CONTEXT_TEXT);
                    }
                }
                other => panic!("unexpected block {other}"),
            }
        }
        let all = message.to_string();
        assert!(
            !all.contains('<'),
            "no link but ours, and ours is left out for an ARN this long"
        );
        // Every `&` starts a whole entity.
        for (i, _) in all.match_indices('&') {
            let rest = &all[i..];
            assert!(
                rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
                "{}",
                &rest[..rest.len().min(8)]
            );
        }
    }

    #[test]
    fn clipping_never_splits_an_entity() {
        assert_eq!(escape_clipped("&&&", 6), "&amp;…");
        assert_eq!(escape_clipped("a<b", 3), "a…");
        assert_eq!(escape_clipped("short", 10), "short");
        assert_eq!(escape_clipped("éééé", 3), "éé…");
    }
}
