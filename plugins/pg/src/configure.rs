use flow_engine::flow_db::quote_ident;
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};

pub struct Configure;

/// The extensions to create: `extensions`, PostGIS by default.
struct Settings {
    extensions: Vec<String>,
}

static CONFIGURE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "configure",
    summary: "create extensions in a database (idempotent)",
    params: &[ParamSpec::optional(
        "extensions",
        ParamType::Names,
        "extensions to create (default `[postgis]`)",
    )],
};

impl Operation for Configure {
    fn spec(&self) -> &'static OperationSpec {
        &CONFIGURE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let extensions = if step.params.contains("extensions") {
            step.params.list("extensions")
        } else {
            vec!["postgis"]
        };
        let settings = Settings {
            extensions: extensions.into_iter().map(str::to_owned).collect(),
        };
        Ok(Prepared::default()
            .creates(Resource::Extensions {
                database: step.target_database().to_owned(),
            })
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let name = context
                .target
                .as_deref()
                .unwrap_or(flow_engine::FLOW_DATABASE);
            let client = context.database(name)?.client().await?;
            let extensions = &context.settings::<Settings>()?.extensions;
            let mut created = Vec::new();
            for extension in extensions {
                let row = client
                    .query_opt(
                        "SELECT installed_version IS NOT NULL FROM pg_available_extensions WHERE name = $1",
                        &[extension],
                    )
                    .await?;
                match row.map(|r| r.get::<_, bool>(0)) {
                    Some(true) => continue,
                    Some(false) => {}
                    None => {
                        let version: i32 = client
                            .query_one(
                                "SELECT current_setting('server_version_num')::int / 10000",
                                &[],
                            )
                            .await?
                            .get(0);
                        return Err(StepError::coded(
                            "flow::pg::configure",
                            format!(
                                "extension `{extension}` is not available on the server of database `{name}`"
                            ),
                            Some(install_help(extension, version)),
                        ));
                    }
                }
                let statement = format!(
                    "CREATE EXTENSION IF NOT EXISTS {} CASCADE",
                    quote_ident(extension)
                );
                if let Err(error) = client.batch_execute(&statement).await {
                    // 42501: a role that is not a superuser, on a managed
                    // server, may not create this extension itself.
                    if error.code().is_some_and(|c| c.code() == "42501") {
                        return Err(StepError::coded(
                            "flow::pg::extension_privilege",
                            format!(
                                "extension `{extension}` is not in database `{name}`, and this role may not create it"
                            ),
                            Some(format!(
                                "an administrator runs `{statement};` in `{name}` once (on a managed service, as its admin role); flow then uses it"
                            )),
                        ));
                    }
                    return Err(flow_engine::flow_db::DbError::from(error).into());
                }
                created.push(extension.as_str());
            }
            let unchanged = created.is_empty();
            Ok(Outcome::note(if extensions.is_empty() {
                "no extensions asked for".to_owned()
            } else if unchanged {
                format!("{} already there", extensions.join(", "))
            } else {
                format!("created {}", created.join(", "))
            })
            .unchanged(unchanged))
        })
    }
}

/// Which package provides an extension, on Debian and Ubuntu.
fn install_help(extension: &str, version: i32) -> String {
    let package = if extension.starts_with("postgis") || extension == "address_standardizer" {
        format!("postgresql-{version}-postgis-3")
    } else if extension == "vector" {
        format!("postgresql-{version}-pgvector")
    } else if extension == "h3" {
        format!("postgresql-{version}-h3")
    } else {
        format!(
            "postgresql-contrib (or the package that provides `{extension}` for PostgreSQL {version})"
        )
    };
    format!("install it on the database server, for example `apt-get install {package}`")
}

inventory::submit!(Registration(&Configure));
