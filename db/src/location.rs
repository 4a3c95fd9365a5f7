use std::fmt;

use crate::DbError;

/// Where a database is, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// In the cluster flow starts itself, under this database name.
    Embedded { database: String },
    /// A server given by URL. The libpq environment (`PGHOST`, `PGUSER`,
    /// `PGPASSWORD`, ...) fills what the URL leaves out.
    Url(String),
    /// A server reached through a pooler in transaction mode (PgBouncer's
    /// `pool_mode = transaction`): no session outlives a transaction, so
    /// what needs one (advisory locks, `LISTEN`, `pg_dump`) goes to `direct`,
    /// the server's own URL, or is refused without it.
    Pooled { url: String, direct: Option<String> },
}

impl Location {
    /// Reads a configured value. `database` names the database inside the
    /// embedded cluster when the value is `embedded`.
    pub fn parse(value: &str, database: &str) -> Result<Self, DbError> {
        let value = value.trim();
        if value.is_empty() || value == "embedded" {
            return Ok(Location::Embedded {
                database: database.to_owned(),
            });
        }
        if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
            return Err(DbError::Location {
                value: redact(value),
                reason: "it is neither `embedded` nor a postgres:// URL".into(),
            });
        }
        let url = url::Url::parse(value).map_err(|e| DbError::Location {
            value: redact(value),
            reason: e.to_string(),
        })?;
        // `pool_mode=transaction`: a pooler's URL (flow's own parameter,
        // named after PgBouncer's setting; taken out before connecting).
        match url.query_pairs().find(|(k, _)| k == "pool_mode") {
            Some((_, mode)) if mode == "transaction" => Ok(Location::Pooled {
                url: value.to_owned(),
                direct: None,
            }),
            Some((_, mode)) if mode != "session" => Err(DbError::Location {
                value: redact(value),
                reason: format!("`pool_mode={mode}` is neither `session` nor `transaction`"),
            }),
            _ => Ok(Location::Url(value.to_owned())),
        }
    }

    /// A location behind a pooler in transaction mode: `url` the pooler's,
    /// `direct` the server's own, both URLs.
    pub fn pooled(url: &str, direct: Option<&str>, database: &str) -> Result<Self, DbError> {
        let url_only = |value: &str| match Self::parse(value, database)? {
            Location::Url(url) | Location::Pooled { url, .. } => Ok(url),
            _ => Err(DbError::Location {
                value: redact(value),
                reason: "a pooler and the server behind it are given by URL".into(),
            }),
        };
        Ok(Location::Pooled {
            url: url_only(url)?,
            direct: direct.map(url_only).transpose()?,
        })
    }

    /// The URL a program of its own (a plugin, with its own driver) is
    /// given: behind a pooler in transaction mode the server's own
    /// (`direct`) when there is one, since such a program may rely on a
    /// session, else the pooler's without flow's `pool_mode` (libpq refuses
    /// parameters it does not know). None for the embedded cluster.
    pub fn url_for_programs(&self) -> Option<String> {
        match self {
            Location::Embedded { .. } => None,
            Location::Url(url) => Some(url.clone()),
            Location::Pooled {
                direct: Some(direct),
                ..
            } => Some(direct.clone()),
            Location::Pooled { url, direct: None } => {
                let mut parsed = url::Url::parse(url).ok()?;
                let kept: Vec<(String, String)> = parsed
                    .query_pairs()
                    .filter(|(k, _)| k != "pool_mode")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if kept.is_empty() {
                    parsed.set_query(None);
                } else {
                    parsed.query_pairs_mut().clear().extend_pairs(kept);
                }
                Some(parsed.to_string())
            }
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Location::Embedded { .. })
    }
}

/// The URL with its password replaced by `***`.
pub fn redact(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let secret = k == "password" || k == "sslpassword";
                    (
                        k.into_owned(),
                        if secret {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => match value.find('@') {
            Some(at) => format!("***{}", &value[at..]),
            None => value.to_owned(),
        },
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Embedded { database } => write!(f, "embedded ({database})"),
            Location::Url(url) => f.write_str(&redact(url)),
            Location::Pooled { url, direct } => {
                write!(f, "{} (pooled, transaction mode", redact(url))?;
                match direct {
                    Some(direct) => write!(f, "; direct {})", redact(direct)),
                    None => f.write_str(")"),
                }
            }
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooler_in_transaction_mode_is_named_in_the_url_or_beside_it() {
        let pooled = Location::parse(
            "postgres://u:pw@bouncer:6432/api?pool_mode=transaction",
            "api",
        )
        .expect("valid");
        assert!(matches!(pooled, Location::Pooled { direct: None, .. }));
        assert!(!pooled.to_string().contains("pw"));
        let session = Location::parse("postgres://bouncer:6432/api?pool_mode=session", "api");
        assert!(matches!(session, Ok(Location::Url(_))));
        assert!(Location::parse("postgres://bouncer/api?pool_mode=statement", "api").is_err());
        let direct = Location::pooled(
            "postgres://u:pw@bouncer:6432/api",
            Some("postgres://u:pw2@db:5432/api"),
            "api",
        )
        .expect("valid");
        assert!(
            matches!(&direct, Location::Pooled { direct: Some(d), .. } if d.contains("db:5432"))
        );
        assert!(!direct.to_string().contains("pw2"));
        assert!(Location::pooled("embedded", None, "api").is_err());
        // Programs of their own get a URL libpq takes: the direct one, or
        // the pooler's without `pool_mode`.
        assert_eq!(
            direct.url_for_programs().as_deref(),
            Some("postgres://u:pw2@db:5432/api")
        );
        assert_eq!(
            pooled.url_for_programs().as_deref(),
            Some("postgres://u:pw@bouncer:6432/api")
        );
        let with_ssl = Location::parse(
            "postgres://bouncer:6432/api?pool_mode=transaction&sslmode=require",
            "api",
        )
        .expect("valid");
        assert_eq!(
            with_ssl.url_for_programs().as_deref(),
            Some("postgres://bouncer:6432/api?sslmode=require")
        );
    }

    #[test]
    fn passwords_never_show() {
        let location = Location::parse(
            "postgres://ada:s3cret@db.example.com:5432/api?sslmode=require",
            "api",
        )
        .expect("valid");
        let shown = format!("{location} {location:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ada:***@db.example.com"), "{shown}");
        let query = Location::parse("postgres://db/api?password=hunter2", "api").expect("valid");
        assert!(!query.to_string().contains("hunter2"));
    }

    #[test]
    fn embedded_is_the_default() {
        assert_eq!(
            Location::parse("", "flow").expect("valid"),
            Location::Embedded {
                database: "flow".into()
            }
        );
        assert!(Location::parse("mysql://x", "flow").is_err());
        let error = Location::parse("ftp://u:pw@x", "flow")
            .expect_err("invalid")
            .to_string();
        assert!(!error.contains("pw@"), "{error}");
    }
}
