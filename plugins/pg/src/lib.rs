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
//! | `pg:<db>:copy` | schemas of another database, masked on the way |
//! | `pg:<db>:export` | tables and queries to CSV or GeoJSON files, with a manifest |

mod configure;
mod copy;
mod csv_schema;
mod dependents;
mod export;
mod migrate;
mod model_create;
mod model_transform;
mod parallel_copy;
pub mod populate;
mod push;
mod shape;
mod snapshot;
mod source;
mod sql_tables;

use flow_engine::{ParamSpec, ParamType};

/// The database a `pg:source:*`/`pg:model:*` step works in (the flow database
/// unless `database` says otherwise).
const DATABASE: ParamSpec = ParamSpec::optional(
    "database",
    ParamType::Database,
    "the database to work in (default `flow`)",
);
