//! PostgreSQL for flow: where a database is, how to reach it, and the local
//! cluster flow starts itself when a database is `embedded`.
//!
//! - [`Location`] is a database as configured: `embedded`, or a URL. Its
//!   `Display` never shows a password.
//! - [`Cluster`] is the embedded cluster: `initdb` and `pg_ctl` from the
//!   machine's PostgreSQL, data under `.flow/` beside the flow, listening on
//!   127.0.0.1 only, with a generated password. As root it runs the server as an
//!   unprivileged system user, since PostgreSQL refuses to run as root.
//! - [`Database`] is a pool of connections to one database, TLS when the URL
//!   asks for it (rustls; no OpenSSL).

mod client;
mod cluster;
mod database;
mod db_error;
mod location;
mod tls;

pub mod drizzle;
pub mod names;
pub mod statements;
pub mod testing;
pub mod types;

pub use cluster::{Cluster, ClusterStatus, Lease};
pub use database::{CancelOnDrop, Database, quote_ident, quote_literal};
pub use db_error::{DbError, SqlError};
pub use location::{Location, redact};

pub use client::{Client, Sql, set_values};
pub use deadpool_postgres::{ClientWrapper, Transaction as ClientTransaction};
pub use tokio_postgres;
