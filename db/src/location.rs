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
        url::Url::parse(value).map_err(|e| DbError::Location {
            value: redact(value),
            reason: e.to_string(),
        })?;
        Ok(Location::Url(value.to_owned()))
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
