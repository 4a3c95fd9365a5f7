//! The columns of a CSV file and their PostgreSQL types, read from its header
//! and inferred from every value: `boolean`, `bigint`, `double precision`,
//! `date`, `geometry(Type, SRID)` for hex EWKB or (E)WKT, else `text`. Empty
//! values are NULL and say nothing about the type.

use std::path::Path;

/// What the values of a column can still be.
#[derive(Debug, Clone)]
struct Candidates {
    boolean: bool,
    bigint: bool,
    double: bool,
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
            double: true,
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
        self.bigint &= value.parse::<i64>().is_ok();
        self.double &= value.parse::<f64>().is_ok_and(f64::is_finite);
        self.date &= value.len() == 10
            && value.as_bytes()[4] == b'-'
            && value.as_bytes()[7] == b'-'
            && value.replace('-', "").parse::<u32>().is_ok();
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
        } else if self.double {
            "double precision".into()
        } else if self.date {
            "date".into()
        } else if let (true, Some(geometry)) = (self.geometry_possible, &self.geometry) {
            format!("geometry({}, {})", geometry.kind, geometry.srid)
        } else {
            "text".into()
        }
    }
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
        .flexible(false)
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
    let mut candidates = vec![Candidates::default(); header.len()];
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| e.to_string())? {
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
                "double precision",
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
