//! `flow keys`: the API keys of `flow serve`, made, listed and revoked in the
//! flow database of a flow file's environment.

use flow_engine::{KeyScope, Registry};

use crate::args::KeysCommand;
use crate::exit::Exit;
use crate::{load, output};

pub fn keys(action: KeysCommand, registry: &Registry) -> Exit {
    match action {
        KeysCommand::Create {
            file,
            name,
            scope,
            env,
        } => {
            let scope = KeyScope::parse(&scope).unwrap_or(KeyScope::Read);
            load::with_records(
                &file,
                env.as_deref(),
                registry,
                async |records, _| match records.create_key(&name, scope).await {
                    Ok(Some(key)) => {
                        output::out(&format!("{key}\n"));
                        output::note(&format!(
                            "key `{name}` ({}) made: it is shown this once, and stored only as a hash",
                            scope.as_str()
                        ));
                        Exit::Success
                    }
                    Ok(None) => {
                        output::note(&format!(
                            "there is a live key named `{name}` already: revoke it first (`flow keys revoke FILE --name {name}`), or pick another name"
                        ));
                        Exit::Invalid
                    }
                    Err(error) => {
                        output::error(error);
                        Exit::Failure
                    }
                },
            )
        }
        KeysCommand::List { file, env, json } => load::with_records(
            &file,
            env.as_deref(),
            registry,
            async |records, _| match records.keys().await {
                Ok(keys) if json => {
                    output::out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&keys).unwrap_or_default()
                    ));
                    Exit::Success
                }
                Ok(keys) => {
                    let mut text = format!(
                        "{:<20} {:<6} {:<20} {:<20} {}\n",
                        "name", "scope", "created (UTC)", "last used (UTC)", "revoked (UTC)"
                    );
                    for key in keys {
                        text.push_str(&format!(
                            "{:<20} {:<6} {:<20} {:<20} {}\n",
                            key.name,
                            key.scope.as_str(),
                            key.created_at,
                            key.last_used_at.as_deref().unwrap_or("-"),
                            key.revoked_at.as_deref().unwrap_or("-"),
                        ));
                    }
                    output::out(&text);
                    Exit::Success
                }
                Err(error) => {
                    output::error(error);
                    Exit::Failure
                }
            },
        ),
        KeysCommand::Revoke { file, name, env } => load::with_records(
            &file,
            env.as_deref(),
            registry,
            async |records, _| match records.revoke_key(&name).await {
                Ok(true) => {
                    output::note(&format!("key `{name}` revoked"));
                    Exit::Success
                }
                Ok(false) => {
                    output::note(&format!(
                        "there is no live key named `{name}` (`flow keys list FILE` lists them)"
                    ));
                    Exit::Invalid
                }
                Err(error) => {
                    output::error(error);
                    Exit::Failure
                }
            },
        ),
    }
}
