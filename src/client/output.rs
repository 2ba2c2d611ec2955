//! What the client commands print: tables that fit the terminal for people, JSON or JSON
//! lines for scripts. Everything goes through [`line`], which ends the process quietly
//! when the reader has gone (`longshore jobs list | head`), where `println!` would panic.

use std::io::Write;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

use crate::cli::Output;

/// Prints one line on stdout; a closed pipe ends the process with 0 and no word.
pub fn line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::client::output::line(&format!($($arg)*))
    };
}
pub(crate) use outln;

static RELATIVE: OnceLock<bool> = OnceLock::new();

/// Shows times as "3m ago" rather than as dates, for this process.
pub fn relative_times(on: bool) {
    let _ = RELATIVE.set(on);
}

/// A cell: strings as they are, `null` as `-`, anything else as JSON.
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A time cell: `2026-12-01 22:37:24` (UTC), or `3m ago` with `--relative`.
pub fn when(v: &Value) -> String {
    let Some(at) = v
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return s(v);
    };
    let at = at.with_timezone(&Utc);
    if *RELATIVE.get().unwrap_or(&false) {
        return ago(at, Utc::now());
    }
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `at` relative to `now`: `12s ago`, `in 3h`.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let n = seconds.unsigned_abs();
    let span = match n {
        0..60 => format!("{n}s"),
        60..3600 => format!("{}m", n / 60),
        3600..86400 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86400),
    };
    if seconds >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// `text` cut to `max` characters, ending with `…` when cut; one line.
pub fn cut(text: &str, max: usize) -> String {
    let text = text.replace(['\n', '\r'], " ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Prints rows under upper-cased headers, in columns that fit the terminal (cells wrap
/// when it is narrow; a pipe gets whole lines).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    draw(headers, rows, true);
}

/// Like [`table`], with or without the header line (later pages of a stream).
pub fn draw(headers: &[&str], rows: Vec<Vec<String>>, header: bool) {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if header {
        table.set_header(headers.iter().map(|h| h.to_uppercase()));
    }
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for text in table.lines() {
        line(text.trim_end());
    }
}

/// Prints one value: pretty JSON, one JSON line, or as `draw` shows it.
pub fn one(output: Output, value: &Value, draw: impl FnOnce(&Value)) {
    match output {
        Output::Json => line(&serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Jsonl => line(&value.to_string()),
        Output::Table => draw(value),
    }
}

/// Prints a list: a JSON array, a JSON line per item, or as `draw` shows the items.
pub fn list(output: Output, items: &[Value], draw: impl FnOnce(&[Value])) {
    match output {
        Output::Json => line(&serde_json::to_string_pretty(items).unwrap_or_default()),
        Output::Jsonl => {
            for item in items {
                line(&item.to_string());
            }
        }
        Output::Table => draw(items),
    }
}

/// The items of a list answer: a bare array, or the `items` of a page.
pub fn items(value: &Value) -> &[Value] {
    value
        .as_array()
        .or_else(|| value["items"].as_array())
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis_and_short_text_is_not() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("exactly10!", 10), "exactly10!");
        assert_eq!(cut("a line\nthat goes on", 10), "a line th…");
        assert_eq!(cut("ééééééééééé", 5), "éééé…");
    }

    #[test]
    fn times_read_relative_to_now() {
        let now = Utc::now();
        assert_eq!(ago(now - chrono::Duration::seconds(12), now), "12s ago");
        assert_eq!(ago(now - chrono::Duration::minutes(90), now), "1h ago");
        assert_eq!(ago(now + chrono::Duration::hours(3), now), "in 3h");
        assert_eq!(ago(now - chrono::Duration::days(2), now), "2d ago");
    }
}
