//! A connection from a pool, sending its statements the way a pooler in
//! transaction mode can carry them.
//!
//! tokio-postgres prepares a named statement for every query with parameters
//! (Parse, then Bind and Execute in a second exchange). Behind PgBouncer in
//! transaction mode the two exchanges may reach different servers, and a
//! statement left on a server clashes with another process's of the same
//! name. So every query here goes as one unnamed statement in one exchange
//! (`query_typed`: Parse, Bind, Execute, Sync), its parameters typed from
//! their Rust values, whatever the pooler; and one round trip instead of two.
//!
//! [`Client`] shadows tokio-postgres's `query`, `query_one`, `query_opt` and
//! `execute` with these, so `client.query(...)` is safe everywhere; code
//! generic over clients and transactions takes `&impl Sql`. Inside a
//! transaction a pooler keeps one server, and its `copy_in`/`copy_out` (which
//! prepare) are safe there; a transaction opened by [`Client::transaction`]
//! behind a pooler also carries the run's values (`flow.<name>`), which the
//! server cannot get at connection start through a pooler.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{TryStreamExt as _, pin_mut};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row};

/// The types a parameter is tried as, first match wins: every type
/// tokio-postgres encodes without optional features, integers widest first
/// so that an `i64` is an `int8`, strings as `text`.
const CANDIDATES: &[Type] = &[
    Type::INT8,
    Type::INT4,
    Type::INT2,
    Type::TEXT,
    Type::BOOL,
    Type::FLOAT8,
    Type::FLOAT4,
    Type::OID,
    Type::CHAR,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMP,
    Type::INET,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::INT4_ARRAY,
    Type::INT2_ARRAY,
    Type::BOOL_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT4_ARRAY,
    Type::OID_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
];

/// The PostgreSQL type a value is sent as: the first candidate its `ToSql`
/// accepts. A value none accepts is sent as `text`, which its encoding then
/// refuses with tokio-postgres's own error.
fn type_of(value: &(dyn ToSql + Sync)) -> Type {
    let mut scratch = BytesMut::new();
    CANDIDATES
        .iter()
        .find(|ty| {
            scratch.clear();
            value.to_sql_checked(ty, &mut scratch).is_ok()
        })
        .cloned()
        .unwrap_or(Type::TEXT)
}

fn typed<'a>(params: &[&'a (dyn ToSql + Sync)]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (*p, type_of(*p))).collect()
}

/// Queries that work through a pooler in transaction mode, on a client or
/// inside a transaction.
pub trait Sql: Sync {
    /// The underlying connection, for what these methods do not cover.
    fn connection(&self) -> &tokio_postgres::Client;

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send {
        let client = self.connection();
        let params = typed(params);
        async move { client.query_typed(sql, &params).await }
    }

    fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send {
        let client = self.connection();
        let params = typed(params);
        async move { client.query_typed_one(sql, &params).await }
    }

    fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send {
        let client = self.connection();
        let params = typed(params);
        async move { client.query_typed_opt(sql, &params).await }
    }

    /// The number of rows the statement changed.
    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        let client = self.connection();
        let params = typed(params);
        async move {
            let rows = client.query_typed_raw(sql, params).await?;
            pin_mut!(rows);
            while rows.try_next().await?.is_some() {}
            Ok(rows.rows_affected().unwrap_or(0))
        }
    }

    /// Statements without parameters, in the simple protocol (one exchange).
    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), Error>> + Send {
        self.connection().batch_execute(sql)
    }
}

impl Sql for tokio_postgres::Client {
    fn connection(&self) -> &tokio_postgres::Client {
        self
    }
}

impl Sql for tokio_postgres::Transaction<'_> {
    fn connection(&self) -> &tokio_postgres::Client {
        self.client()
    }
}

impl Sql for deadpool_postgres::Transaction<'_> {
    fn connection(&self) -> &tokio_postgres::Client {
        self.client()
    }
}

impl Sql for deadpool_postgres::ClientWrapper {
    fn connection(&self) -> &tokio_postgres::Client {
        self
    }
}

/// A pooled connection. Derefs to deadpool's; its own `query`, `query_one`,
/// `query_opt`, `execute` and `transaction` come first.
pub struct Client {
    inner: deadpool_postgres::Object,
    /// The run's values, set in each transaction when the database is
    /// behind a pooler in transaction mode (otherwise the connection got
    /// them at start); `Some` exactly then.
    values: Option<Arc<Vec<(String, String)>>>,
}

impl Client {
    pub(crate) fn new(
        inner: deadpool_postgres::Object,
        values: Option<Arc<Vec<(String, String)>>>,
    ) -> Self {
        Self { inner, values }
    }

    /// Takes the connection out of the pool: dropping it closes it.
    pub fn take(this: Self) -> deadpool_postgres::ClientWrapper {
        deadpool_postgres::Object::take(this.inner)
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        Sql::query(self, sql, params).await
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        Sql::query_one(self, sql, params).await
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        Sql::query_opt(self, sql, params).await
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        Sql::execute(self, sql, params).await
    }

    /// A transaction; behind a pooler it starts by setting the run's values
    /// for itself (see [`set_values`]).
    pub async fn transaction(&mut self) -> Result<deadpool_postgres::Transaction<'_>, Error> {
        let values = self.values.clone();
        let transaction = self.inner.transaction().await?;
        set_values(&transaction, values.as_deref()).await?;
        Ok(transaction)
    }

    /// Whether the connection goes through a pooler in transaction mode.
    pub fn is_pooled(&self) -> bool {
        self.values.is_some()
    }

    /// The run's values a transaction of this client must set for itself
    /// (behind a pooler; elsewhere the connection has them from its start):
    /// for [`set_values`] after `build_transaction`.
    pub fn values(&self) -> Option<Arc<Vec<(String, String)>>> {
        self.values.clone()
    }
}

/// Sets the run's `values` (`flow.<name>`, [`Client::values`]) for
/// `transaction` only (`set_config(..., true)`).
pub async fn set_values(
    transaction: &impl Sql,
    values: Option<&Vec<(String, String)>>,
) -> Result<(), Error> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let (names, texts): (Vec<String>, Vec<String>) = values
        .iter()
        .map(|(name, value)| (format!("flow.{name}"), value.clone()))
        .unzip();
    transaction
        .execute(
            "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)",
            &[&names, &texts],
        )
        .await?;
    Ok(())
}

impl Sql for Client {
    fn connection(&self) -> &tokio_postgres::Client {
        &self.inner
    }
}

impl Deref for Client {
    type Target = deadpool_postgres::Object;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed_from_their_values() {
        let text: &str = "a";
        let owned = String::from("b");
        let none: Option<i64> = None;
        let list = vec![String::from("x")];
        let values: [&(dyn ToSql + Sync); 7] = [&1_i64, &1_i32, &text, &owned, &none, &list, &true];
        let types: Vec<Type> = values.iter().map(|v| type_of(*v)).collect();
        assert_eq!(
            types,
            [
                Type::INT8,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT_ARRAY,
                Type::BOOL
            ]
        );
        assert_eq!(type_of(&2.5_f64), Type::FLOAT8);
        assert_eq!(type_of(&7_u32), Type::OID);
        assert_eq!(type_of(&vec![1_u8, 2]), Type::BYTEA);
    }
}
