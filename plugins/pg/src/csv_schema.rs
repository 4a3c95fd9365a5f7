//! The columns of a CSV file and their PostgreSQL types, read from its header
//! and inferred from every value: `boolean`, `bigint`, `numeric`, `date`,
//! `geometry(Type, SRID)` for hex EWKB or (E)WKT, else `text`. Empty values
//! are NULL and say nothing about the type.
//!
//! A column gets a type other than text only if every value reads back from
//! PostgreSQL as the very text the file holds: `069`, `+5`, `1e3` or `-0`
//! stay text (a code keeps its zeros), `1.10` is `numeric` (which keeps its
//! scale) and never a float, a date must be a real date. Booleans are
//! `true`/`false` or `t`/`f`; geometry needs every value to parse as one.
//!
//! A file written by `shp:convert` has its columns' types beside it
//! (`<file>.csv.types`, from the `.dbf`): those are taken as they are.

use std::path::Path;

/// What the values of a column can still be.
#[derive(Debug, Clone)]
struct Candidates {
    boolean: bool,
    bigint: bool,
    numeric: bool,
    date: bool,
    geometry: Option<GeometryKind>,
    geometry_possible: bool,
    seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GeometryKind {
    /// `Point`, `MultiPolygon`, ... with `Z`/`M`; `Geometry` when mixed.
    kind: String,
    srid: u32,
}

impl Default for Candidates {
    fn default() -> Self {
        Self {
            boolean: true,
            bigint: true,
            numeric: true,
            date: true,
            geometry: None,
            geometry_possible: true,
            seen: false,
        }
    }
}

impl Candidates {
    fn observe(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        self.seen = true;
        let lower = value.to_ascii_lowercase();
        self.boolean &= matches!(lower.as_str(), "true" | "false" | "t" | "f");
        self.bigint &= value.parse::<i64>().is_ok_and(|n| n.to_string() == value);
        self.numeric &= plain_decimal(value);
        self.date &= real_date(value);
        if self.geometry_possible {
            match geometry_kind(value) {
                Some(kind) => {
                    self.geometry = Some(match self.geometry.take() {
                        None => kind,
                        Some(previous) if previous == kind => previous,
                        Some(previous) => GeometryKind {
                            kind: "Geometry".into(),
                            srid: if previous.srid == kind.srid {
                                kind.srid
                            } else {
                                0
                            },
                        },
                    });
                }
                None => self.geometry_possible = false,
            }
        }
    }

    fn sql_type(&self) -> String {
        if !self.seen {
            return "text".into();
        }
        if self.boolean {
            "boolean".into()
        } else if self.bigint {
            "bigint".into()
        } else if self.numeric {
            "numeric".into()
        } else if self.date {
            "date".into()
        } else if let (true, Some(geometry)) = (self.geometry_possible, &self.geometry) {
            format!("geometry({}, {})", geometry.kind, geometry.srid)
        } else {
            "text".into()
        }
    }
}

/// A decimal that PostgreSQL's `numeric` writes back as it is: an optional
/// minus, no leading zeros (but `0.5`), digits after an optional point, no
/// negative zero.
fn plain_decimal(value: &str) -> bool {
    let body = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole) && (whole == "0" || !whole.starts_with('0'));
    let fraction_ok = fraction.is_none_or(digits);
    let zero = body.bytes().all(|b| b == b'0' || b == b'.');
    whole_ok && fraction_ok && !(value.starts_with('-') && zero)
}

/// `YYYY-MM-DD`, a date that exists.
fn real_date(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        value[..4].parse::<u32>(),
        value[5..7].parse::<u32>(),
        value[8..].parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    };
    year > 0 && day >= 1 && day <= days
}

/// The column types written beside a CSV file (`<file>.types`, a CSV of
/// `column,type`), if there are any.
fn written_types(path: &Path) -> Option<Vec<(String, String)>> {
    let mut name = path.as_os_str().to_owned();
    name.push(".types");
    let mut reader = csv::Reader::from_path(std::path::PathBuf::from(name)).ok()?;
    reader
        .records()
        .map(|r| {
            r.ok()
                .and_then(|r| Some((r.get(0)?.to_owned(), r.get(1)?.to_owned())))
        })
        .collect()
}

/// The geometry type and SRID of a hex EWKB or (E)WKT value, if it is one.
fn geometry_kind(value: &str) -> Option<GeometryKind> {
    const NAMES: [&str; 7] = [
        "Point",
        "LineString",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    ];
    let bytes = value.as_bytes();
    if bytes.len() >= 18
        && bytes.len().is_multiple_of(2)
        && (value.starts_with("01") || value.starts_with("00"))
        && value.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let byte = |i: usize| u8::from_str_radix(&value[i * 2..i * 2 + 2], 16).ok();
        let little = byte(0)? == 1;
        let word = |at: usize| -> Option<u32> {
            let b = [byte(at)?, byte(at + 1)?, byte(at + 2)?, byte(at + 3)?];
            Some(if little {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        };
        let header = word(1)?;
        let base = (header & 0x0fff_ffff) as usize;
        let name = NAMES.get(base.checked_sub(1)?)?;
        let srid = if header & 0x2000_0000 != 0 {
            word(5)?
        } else {
            0
        };
        let mut kind = (*name).to_owned();
        if header & 0x8000_0000 != 0 {
            kind.push('Z');
        }
        if header & 0x4000_0000 != 0 {
            kind.push('M');
        }
        return Some(GeometryKind { kind, srid });
    }
    let (srid, wkt) = match value
        .strip_prefix("SRID=")
        .and_then(|rest| rest.split_once(';'))
    {
        Some((srid, wkt)) => (srid.parse().ok()?, wkt),
        None => (0, value),
    };
    let upper = wkt.trim_start().to_ascii_uppercase();
    let name = NAMES
        .iter()
        .rev()
        .find(|name| upper.starts_with(&name.to_ascii_uppercase()))?;
    let rest = upper[name.len()..].trim_start();
    let mut kind = (*name).to_owned();
    let body = if let Some(body) = rest.strip_prefix("ZM") {
        kind.push_str("ZM");
        body
    } else if let Some(body) = rest.strip_prefix('Z') {
        kind.push('Z');
        body
    } else if let Some(body) = rest.strip_prefix('M') {
        kind.push('M');
        body
    } else {
        rest
    };
    // `linestring1` is a name, not a geometry: WKT goes on with `(` or EMPTY.
    let body = body.trim_start();
    (body.starts_with('(') || body == "EMPTY").then_some(GeometryKind { kind, srid })
}

/// The header and the inferred type of each column; declared types win.
pub fn infer(path: &Path, declared: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // A row with too many or too few fields says nothing of the types:
        // the load rejects it (or fails on it) with its line.
        .flexible(true)
        .from_path(path)
        .map_err(|e| e.to_string())?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err("it has no header line".into());
    }
    let names = flow_engine::flow_db::names::columns(&header).map_err(|(at, error)| {
        format!(
            "column {} of its header (`{}`) cannot be a column name: {error}",
            at + 1,
            header[at].escape_debug()
        )
    })?;
    let types = written_types(path).unwrap_or_default();
    let mut candidates = vec![Candidates::default(); header.len()];
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| e.to_string())? {
        if record.len() != header.len() {
            continue;
        }
        for (value, candidate) in record.iter().zip(candidates.iter_mut()) {
            candidate.observe(value);
        }
    }
    Ok(header
        .into_iter()
        .zip(names)
        .zip(candidates)
        .map(|((written, name), candidate)| {
            let kind = declared
                .iter()
                .chain(&types)
                .find(|(d, _)| *d == name || *d == written)
                .map_or_else(|| candidate.sql_type(), |(_, t)| t.clone());
            (name, kind)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_inferred_from_every_value() {
        let dir = std::env::temp_dir().join(format!("flow-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("parcels.csv");
        std::fs::write(
            &path,
            "id,area,flag,day,name,geom,shape,empty\n\
             1,10,true,2024-01-31,a,0101000020E6100000000000000000F03F0000000000000040,POINT(1 2),\n\
             2,2.5,f,2024-02-01,b b,0101000020E6100000000000000000F03F0000000000000040,\"SRID=3857;POLYGON((0 0,1 0,1 1,0 0))\",\n",
        )
        .expect("csv");
        let columns = infer(&path, &[("name".into(), "varchar(10)".into())]).expect("inferred");
        let types: Vec<&str> = columns.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "bigint",
                "numeric",
                "boolean",
                "date",
                "varchar(10)",
                "geometry(Point, 4326)",
                "geometry(Geometry, 0)",
                "text"
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod round_trip {
    use super::{plain_decimal, real_date};

    #[test]
    fn only_values_that_read_back_as_written_leave_text() {
        for kept in ["0", "12", "-3", "0.5", "1.10", "-0.25", "120.50"] {
            assert!(plain_decimal(kept), "{kept}");
        }
        for changed in [
            "069", "000107", "+5", "1e3", "-0", "-0.0", ".5", "5.", "1,5", "NaN", "",
        ] {
            assert!(!plain_decimal(changed), "{changed}");
        }
        assert!(real_date("2024-02-29"));
        assert!(!real_date("2023-02-29"));
        assert!(!real_date("2024-13-01"));
    }
}

#[cfg(test)]
mod wkt {
    use super::geometry_kind;

    #[test]
    fn names_that_start_like_a_geometry_are_text() {
        for text in ["linestring1", "Point of sale", "polygonal", "MULTIPOINTS"] {
            assert!(geometry_kind(text).is_none(), "{text}");
        }
        for (wkt, kind) in [
            ("POINT(1 2)", "Point"),
            ("LineString Z (0 0 1, 1 1 2)", "LineStringZ"),
            (
                "MULTIPOLYGON ZM (((0 0 0 0,1 0 0 0,1 1 0 0,0 0 0 0)))",
                "MultiPolygonZM",
            ),
            ("POINT EMPTY", "Point"),
        ] {
            assert_eq!(
                geometry_kind(wkt).map(|k| k.kind),
                Some(kind.to_owned()),
                "{wkt}"
            );
        }
    }
}
