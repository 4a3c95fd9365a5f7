use flow_engine::flow_db::types::{self, CustomType, TypeStatement};
use flow_engine::flow_db::{Client, Sql, quote_ident, quote_literal};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Params, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};

pub struct Push;

/// The types file, and the labels it renames as (type, old, new).
struct Settings {
    types: String,
    renames: Vec<(String, String, String)>,
}

static PUSH: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "push",
    summary: "create or update custom types from a types file",
    params: &[
        ParamSpec::required(
            "types",
            ParamType::Path,
            "the types file written by `drizzle:<db>:pull`",
        ),
        ParamSpec::optional(
            "renames",
            ParamType::Strings,
            "enum labels renamed, as \"type.old=new\"",
        ),
    ],
};

impl Operation for Push {
    fn spec(&self) -> &'static OperationSpec {
        &PUSH
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let problems = rename_problems(step.params);
        if !problems.is_empty() {
            return Err(problems);
        }
        let database = step.target_database().to_owned();
        let settings = Settings {
            types: step.params.str("types").unwrap_or_default().to_owned(),
            renames: step
                .params
                .list("renames")
                .into_iter()
                .filter_map(parse_rename)
                .map(|(ty, old, new)| (ty.to_owned(), old.to_owned(), new.to_owned()))
                .collect(),
        };
        Ok(Prepared::default()
            .reads(Resource::file(&settings.types))
            .reads(Resource::Extensions {
                database: database.clone(),
            })
            .creates(Resource::Types { database })
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let settings: &Settings = context.settings()?;
            let relative = settings.types.as_str();
            let path = context.path(relative);
            let sql = tokio::fs::read_to_string(&path).await.map_err(|e| {
                StepError::coded(
                    "flow::pg::push",
                    format!("cannot read the types file `{}`: {e}", path.display()),
                    Some(
                        "write it with `flow run FILE --step drizzle:api:pull`, and commit it"
                            .into(),
                    ),
                )
            })?;
            // A drizzle-orm module written by `drizzle:<db>:pull`, or SQL.
            let parsed = if relative.ends_with(".ts") {
                flow_engine::flow_db::drizzle::parse(&sql)
            } else {
                types::parse(&sql)
            };
            let statements = parsed.map_err(|e| {
                StepError::coded(
                    "flow::pg::push",
                    format!("{}:{}: {}", path.display(), e.line, e.message),
                    None,
                )
            })?;
            let renames: Vec<(&str, &str, &str)> = settings
                .renames
                .iter()
                .map(|(ty, old, new)| (ty.as_str(), old.as_str(), new.as_str()))
                .collect();
            let name = context
                .target
                .as_deref()
                .unwrap_or(flow_engine::FLOW_DATABASE);
            let mut client = context.database(name)?.client().await?;
            let mut changes = Vec::new();
            for statement in statements {
                match statement {
                    TypeStatement::Schema { name, .. } => {
                        client
                            .batch_execute(&format!(
                                "CREATE SCHEMA IF NOT EXISTS {}",
                                quote_ident(&name)
                            ))
                            .await?;
                    }
                    TypeStatement::Type(wanted) => {
                        apply(&mut client, &wanted, &renames, &mut changes).await?
                    }
                }
            }
            let unchanged = changes.is_empty();
            Ok(Outcome::note(if unchanged {
                "types up to date".to_owned()
            } else {
                changes.join("; ")
            })
            .unchanged(unchanged))
        })
    }
}

/// `type.old=new` as (type, old, new).
/// The `renames` that are not renames: the one check, for push and populate.
pub fn rename_problems(params: &Params) -> Vec<Problem> {
    params
        .list("renames")
        .into_iter()
        .filter(|rename| parse_rename(rename).is_none())
        .map(|rename| Problem {
            param: Some("renames"),
            message: format!("`{rename}` is not a rename"),
            help: Some("write renames as \"type.old_label=new_label\"".into()),
        })
        .collect()
}

pub fn parse_rename(text: &str) -> Option<(&str, &str, &str)> {
    let (ty, labels) = text.rsplit_once('.').filter(|(ty, _)| !ty.is_empty())?;
    let (old, new) = labels.split_once('=')?;
    (!old.is_empty() && !new.is_empty()).then_some((ty, old, new))
}

struct Existing {
    oid: u32,
    kind: i8,
}

async fn existing(client: &Client, ty: &CustomType) -> Result<Option<Existing>, StepError> {
    let row = client
        .query_opt(
            "SELECT t.oid, t.typtype::\"char\" FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = $1 AND t.typname = $2",
            &[&ty.schema(), &ty.name()],
        )
        .await?;
    Ok(row.map(|r| Existing {
        oid: r.get(0),
        kind: r.get(1),
    }))
}

async fn apply(
    client: &mut Client,
    wanted: &CustomType,
    renames: &[(&str, &str, &str)],
    changes: &mut Vec<String>,
) -> Result<(), StepError> {
    let qualified = wanted.qualified();
    let Some(found) = existing(client, wanted).await? else {
        client.batch_execute(&wanted.create()).await?;
        changes.push(format!("created {qualified}"));
        return Ok(());
    };
    let expected = match wanted {
        CustomType::Enum { .. } => b'e',
        CustomType::Domain { .. } => b'd',
        CustomType::Composite { .. } => b'c',
    };
    if found.kind as u8 != expected {
        return Err(StepError::coded(
            "flow::pg::push",
            format!("{qualified} exists but is not the kind of type the types file declares"),
            Some("drop or rename the existing type first".into()),
        ));
    }
    match wanted {
        CustomType::Enum { labels, .. } => {
            push_enum(client, wanted, found.oid, labels, renames, changes).await
        }
        _ => push_other(client, wanted, found.oid, changes).await,
    }
}

async fn labels_of(client: &Client, oid: u32) -> Result<Vec<String>, StepError> {
    let rows = client
        .query(
            "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
            &[&oid],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn push_enum(
    client: &mut Client,
    wanted: &CustomType,
    oid: u32,
    labels: &[String],
    renames: &[(&str, &str, &str)],
    changes: &mut Vec<String>,
) -> Result<(), StepError> {
    let qualified = wanted.qualified();
    let mut current = labels_of(client, oid).await?;
    let names = [
        format!("{}.{}", wanted.schema(), wanted.name()),
        wanted.name().to_owned(),
    ];
    for (ty, old, new) in renames {
        if names.iter().any(|n| n == ty)
            && current.iter().any(|l| l == old)
            && !current.iter().any(|l| l == new)
            && labels.iter().any(|l| l == new)
        {
            client
                .batch_execute(&format!(
                    "ALTER TYPE {qualified} RENAME VALUE {} TO {}",
                    quote_literal(old),
                    quote_literal(new)
                ))
                .await?;
            for label in &mut current {
                if label == old {
                    *label = (*new).to_owned();
                }
            }
            changes.push(format!("renamed {qualified} label `{old}` to `{new}`"));
        }
    }
    let removed: Vec<&String> = current.iter().filter(|l| !labels.contains(l)).collect();
    let in_use = in_use(client, oid, &removed).await?;
    if !in_use.is_empty() {
        return Err(StepError::coded(
            "flow::pg::push",
            format!(
                "cannot remove labels from {qualified}: {}",
                in_use.join("; ")
            ),
            Some(format!(
                "rename the label instead with `renames = [\"{}.{}=NEW\"]`, or change those rows first",
                wanted.name(),
                removed.first().map_or("OLD", |l| l.as_str())
            )),
        ));
    }
    if removed.is_empty() {
        add_labels(client, &qualified, labels, &mut current, changes).await?;
    }
    if current.as_slice() != labels {
        // Removed or reordered labels: the type made again, in one transaction.
        let script = crate::migrate::recreate_enum(wanted.schema(), wanted.name(), labels, &[]);
        let transaction = client.transaction().await?;
        transaction.batch_execute(&script).await?;
        transaction.commit().await?;
        changes.push(format!(
            "recreated {qualified} with labels {}",
            labels.join(", ")
        ));
    }
    Ok(())
}

struct Column {
    schema: String,
    table: String,
    column: String,
    /// An attribute of a composite type rather than a table column.
    composite: bool,
}

/// Where the labels to remove are still used: rows of table columns, counted.
async fn in_use(client: &Client, oid: u32, removed: &[&String]) -> Result<Vec<String>, StepError> {
    let columns = columns_using(client, oid).await?;
    let mut in_use = Vec::new();
    for label in removed {
        for column in columns.iter().filter(|c| !c.composite) {
            let count: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.{} WHERE {}::text = $1",
                        quote_ident(&column.schema),
                        quote_ident(&column.table),
                        quote_ident(&column.column)
                    ),
                    &[label],
                )
                .await?
                .get(0);
            if count > 0 {
                in_use.push(format!(
                    "{count} {} of `{}.{}` use `{label}` in column `{}`",
                    if count == 1 { "row" } else { "rows" },
                    column.schema,
                    column.table,
                    column.column
                ));
            }
        }
    }
    Ok(in_use)
}

/// New labels go in their place, one statement each (outside a transaction).
async fn add_labels(
    client: &Client,
    qualified: &str,
    labels: &[String],
    current: &mut Vec<String>,
    changes: &mut Vec<String>,
) -> Result<(), StepError> {
    for (position, label) in labels.iter().enumerate() {
        if current.contains(label) {
            continue;
        }
        let previous = labels[..position]
            .iter()
            .rev()
            .find(|l| current.contains(l));
        let (clause, at) = match previous {
            Some(previous) => {
                let at = current
                    .iter()
                    .position(|l| l == previous)
                    .map_or(current.len(), |i| i + 1);
                (format!(" AFTER {}", quote_literal(previous)), at)
            }
            None => (
                current
                    .first()
                    .map(|first| format!(" BEFORE {}", quote_literal(first)))
                    .unwrap_or_default(),
                0,
            ),
        };
        client
            .batch_execute(&format!(
                "ALTER TYPE {qualified} ADD VALUE IF NOT EXISTS {}{clause}",
                quote_literal(label)
            ))
            .await?;
        current.insert(at, label.clone());
        changes.push(format!("added `{label}` to {qualified}"));
    }
    Ok(())
}

/// Table columns whose type is `oid`.
async fn columns_using(client: &Client, oid: u32) -> Result<Vec<Column>, StepError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, c.relkind = 'c'
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE a.atttypid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'c')
             ORDER BY 1, 2, 3",
            &[&oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Column {
            schema: r.get(0),
            table: r.get(1),
            column: r.get(2),
            composite: r.get(3),
        })
        .collect())
}

/// Domains and composite types: compared with what the server makes of the
/// file's definition; replaced when nothing uses them, extended when only new
/// attributes were added at the end, refused otherwise.
async fn push_other(
    client: &mut Client,
    wanted: &CustomType,
    oid: u32,
    changes: &mut Vec<String>,
) -> Result<(), StepError> {
    let qualified = wanted.qualified();
    let current = introspect_one(client, wanted.schema(), wanted.name()).await?;
    let normalized = normalize(client, wanted).await?;
    if current.as_ref() == Some(&normalized) {
        return Ok(());
    }
    if let (
        Some(CustomType::Composite {
            attributes: have, ..
        }),
        CustomType::Composite {
            attributes: want, ..
        },
    ) = (&current, &normalized)
        && want.starts_with(have)
    {
        for (name, kind) in &want[have.len()..] {
            client
                .batch_execute(&format!(
                    "ALTER TYPE {qualified} ADD ATTRIBUTE {} {kind}",
                    quote_ident(name)
                ))
                .await?;
            changes.push(format!("added attribute `{name}` to {qualified}"));
        }
        return Ok(());
    }
    let columns = columns_using(client, oid).await?;
    if let Some(column) = columns.first() {
        return Err(StepError::coded(
"flow::pg::push",
            format!(
                "{qualified} differs from the types file, and {} column(s) use it, like `{}.{}.{}`",
                columns.len(),
                column.schema,
                column.table,
                column.column
            ),
            Some("flow changes a domain or composite type in use only by adding attributes; migrate those columns first".into()),
        ));
    }
    let kind = if matches!(wanted, CustomType::Domain { .. }) {
        "DOMAIN"
    } else {
        "TYPE"
    };
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!("DROP {kind} {qualified}"))
        .await?;
    transaction.batch_execute(&wanted.create()).await?;
    transaction.commit().await?;
    changes.push(format!("replaced {qualified}"));
    Ok(())
}

async fn introspect_one(
    client: &mut Client,
    schema: &str,
    name: &str,
) -> Result<Option<CustomType>, StepError> {
    let transaction = client.transaction().await?;
    let schemas = [schema.to_owned()];
    let found = types::introspect(&transaction, Some(&schemas)).await?;
    transaction.rollback().await?;
    Ok(found.into_iter().find(|t| t.name() == name))
}

/// The definition as the server writes it back: created in a scratch schema
/// inside a transaction that is rolled back.
async fn normalize(client: &mut Client, wanted: &CustomType) -> Result<CustomType, StepError> {
    let scratch = format!("flow_scratch_{}", std::process::id());
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!("CREATE SCHEMA {}", quote_ident(&scratch)))
        .await?;
    let moved = match wanted.clone() {
        CustomType::Enum { name, labels, .. } => CustomType::Enum {
            schema: scratch.clone(),
            name,
            labels,
        },
        CustomType::Domain {
            name, definition, ..
        } => CustomType::Domain {
            schema: scratch.clone(),
            name,
            definition,
        },
        CustomType::Composite {
            name, attributes, ..
        } => CustomType::Composite {
            schema: scratch.clone(),
            name,
            attributes,
        },
    };
    transaction.batch_execute(&moved.create()).await?;
    let schemas = [scratch.clone()];
    let found = types::introspect(&transaction, Some(&schemas)).await?;
    transaction.rollback().await?;
    let normalized = found.into_iter().next().unwrap_or(moved);
    Ok(match normalized {
        CustomType::Domain {
            name, definition, ..
        } => CustomType::Domain {
            schema: wanted.schema().to_owned(),
            name,
            definition,
        },
        CustomType::Composite {
            name, attributes, ..
        } => CustomType::Composite {
            schema: wanted.schema().to_owned(),
            name,
            attributes,
        },
        other => other,
    })
}

inventory::submit!(Registration(&Push));

#[cfg(test)]
mod tests {
    use super::parse_rename;

    #[test]
    fn renames_name_a_type_and_two_labels() {
        assert_eq!(
            parse_rename("public.zone.res=residential"),
            Some(("public.zone", "res", "residential"))
        );
        assert_eq!(parse_rename("zone.res="), None);
        assert_eq!(parse_rename("res=residential"), None);
    }
}
