//! `longshore tokens`: over the API with `--server`, else directly in the database, which is
//! how the first token of a new installation is made.

use anyhow::Context;
use longshore_jobs::admin::{Scope, TokenRow, new_token};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::TokensCommand;
use crate::client::{Api, print, s};
use crate::config::Config;

fn parse_scopes(scopes: &[String]) -> anyhow::Result<Vec<Scope>> {
    let mut parsed = scopes
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().parse::<Scope>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

pub async fn run(command: TokensCommand) -> anyhow::Result<()> {
    let t = match &command {
        TokensCommand::Create { target: t, .. }
        | TokensCommand::List { target: t }
        | TokensCommand::Revoke { target: t, .. } => t,
    };
    if let Some(server) = &t.server {
        let api = Api::with(server, t.token.clone(), t.output)?;
        return over_http(&api, &command).await;
    }
    let args = crate::database_args(t.database_url.clone(), t.config.clone());
    let config = Config::load(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = crate::run::connect(&config).await?;
    let output = t.output;
    match &command {
        TokensCommand::Create { name, scopes, .. } => {
            let scopes = parse_scopes(scopes)?;
            let (row, token, hash) = new_token(name, scopes);
            store.create_token(&row, &hash).await?;
            let mut value = token_json(&row);
            value["token"] = json!(token);
            print(output, &value, |v| {
                println!("{}", s(&v["token"]));
                eprintln!(
                    "token {} ({}) created with scopes {}; it is shown only now",
                    s(&v["id"]),
                    s(&v["name"]),
                    v["scopes"]
                );
            });
        }
        TokensCommand::List { .. } => {
            let rows: Vec<Value> = store.tokens().await?.iter().map(token_json).collect();
            print(output, &json!(rows), print_tokens);
        }
        TokensCommand::Revoke { id, .. } => {
            let uuid = id
                .parse()
                .with_context(|| format!("{id:?} is not a token id"))?;
            if !store.revoke_token(uuid).await? {
                anyhow::bail!("no live token has id {id}");
            }
            println!("token {id} revoked");
        }
    }
    Ok(())
}

async fn over_http(api: &Api, command: &TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create { name, scopes, .. } => {
            let scopes: Vec<&str> = parse_scopes(scopes)?
                .into_iter()
                .map(Scope::as_str)
                .collect();
            let created = api
                .call(
                    Method::POST,
                    "/tokens",
                    Some(json!({ "name": name, "scopes": scopes })),
                )
                .await?;
            api.print(&created, |v| println!("{}", s(&v["token"])));
        }
        TokensCommand::List { .. } => {
            let tokens = api.call(Method::GET, "/tokens", None).await?;
            api.print(&tokens, print_tokens);
        }
        TokensCommand::Revoke { id, .. } => {
            api.call(Method::DELETE, &format!("/tokens/{id}"), None)
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

fn token_json(row: &TokenRow) -> Value {
    json!({
        "id": row.id, "name": row.name, "prefix": row.prefix, "scopes": row.scopes,
        "created_at": row.created_at, "last_used_at": row.last_used_at, "revoked_at": row.revoked_at,
    })
}

fn print_tokens(v: &Value) {
    for t in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        println!(
            "{}  {:<16} {}…  {:<24} {}",
            s(&t["id"]),
            s(&t["name"]),
            s(&t["prefix"]),
            t["scopes"],
            if t["revoked_at"].is_null() {
                "live".to_owned()
            } else {
                format!("revoked {}", s(&t["revoked_at"]))
            }
        );
    }
}
