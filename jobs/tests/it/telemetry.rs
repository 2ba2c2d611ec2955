//! The telemetry catalogue is used everywhere: no span or log line of the workspace spells a
//! catalogued field name out (`job.id = …`, `"job.id" = …`); each names the constant
//! (`{ JOB_ID } = …`), so a rename happens in one place and dashboards keep working.

use std::path::{Path, PathBuf};

use longshore_jobs::telemetry::NAMES;

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// `name = %…`, `name = ?…` or `name = value,` (a field, not an assignment), the name
/// bare or quoted.
fn spells_out(line: &str, name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    if let Some(at) = line.find(&quoted)
        && line[at + quoted.len()..].trim_start().starts_with("= ")
    {
        return true;
    }
    let mut rest = line;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].trim_start();
        let field_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        if field_start && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            if !value.starts_with('=')
                && (value.starts_with('%') || value.starts_with('?') || !line.ends_with(';'))
            {
                return true;
            }
        }
        rest = &rest[at + name.len()..];
    }
    false
}

#[test]
fn spans_and_logs_name_fields_through_the_catalogue() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["jobs/src", "workers/src", "api/src", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found the workspace's sources");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("telemetry.rs")) {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            for name in NAMES {
                if spells_out(line, name) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "use the telemetry constants:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_spelled_out_name() {
    assert!(spells_out("tracing::info!(job.id = %id, \"x\")", "job.id"));
    assert!(spells_out("    \"job.kind\" = %job.kind,", "job.kind"));
    assert!(spells_out("    job.attempt = job.attempt,", "job.attempt"));
    assert!(!spells_out(
        "tracing::info!({ JOB_ID } = %job.id)",
        "job.id"
    ));
    assert!(!spells_out("    queue.name = name;", "queue.name"));
    assert!(!spells_out("if job.id == other {", "job.id"));
    assert!(!spells_out(
        "invalid(\"job.kind\", \"name the kind\")",
        "job.kind"
    ));
}
