//! The statements of a SQL file, by their place in it: split at semicolons
//! outside strings (`'...'`, `E'...'`), quoted names (`"..."`), dollar
//! quotes (`$tag$...$tag$`) and comments (`--`, `/* */`, nested). Used to
//! find which statement of a file failed when PostgreSQL does not say where
//! (a runtime error: a value too long, a division by zero, a broken key).

use std::ops::Range;

/// The byte ranges of the statements of `sql`, without the semicolons and
/// leaving out blanks and comments between them.
pub fn statements(sql: &str) -> Vec<Range<usize>> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let rest = &sql[i..];
        if rest.starts_with("--") {
            i += rest.find('\n').map_or(rest.len(), |n| n + 1);
            continue;
        }
        if rest.starts_with("/*") {
            let mut depth = 0;
            let mut j = i;
            while j < bytes.len() {
                if sql[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if sql[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = j;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b';' {
            if let Some(s) = start.take() {
                found.push(s..i);
            }
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        match b {
            b'\'' | b'"' => {
                let quote = b;
                let mut j = i + 1;
                while j < bytes.len() {
                    if bytes[j] == quote {
                        if bytes.get(j + 1) == Some(&quote) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    // E'...' strings escape with backslashes.
                    if quote == b'\''
                        && bytes[j] == b'\\'
                        && i > 0
                        && matches!(bytes[i - 1], b'e' | b'E')
                    {
                        j += 2;
                        continue;
                    }
                    j += 1;
                }
                i = j + 1;
            }
            b'$' => {
                let tag_end = rest[1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|n| n + 1);
                match tag_end {
                    Some(end) if rest.as_bytes().get(end) == Some(&b'$') => {
                        let tag = &rest[..=end];
                        let body = &rest[tag.len()..];
                        i += tag.len() + body.find(tag).map_or(body.len(), |n| n + tag.len());
                    }
                    _ => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    if let Some(s) = start {
        let end = sql.trim_end().len().max(s);
        found.push(s..end);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        statements(sql).into_iter().map(|r| &sql[r]).collect()
    }

    #[test]
    fn semicolons_inside_strings_names_dollar_quotes_and_comments_do_not_split() {
        let sql = "-- a; comment\nINSERT INTO t VALUES ('a;b', \"x;y\");\n/* c; /* nested; */ */\nDO $f$ BEGIN PERFORM 1; END $f$;\nSELECT E'it\\'s; here'\n";
        assert_eq!(
            texts(sql),
            [
                "INSERT INTO t VALUES ('a;b', \"x;y\")",
                "DO $f$ BEGIN PERFORM 1; END $f$",
                "SELECT E'it\\'s; here'"
            ]
        );
        assert_eq!(texts("SELECT $1;SELECT 2"), ["SELECT $1", "SELECT 2"]);
        assert!(texts("  -- only a comment\n").is_empty());
    }
}
