//! The tables a SQL file reads and writes, found by scanning its tokens: enough
//! to order transform files by what they need, without a full SQL parser.
//!
//! Writes: `INSERT INTO t`, `UPDATE t`, `DELETE FROM t`, `TRUNCATE t`,
//! `MERGE INTO t`, `CREATE TABLE t`, `ALTER TABLE t`. Reads: `FROM t`, `JOIN t`,
//! `USING t`, except the names of `WITH` queries. Comments, string literals and
//! dollar-quoted bodies are skipped. A file may also say `-- flow: after x.sql`.

use std::collections::BTreeSet;

/// What one file touches. Names are lower-cased unless quoted, and keep
/// their schema when written with one (`model.parcels`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub reads: BTreeSet<String>,
    pub writes: BTreeSet<String>,
    /// Files named by `-- flow: after name.sql` comments.
    pub after: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokens(sql: &str, after: &mut Vec<String>) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            let comment: String = chars[i + 2..end].iter().collect();
            if let Some(names) = comment.trim().strip_prefix("flow: after ") {
                after.extend(
                    names
                        .split([',', ' '])
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                );
            }
            i = end;
        } else if c == '/' && next == Some('*') {
            i = find(&chars, i + 2, &['*', '/']).map_or(chars.len(), |p| p + 2);
        } else if c == '\'' {
            i = skip_quoted(&chars, i, '\'');
        } else if c == '"' {
            let end = skip_quoted(&chars, i, '"');
            let text: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
                .iter()
                .collect();
            out.push(Token::Quoted(text.replace("\"\"", "\"")));
            i = end;
        } else if c == '$' {
            // A dollar quote: `$$ ... $$` or `$tag$ ... $tag$`; `$1` is a parameter.
            let tag_end = chars[i + 1..]
                .iter()
                .position(|&c| !(c.is_alphanumeric() || c == '_'))
                .map(|p| i + 1 + p);
            match tag_end {
                Some(end) if chars[end] == '$' && !chars[i + 1].is_ascii_digit() => {
                    let tag: Vec<char> = chars[i..=end].to_vec();
                    i = find(&chars, end + 1, &tag).map_or(chars.len(), |p| p + tag.len());
                }
                _ => i += 1,
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            out.push(Token::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn find(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(needle.len() - 1)).find(|&p| chars[p..].starts_with(needle))
}

/// The index after a quoted run that starts at `start`; doubled quotes stay inside.
fn skip_quoted(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w == word)
}

/// A possibly qualified name starting at `i`: its text and the index after it.
fn name_at(tokens: &[Token], mut i: usize, call_ok: bool) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    loop {
        match tokens.get(i)? {
            Token::Word(w) => parts.push(w.clone()),
            Token::Quoted(q) => parts.push(q.clone()),
            Token::Punct(_) => return None,
        }
        i += 1;
        if tokens.get(i) == Some(&Token::Punct('.')) {
            i += 1;
        } else {
            break;
        }
    }
    // A function call (`FROM generate_series(...)`) is not a table.
    if !call_ok && tokens.get(i) == Some(&Token::Punct('(')) {
        return None;
    }
    Some((parts.join("."), i))
}

const NOT_TABLES: &[&str] = &["lateral", "only", "select", "values", "if", "table"];

/// Scans a SQL file.
pub fn scan(sql: &str) -> Tables {
    let mut result = Tables::default();
    let tokens = tokens(sql, &mut result.after);
    let mut ctes = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        let next = tokens.get(i + 1);
        let write_at = match word.as_str() {
            "insert" | "merge" if is_word(next, "into") => Some(i + 2),
            "update" => Some(i + 1),
            "delete" if is_word(next, "from") => Some(i + 2),
            "truncate" => Some(if is_word(next, "table") { i + 2 } else { i + 1 }),
            "alter" if is_word(next, "table") => Some(i + 2),
            "create" => {
                let mut j = i + 1;
                while matches!(tokens.get(j), Some(Token::Word(w)) if ["unlogged", "temp", "temporary", "or", "replace"].contains(&w.as_str()))
                {
                    j += 1;
                }
                if is_word(tokens.get(j), "table") {
                    j += 1;
                    if is_word(tokens.get(j), "if") {
                        j += 3;
                    }
                    Some(j)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(mut at) = write_at {
            if is_word(tokens.get(at), "only") || is_word(tokens.get(at), "if") {
                at += if is_word(tokens.get(at), "if") { 2 } else { 1 };
            }
            if let Some((name, _)) = name_at(&tokens, at, true) {
                result.writes.insert(name);
            }
            continue;
        }
        if word == "as"
            && i > 0
            && (tokens.get(i + 1) == Some(&Token::Punct('('))
                || is_word(tokens.get(i + 1), "materialized")
                || is_word(tokens.get(i + 1), "not"))
            && let Some(Token::Word(name) | Token::Quoted(name)) = tokens.get(i - 1)
            && (is_word(tokens.get(i.wrapping_sub(2)), "with")
                || tokens.get(i.wrapping_sub(2)) == Some(&Token::Punct(','))
                || is_word(tokens.get(i.wrapping_sub(2)), "recursive"))
        {
            ctes.insert(name.clone());
        }
        if matches!(word.as_str(), "from" | "join" | "using")
            && !(word == "from" && i > 0 && is_word(tokens.get(i - 1), "delete"))
            && !matches!(next, Some(Token::Word(w)) if NOT_TABLES.contains(&w.as_str()))
            && let Some((name, _)) = name_at(&tokens, i + 1, false)
        {
            result.reads.insert(name);
        }
    }
    result.reads.retain(|name| !ctes.contains(name));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn finds_reads_and_writes() {
        let tables = scan(
            "-- flow: after zoning.sql\n\
             WITH big AS (SELECT * FROM source.parcels WHERE area > 10)\n\
             INSERT INTO model.parcels (id, zone)\n\
             SELECT b.id, z.class FROM big b JOIN \"Model\".\"Zoning\" z ON ST_Intersects(b.geom, z.geom)\n\
             , generate_series(1, 3) /* FROM hidden */ WHERE b.note <> 'FROM fake';\n\
             UPDATE model.stats SET n = 1;\n\
             DELETE FROM model.old USING source.gone g WHERE true;\n\
             CREATE TABLE IF NOT EXISTS model.tmp AS SELECT $$ FROM nothing $$ FROM lookup;",
        );
        assert_eq!(
            tables.writes,
            set(&["model.parcels", "model.stats", "model.old", "model.tmp"])
        );
        assert_eq!(
            tables.reads,
            set(&["source.parcels", "Model.Zoning", "source.gone", "lookup"])
        );
        assert_eq!(tables.after, vec!["zoning.sql"]);
    }

    #[test]
    fn survives_unterminated_text() {
        let tables = scan("SELECT 'open FROM x; /* never closed");
        assert!(tables.reads.is_empty());
        let tables = scan("INSERT INTO \"unterminated");
        assert_eq!(tables.writes.len(), 1);
        let _ = scan("$tag$ unclosed");
        let _ = scan("$");
        let _ = scan("-");
    }
}
