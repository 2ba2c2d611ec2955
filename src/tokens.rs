//! `longshore tokens`: over the API with `--server`, else directly in the database, which is
//! how the first token of a new installation is made. The database must exist and carry
//! Longshore's schema: a client command never creates or migrates one.

use anyhow::Context;
use longshore_jobs::Store;
use longshore_jobs::admin::{Scope, TokenRow, new_token};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{TokenTarget, TokensCommand};
use crate::client::Api;
use crate::client::output::{self, outln, s, when};
use crate::config::Config;
use crate::exit::{Exit, fail};

fn parse_scopes(scopes: &[String]) -> anyhow::Result<Vec<Scope>> {
    let mut parsed = scopes
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().parse::<Scope>().map_err(|e| fail(Exit::Usage, e)))
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
    let store = open(t).await?;
    let output = t.output;
    match &command {
        TokensCommand::Create { name, scopes, .. } => {
            let scopes = parse_scopes(scopes)?;
            let (row, token, hash) = new_token(name, scopes);
            store.create_token(&row, &hash).await?;
            let mut value = token_json(&row);
            value["token"] = json!(token);
            output::one(output, &value, |v| {
                outln!("{}", s(&v["token"]));
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
            output::list(output, &rows, print_tokens);
        }
        TokensCommand::Revoke { id, .. } => {
            let uuid = id
                .parse()
                .map_err(|_| fail(Exit::Usage, format!("{id:?} is not a token id")))?;
            if !store.revoke_token(uuid).await? {
                return Err(fail(Exit::NotFound, format!("no live token has id {id}")));
            }
            output::one(output, &json!({ "id": id, "revoked": true }), |_| {
                outln!("token {id} revoked")
            });
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
            api.print(&created, |v| outln!("{}", s(&v["token"])));
        }
        TokensCommand::List { .. } => {
            let tokens = api.call(Method::GET, "/tokens", None).await?;
            api.print_list(output::items(&tokens), print_tokens);
        }
        TokensCommand::Revoke { id, .. } => {
            api.call(Method::DELETE, &format!("/tokens/{id}"), None)
                .await?;
            api.print(&json!({ "id": id, "revoked": true }), |_| {
                outln!("token {id} revoked")
            });
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

fn print_tokens(tokens: &[Value]) {
    let rows = tokens
        .iter()
        .map(|t| {
            let scopes: Vec<String> = output::items(&t["scopes"]).iter().map(s).collect();
            vec![
                s(&t["id"]),
                s(&t["name"]),
                format!("{}…", s(&t["prefix"])),
                scopes.join(","),
                when(&t["created_at"]),
                when(&t["last_used_at"]),
                if t["revoked_at"].is_null() {
                    "live".to_owned()
                } else {
                    format!("revoked {}", when(&t["revoked_at"]))
                },
            ]
        })
        .collect();
    output::table(
        &[
            "id",
            "name",
            "prefix",
            "scopes",
            "created",
            "last used",
            "status",
        ],
        rows,
    );
}

/// The database `target` names, as it is: never created, never migrated.
async fn open(target: &TokenTarget) -> anyhow::Result<Store> {
    let args = crate::database_args(target.database_url.clone(), target.config.clone());
    let mut config = Config::load(&args).map_err(|e| fail(Exit::Usage, e.to_string()))?;
    let url = config.database.url.clone();
    if let Some(path) = sqlite_file(&url)
        && !std::path::Path::new(&path).exists()
    {
        let hint = if target.database_url.is_none() && target.config.is_none() {
            " (no --database-url, DATABASE_URL or --config was given, so ./longshore.db was \
             looked for; run this where `longshore serve` keeps its database, pass \
             --database-url, or --server to go through the API)"
        } else {
            ""
        };
        return Err(fail(Exit::NotFound, format!("no database at {path}{hint}")));
    }
    let missing_schema = || {
        anyhow::anyhow!(
            "{} has no Longshore tables; run `longshore migrate` on it first",
            crate::run::redact(&url)
        )
    };
    // Opening an SQLite file for the store writes to it (its journal mode): look first,
    // read-only, so a file that is not ours is left as it was.
    if sqlite_file(&url).is_some() && !sqlite_has_schema(&url).await? {
        return Err(missing_schema());
    }
    config.database.migrate = false;
    let store = crate::run::connect(&config).await?;
    if let Err(error) = store.active_tokens().await {
        return Err(anyhow::Error::new(error).context(missing_schema()));
    }
    Ok(store)
}

/// Whether the SQLite database at `url` has the tokens table, opened read-only.
async fn sqlite_has_schema(url: &str) -> anyhow::Result<bool> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open {}", crate::run::redact(url)))?;
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'api_tokens'",
    )
    .fetch_optional(&mut connection)
    .await?;
    Ok(found.is_some())
}

/// The file of a `sqlite:` URL (`None` for other databases and for memory).
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| path.to_owned())
}
