//! Names that come from data (file names, CSV headers, DBF fields) made into
//! PostgreSQL identifiers, one documented way everywhere.
//!
//! PostgreSQL keeps the first 63 bytes of a name and drops the rest in
//! silence, so two long names that share their first 63 bytes would be one
//! table or one column. Here a name of at most 63 bytes is kept as it is
//! (quoting keeps case, spaces and any character); a longer one is cut to 54
//! bytes (at a character boundary) and given `_` and eight hex digits of a
//! hash of the whole name: distinct names stay distinct, and the same name
//! always maps to the same identifier, run after run.
//!
//! In one list of columns, a name seen before (exactly, after that mapping)
//! is given `_2`, `_3`, ... (the first free one), so no value is dropped and
//! the mapping is predictable. A name PostgreSQL cannot hold at all (empty,
//! or with a NUL character) is an error naming it.

/// The most bytes of a name PostgreSQL keeps (`NAMEDATALEN - 1`).
pub const MAX_NAME: usize = 63;

/// Bytes kept of a long name, before its `_` and hash.
const KEPT: usize = MAX_NAME - 9;

/// Why a name cannot be an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Nul,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => f.write_str("it is empty"),
            NameError::Nul => {
                f.write_str("it holds a NUL character, which PostgreSQL names cannot")
            }
        }
    }
}

/// A 32-bit FNV-1a hash: stable across versions and machines, unlike std's.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// `name` as an identifier PostgreSQL keeps whole: itself when it fits in 63
/// bytes, else its first 54 bytes, `_` and a hash of all of it.
pub fn fit(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    Ok(fit_with(name, ""))
}

/// `name` with `suffix` after it, the whole kept within 63 bytes: a long
/// name is cut (and hashed) so that the suffix stays.
pub fn fit_with(name: &str, suffix: &str) -> String {
    if name.len() + suffix.len() <= MAX_NAME {
        return format!("{name}{suffix}");
    }
    let mut end = KEPT.saturating_sub(suffix.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{:08x}{suffix}", &name[..end], fnv1a(name.as_bytes()))
}

/// A column name for each of `names`, in order: each fitted, and repeated
/// ones given the first free `_2`, `_3`, ... The error names the position
/// (from 0) of a name that cannot be one.
pub fn columns<S: AsRef<str>>(names: &[S]) -> Result<Vec<String>, (usize, NameError)> {
    let fitted: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(at, name)| fit(name.as_ref()).map_err(|e| (at, e)))
        .collect::<Result<_, _>>()?;
    let mut taken: std::collections::HashSet<String> = fitted.iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(fitted.len());
    for name in fitted {
        if seen.insert(name.clone()) {
            out.push(name);
            continue;
        }
        let unique = (2..)
            .map(|n| fit_with(&name, &format!("_{n}")))
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or_default();
        taken.insert(unique.clone());
        seen.insert(unique.clone());
        out.push(unique);
    }
    Ok(out)
}

/// The first table two inputs would both write, with the two inputs, of
/// `(table, input)` pairs in order.
pub fn shared<'a>(
    tables: impl IntoIterator<Item = (String, &'a str)>,
) -> Option<(String, &'a str, &'a str)> {
    let mut seen: std::collections::HashMap<String, &'a str> = std::collections::HashMap::new();
    for (table, input) in tables {
        if let Some(first) = seen.get(&table) {
            return Some((table, first, input));
        }
        seen.insert(table, input);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_as_they_are() {
        let name = "Größe; DROP TABLE x; \"quoted\"";
        assert_eq!(fit(name).as_deref(), Ok(name));
        assert_eq!(fit(&"a".repeat(63)).map(|n| n.len()), Ok(63));
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = format!("{}_january", "x".repeat(60));
        let b = format!("{}_february", "x".repeat(60));
        let (fa, fb) = (fit(&a).expect("a"), fit(&b).expect("b"));
        assert!(fa.len() <= MAX_NAME && fb.len() <= MAX_NAME);
        assert_ne!(fa, fb);
        assert_eq!(
            fa,
            fit(&a).expect("again"),
            "the same name maps the same way"
        );
        assert!(fa.starts_with(&"x".repeat(54)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let name = "é".repeat(40);
        let fitted = fit(&name).expect("fits");
        assert!(fitted.len() <= MAX_NAME);
        assert!(fitted.starts_with(&"é".repeat(27)));
    }

    #[test]
    fn suffixes_survive_a_cut() {
        let long = "t".repeat(70);
        let rejects = fit_with(&long, "_rejects");
        assert!(rejects.ends_with("_rejects") && rejects.len() <= MAX_NAME);
        assert_ne!(rejects, fit(&long).expect("fits"));
    }

    #[test]
    fn repeated_columns_get_the_first_free_number() {
        assert_eq!(
            columns(&["a", "b", "a", "a_2", "a"]).expect("columns"),
            ["a", "b", "a_3", "a_2", "a_4"]
        );
        let long = "c".repeat(80);
        let out = columns(&[long.as_str(), long.as_str()]).expect("columns");
        assert_ne!(out[0], out[1]);
        assert!(out.iter().all(|c| c.len() <= MAX_NAME));
    }

    #[test]
    fn two_inputs_of_one_table_are_found() {
        let pairs = [
            ("a".to_owned(), "a.csv"),
            ("b".to_owned(), "b.csv"),
            ("a".to_owned(), "x/a.csv"),
        ];
        assert_eq!(shared(pairs), Some(("a".to_owned(), "a.csv", "x/a.csv")));
        assert_eq!(shared([("a".to_owned(), "a.csv")]), None);
    }

    #[test]
    fn names_postgresql_cannot_hold_are_errors() {
        assert_eq!(columns(&["a", ""]), Err((1, NameError::Empty)));
        assert_eq!(columns(&["a\0b"]), Err((0, NameError::Nul)));
    }
}
