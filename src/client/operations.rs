//! `longshore operations` (the bulk operations `jobs retry|cancel|delete` start) and
//! `longshore audit` (who changed what through the API).

use reqwest::Method;
use serde_json::Value;

use crate::cli::{ClientArgs, OperationsCommand, PageArgs};

use super::output::{self, cut, outln, s, when};
use super::{Api, path_segment};

pub async fn operations(command: OperationsCommand) -> anyhow::Result<()> {
    match command {
        OperationsCommand::List { page, client } => {
            let api = Api::new(&client)?;
            api.pages("/operations", &page, operation_rows).await
        }
        OperationsCommand::Get { id, client } => {
            let api = Api::new(&client)?;
            let op = api
                .call(
                    Method::GET,
                    &format!("/operations/{}", path_segment(&id)),
                    None,
                )
                .await?;
            api.print(&op, print_operation);
            Ok(())
        }
    }
}

/// One operation on one line: what, how far, and its error if it failed.
pub fn print_operation(o: &Value) {
    outln!(
        "operation {} {} {}: {} done, {} skipped of {}{}",
        s(&o["id"]),
        s(&o["action"]),
        s(&o["state"]),
        o["done"],
        o["skipped"],
        o["total"],
        o["error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
}

fn operation_rows(ops: &[Value], header: bool) {
    let rows = ops
        .iter()
        .map(|o| {
            vec![
                s(&o["id"]),
                s(&o["action"]),
                s(&o["state"]),
                format!("{}/{}", o["done"], o["total"]),
                s(&o["skipped"]),
                s(&o["actor"]),
                when(&o["created_at"]),
                cut(&s(&o["error"]), 60),
            ]
        })
        .collect();
    output::draw(
        &[
            "id", "action", "state", "done", "skipped", "actor", "created", "error",
        ],
        rows,
        header,
    );
}

pub async fn audit(page: PageArgs, client: ClientArgs) -> anyhow::Result<()> {
    let api = Api::new(&client)?;
    api.pages_by(
        "/audit",
        &page,
        ("before", "next_before"),
        |entries, header| {
            let rows = entries
                .iter()
                .map(|a| {
                    let targets: Vec<String> = output::items(&a["targets"]).iter().map(s).collect();
                    vec![
                        s(&a["id"]),
                        when(&a["at"]),
                        s(&a["actor"]),
                        s(&a["action"]),
                        cut(&targets.join(" "), 80),
                    ]
                })
                .collect();
            output::draw(&["id", "at", "actor", "action", "targets"], rows, header);
        },
    )
    .await
}
