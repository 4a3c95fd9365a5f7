//! API keys, for those who run flows over HTTP (`flow keys`, `flow serve`).
//!
//! A key is `flow_` and 64 hex digits of randomness, shown once when made;
//! the records keep only its SHA-256, with its name, scope, creation and last
//! use. A key's scope is what it may do: `read` (look), `run` (also start
//! and cancel runs), `admin` (everything). A revoked key is kept, marked,
//! so that its name can be used again and its history stays.

use flow_db::DbError;
use sha2::{Digest as _, Sha256};

use super::Records;
pub use super::scope::Scope;

/// A key as the records keep it: never the key itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyRecord {
    pub name: String,
    pub scope: Scope,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// What a presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// A live key whose scope allows what was asked; its name and scope.
    Allowed(String, Scope),
    /// A live key whose scope does not.
    Forbidden(String, Scope),
    /// No live key: unknown, revoked, or not a key at all.
    Unknown,
}

const PREFIX: &str = "flow_";

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Equal in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Records {
    /// Makes a key named `name`; returns the key, which is nowhere else.
    /// A live key of that name is an error.
    pub async fn create_key(&self, name: &str, scope: Scope) -> Result<Option<String>, DbError> {
        let mut random = [0u8; 32];
        getrandom::getrandom(&mut random).map_err(|e| DbError::Command {
            command: "make a key".into(),
            reason: e.to_string(),
        })?;
        let key: String = std::iter::once(PREFIX.to_owned())
            .chain(random.iter().map(|b| format!("{b:02x}")))
            .collect();
        let made = self
            .database
            .client()
            .await?
            .execute(
                "INSERT INTO _flow.keys (name, scope, hash) VALUES ($1, $2, $3)
                 ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING",
                &[&name, &scope.as_str(), &hash(&key)],
            )
            .await?;
        Ok((made == 1).then_some(key))
    }

    /// Every key, live ones first, by name.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, DbError> {
        let rows = self
            .database
            .client()
            .await?
            .query(
                "SELECT name, scope,
                        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                        to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                        to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                 FROM _flow.keys ORDER BY revoked_at IS NOT NULL, name, id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| KeyRecord {
                name: row.get(0),
                scope: Scope::parse(row.get(1)).unwrap_or(Scope::Read),
                created_at: row.get(2),
                last_used_at: row.get(3),
                revoked_at: row.get(4),
            })
            .collect())
    }

    /// Revokes the live key named `name`; whether there was one.
    pub async fn revoke_key(&self, name: &str) -> Result<bool, DbError> {
        let revoked = self
            .database
            .client()
            .await?
            .execute(
                "UPDATE _flow.keys SET revoked_at = clock_timestamp()
                 WHERE name = $1 AND revoked_at IS NULL",
                &[&name],
            )
            .await?;
        Ok(revoked > 0)
    }

    /// Whether `presented` is a live key that may do what `needed` allows;
    /// a live key's last use is recorded, to the minute (a server checks a
    /// key on every request: one write per request would serialize them).
    pub async fn check_key(&self, presented: &str, needed: Scope) -> Result<KeyCheck, DbError> {
        if !presented.starts_with(PREFIX) {
            return Ok(KeyCheck::Unknown);
        }
        let wanted = hash(presented);
        let row = self
            .database
            .client()
            .await?
            .query_opt(
                "WITH used AS (
                   UPDATE _flow.keys SET last_used_at = clock_timestamp()
                   WHERE hash = $1 AND revoked_at IS NULL
                     AND (last_used_at IS NULL
                          OR last_used_at < clock_timestamp() - interval '1 minute'))
                 SELECT name, scope, hash FROM _flow.keys
                 WHERE hash = $1 AND revoked_at IS NULL",
                &[&wanted],
            )
            .await?;
        let Some(row) = row else {
            return Ok(KeyCheck::Unknown);
        };
        let stored: Vec<u8> = row.get(2);
        if !same(&stored, &wanted) {
            return Ok(KeyCheck::Unknown);
        }
        let name: String = row.get(0);
        let scope = Scope::parse(row.get(1)).unwrap_or(Scope::Read);
        Ok(if scope.allows(needed) {
            KeyCheck::Allowed(name, scope)
        } else {
            KeyCheck::Forbidden(name, scope)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_equal_bytes_are_the_same() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
