use miette::Diagnostic;
use thiserror::Error;

/// What can go wrong reaching or running PostgreSQL. Messages name the
/// database by its name in the flow and never carry a password.
#[derive(Debug, Error, Diagnostic)]
pub enum DbError {
    #[error("PostgreSQL is not installed: no `initdb` found")]
    #[diagnostic(
        code(flow::db::postgres_missing),
        help(
            "install it, for example `apt-get install postgresql-15 postgresql-15-postgis-3`, or give every database a URL; flow looked in `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH"
        )
    )]
    PostgresMissing,

    #[error("the embedded cluster in `{dir}` did not start: {reason}")]
    #[diagnostic(code(flow::db::cluster_start), help("the server's log is `{log}`"))]
    ClusterStart {
        dir: String,
        reason: String,
        log: String,
    },

    #[error("cannot run `{command}`: {reason}")]
    #[diagnostic(code(flow::db::command))]
    Command { command: String, reason: String },

    #[error("cannot connect to database `{name}` at {location}: {reason}")]
    #[diagnostic(code(flow::db::connect))]
    Connect {
        name: String,
        location: String,
        reason: String,
        #[help]
        help: Option<String>,
    },

    #[error("`{value}` is not a database location: {reason}")]
    #[diagnostic(
        code(flow::db::location),
        help(
            "a database is `embedded` or a URL like `postgres://user@host:5432/name?sslmode=require`"
        )
    )]
    Location { value: String, reason: String },

    #[error(
        "database `{name}` is reached through a pooler in transaction mode, and to {purpose} flow needs a session of its own"
    )]
    #[diagnostic(
        code(flow::db::session_needed),
        help(
            "give the server's own URL (not the pooler's) as `direct`: `database {name} = {{ url = env(\"...\"), pool_mode = \"transaction\", direct = env(\"...\") }}`"
        )
    )]
    SessionNeeded { name: String, purpose: String },

    #[error("{message}")]
    #[diagnostic(code(flow::db::query))]
    Query {
        message: String,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
        #[help]
        help: Option<String>,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Sql(Box<SqlError>),

    #[error("{context}: {source}")]
    #[diagnostic(code(flow::db::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Io { context, source }
    }

    /// An error of SQL from a file, pointing at the place PostgreSQL reports,
    /// with its SQLSTATE, detail and hint.
    pub fn in_file(error: tokio_postgres::Error, file: &str, sql: &str) -> DbError {
        let Some(db) = error.as_db_error() else {
            return error.into();
        };
        let span = match db.position() {
            Some(tokio_postgres::error::ErrorPosition::Original(position)) => {
                // PostgreSQL counts characters from 1.
                let offset = sql
                    .char_indices()
                    .nth((*position as usize).saturating_sub(1))
                    .map_or(sql.len(), |(i, _)| i);
                let end = sql[offset..]
                    .find(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == ')')
                    .map_or(sql.len(), |i| offset + i.max(1));
                Some((offset, end - offset).into())
            }
            _ => None,
        };
        let help = match (db.detail(), db.hint()) {
            (Some(detail), Some(hint)) => Some(format!("{detail}\n{hint}")),
            (Some(text), None) | (None, Some(text)) => Some(text.to_owned()),
            (None, None) => None,
        };
        DbError::Sql(Box::new(SqlError {
            message: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            code: Some(db.code().code().to_owned()),
            source_code: miette::NamedSource::new(file, sql.to_owned()),
            span,
            help,
        }))
    }

    /// Like [`DbError::in_file`], for an error PostgreSQL gave no place for:
    /// `statement` is the range of the statement found to fail, shown with
    /// its line and a help line.
    pub fn in_statement(
        error: tokio_postgres::Error,
        file: &str,
        sql: &str,
        statement: std::ops::Range<usize>,
    ) -> DbError {
        let line = sql[..statement.start].matches('\n').count() + 1;
        let mut built = DbError::in_file(error, file, sql);
        if let DbError::Sql(sql_error) = &mut built
            && sql_error.span.is_none()
        {
            sql_error.span = Some((statement.start, statement.len()).into());
            let help = format!(
                "the statement at line {line} failed on the data it met; the row or value is above"
            );
            sql_error.help = Some(match sql_error.help.take() {
                Some(detail) => format!("{detail}\n{help}"),
                None => help,
            });
        }
        built
    }

    /// Whether PostgreSQL said where in the SQL the error is.
    pub fn has_position(error: &tokio_postgres::Error) -> bool {
        error
            .as_db_error()
            .is_some_and(|db| db.position().is_some())
    }

    /// Whether retrying may help: a lost connection, a serialization failure,
    /// a deadlock, a server starting up or shutting down.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Connect { reason, .. } => {
                !reason.contains("password") && !reason.contains("does not exist")
            }
            DbError::Query {
                code: Some(code), ..
            } => transient_code(code),
            DbError::Sql(error) => error.code.as_deref().is_some_and(transient_code),
            _ => false,
        }
    }
}

/// Serialization failure, deadlock, server shutting down or starting, lost connection.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006"
    )
}

/// An error of SQL read from a file, shown at its place in the file.
#[derive(Debug, Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(flow::db::sql))]
pub struct SqlError {
    pub message: String,
    pub code: Option<String>,
    #[source_code]
    pub source_code: miette::NamedSource<String>,
    #[label("here")]
    pub span: Option<miette::SourceSpan>,
    #[help]
    pub help: Option<String>,
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => {
                let mut help = db.hint().map(str::to_owned);
                if let Some(detail) = db.detail() {
                    help = Some(match help {
                        Some(hint) => format!("{detail}\n{hint}"),
                        None => detail.to_owned(),
                    });
                }
                // Where it happened: `COPY parcels, line 3, column area: "abc"`.
                if let Some(place) = db.where_() {
                    help = Some(match help {
                        Some(help) => format!("{help}\nwhere: {place}"),
                        None => format!("where: {place}"),
                    });
                }
                DbError::Query {
                    message: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                    code: Some(db.code().code().to_owned()),
                    help,
                }
            }
            None => DbError::Query {
                message: error.to_string(),
                code: error.code().map(|c| c.code().to_owned()),
                help: None,
            },
        }
    }
}
