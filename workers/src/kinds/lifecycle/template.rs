//! Templates in cascade steps: `{field}` in a string is the event's field (`{user_id}`),
//! percent-encoded in URLs; a name that is not an event field, or a field the event lacks,
//! leaves the braces as written (JSON bodies keep their own braces).

use longshore_jobs::lifecycle::LifecycleEvent;
use serde_json::Value;

/// `value` with every string rendered.
pub(super) fn render(value: &Value, event: &LifecycleEvent) -> Value {
    match value {
        Value::String(s) => Value::String(render_str(s, event, false)),
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, event)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, event)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A URL with each field percent-encoded.
pub(super) fn render_url(url: &str, event: &LifecycleEvent) -> String {
    render_str(url, event, true)
}

fn render_str(text: &str, event: &LifecycleEvent, encode: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after
            .find('}')
            .and_then(|close| event.field(&after[..close]).map(|v| (close, v)));
        match value {
            Some((close, value)) => {
                if encode {
                    out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
                } else {
                    out.push_str(&value);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fills_in_event_fields_and_leaves_other_braces() {
        let event = LifecycleEvent {
            event_type: "user.deleted".into(),
            user_id: "a b/c".into(),
            occurred_at_ms: 5,
            source: None,
            actor_type: None,
            actor_id: None,
            reason_code: Some("gdpr".into()),
            trace_id: None,
        };
        assert_eq!(
            render_url("http://svc/users/{user_id}/gone?why={reason_code}", &event),
            "http://svc/users/a+b%2Fc/gone?why=gdpr"
        );
        let body =
            json!({ "user": "{user_id}", "at": ["{occurred_at_ms}"], "raw": "{x} {source} {" });
        assert_eq!(
            render(&body, &event),
            json!({ "user": "a b/c", "at": ["5"], "raw": "{x} {source} {" })
        );
    }
}
