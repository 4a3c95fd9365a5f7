//! The `pg` tool: everything done inside PostgreSQL.
//!
//! | operation | does |
//! |---|---|
//! | `pg:<db>:configure` | create extensions (PostGIS by default) |
//! | `pg:<db>:push` | apply a types file (enums, domains, composites) |
//! | `pg:source:create` | a table per CSV file |
//! | `pg:source:load` | COPY each CSV into its table |
//! | `pg:model:create` | tables shaped like the API's, or like a schema release |
//! | `pg:model:transform` | SQL files from source tables into model tables |
//! | `pg:target:populate` | model tables into the API database, safely |

mod configure;
mod csv_schema;
mod dependents;
mod migrate;
mod model_create;
mod model_transform;
mod parallel_copy;
pub mod populate;
mod push;
mod shape;
mod source;
mod sql_tables;

use flow_engine::{ParamSpec, ParamType, Params, StepContext};

/// The database a `pg:source:*`/`pg:model:*` step works in (the flow database
/// unless `database` says otherwise).
const DATABASE: ParamSpec = ParamSpec::optional(
    "database",
    ParamType::Database,
    "the database to work in (default `flow`)",
);

fn database<'a>(step: &'a StepContext<'_>) -> &'a str {
    database_of(step.params)
}

/// The database a step's `database` parameter names, `flow` by default.
fn database_of(params: &Params) -> &str {
    params.str("database").unwrap_or(DEFAULT_DATABASE)
}

/// The database of a step that names none: the flow database.
const DEFAULT_DATABASE: &str = "flow";
