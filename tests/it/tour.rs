//! README's "A first hour at the command line", run top to bottom: every `$ ` command of
//! its `console` block in one bash (so a variable set by one step is there for the next),
//! against a fresh `longshore serve`; each step's output (stdout, then stderr) and exit
//! code must be what README shows. `[..]` in README matches any text within a line, a line
//! `...` any number of lines; `# exit N` after a command is its expected exit code.

use std::process::Command;

use crate::support::{BIN, TestDb};

const README: &str = include_str!("../../README.md");
const SECTION: &str = "### A first hour at the command line";

struct Step {
    command: String,
    exit: i32,
    expected: Vec<String>,
}

fn steps() -> Vec<Step> {
    let section = &README[README.find(SECTION).expect("README has the tour")..];
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the tour has a console block");
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => {
                let exit = command
                    .rsplit_once("# exit ")
                    .map_or(0, |(_, code)| code.trim().parse().expect("an exit code"));
                steps.push(Step {
                    command: command.to_owned(),
                    exit,
                    expected: Vec::new(),
                });
            }
            None => steps
                .last_mut()
                .expect("the block starts with a command")
                .expected
                .push(line.to_owned()),
        }
    }
    steps
}

/// Whether `line` matches `pattern`, where `[..]` matches any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    let (first, rest) = parts.split_first().expect("split gives one part at least");
    let Some(mut line) = line.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last {
            return line.ends_with(part);
        }
        match line.find(part) {
            Some(at) => line = &line[at + part.len()..],
            None => return false,
        }
    }
    line.is_empty()
}

/// Whether `lines` match `patterns`, where a pattern `...` matches any number of lines.
fn lines_match(patterns: &[String], lines: &[&str]) -> bool {
    match patterns.split_first() {
        None => lines.is_empty(),
        Some((p, rest)) if p == "..." => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((p, rest)) => {
            !lines.is_empty() && line_matches(p, lines[0]) && lines_match(rest, &lines[1..])
        }
    }
}

#[test]
fn the_matcher_matches_what_it_should_and_nothing_else() {
    assert!(line_matches("[..] available", "01a2 available"));
    assert!(!line_matches("[..] available", "01a2 completed"));
    assert!(line_matches("ID[..]KIND", "ID    KIND"));
    assert!(!line_matches("ID[..]KIND", "ID    KINDS"));
    assert!(line_matches("exact", "exact"));
    assert!(!line_matches("exact", "exactly"));
    let lines = ["a", "b", "c"];
    assert!(lines_match(&["a".into(), "...".into()], &lines));
    assert!(lines_match(&["...".into(), "c".into()], &lines));
    assert!(!lines_match(&["a".into(), "c".into()], &lines));
    assert!(lines_match(&["...".into()], &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cli_tour_runs_as_shown() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let steps = steps();
    assert!(steps.len() >= 10, "the tour has its steps");
    // `longshore` on the PATH, as an installed binary is.
    let bin = db.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("longshore")).unwrap();
    let mut script = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "echo '@@step {i}'\n{{ {}\n}} 2>&1\necho \"@@exit $?\"\n",
            step.command
        ));
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-c", &script])
            .env("PATH", path)
            .env("LONGSHORE_SERVER", &base)
            .env_remove("LONGSHORE_TOKEN")
            .env("COLUMNS", "200")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let all = String::from_utf8_lossy(&output.stdout).into_owned();
    for (i, step) in steps.iter().enumerate() {
        let start = format!("@@step {i}\n");
        let from = all
            .find(&start)
            .unwrap_or_else(|| panic!("step {i} ran:\n{all}"))
            + start.len();
        let body = &all[from..];
        let end = body.find("@@exit ").expect("the step ended");
        let lines: Vec<&str> = body[..end].lines().collect();
        let code: i32 = body[end + 7..]
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            code == step.exit && lines_match(&step.expected, &lines),
            "step {i}: $ {}\nexpected (exit {}):\n{}\ngot (exit {code}):\n{}",
            step.command,
            step.exit,
            step.expected.join("\n"),
            lines.join("\n")
        );
    }
}
