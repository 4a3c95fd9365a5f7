//! Opening a shapefile: its reader, its attributes, its SRID and encoding.

use std::path::Path;

use crate::dbf::{Field, Table, Value};

/// A shapefile ready to be read record by record.
pub struct Opened {
    pub shapes: crate::shapes::Shapes,
    /// The attributes; `None` for a shapefile without its `.dbf`.
    pub table: Option<Table>,
    /// The DBF attributes, in order.
    pub fields: Vec<Field>,
    /// The records the .dbf says it holds (the shapes, without one).
    pub expected: u32,
    pub srid: u32,
    /// What the user should know about the file (SRID, encoding, sidecars).
    pub warnings: Vec<String>,
    pub shape_type: shapefile::ShapeType,
}

/// The name of the geometry column beside `fields`: `geom`, or the first
/// free `geom_2`, `geom_3`, ... when a field is named `geom`.
pub fn geometry_column(fields: &[Field], wanted: &str) -> String {
    let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    names.push(wanted);
    flow_engine::flow_db::names::columns(&names)
        .ok()
        .and_then(|mut all| all.pop())
        .unwrap_or_else(|| wanted.to_owned())
}

/// A sidecar of `shp` (`dbf`, `prj`, ...), in lower or upper case.
pub fn sidecar(shp: &Path, extension: &str) -> Option<std::path::PathBuf> {
    [extension.to_owned(), extension.to_ascii_uppercase()]
        .into_iter()
        .map(|e| shp.with_extension(e))
        .find(|p| p.exists())
}

/// How to read a shapefile: its SRID and text encoding when its `.prj`
/// and `.cpg` do not say (or say wrong), and, when converting, whether
/// geometries are written as WKT rather than EWKB.
#[derive(Debug, Clone)]
pub struct Options {
    pub wkt: bool,
    pub srid: Option<u32>,
    pub encoding: Option<String>,
}

/// Opens `shp` with its .dbf (decoded as `options`, the .cpg or the .dbf's
/// language driver say) and finds its SRID; a .dbf whose count differs from
/// the .shx is refused. Without a .dbf, the geometries alone are read.
pub fn open(shp: &Path, options: &Options) -> Result<Opened, String> {
    let mut warnings = Vec::new();
    let srid = match options.srid {
        Some(srid) => srid,
        None => match sidecar(shp, "prj").map(std::fs::read_to_string) {
            Some(Ok(prj)) => crate::prj::srid(&prj).unwrap_or_else(|| {
                warnings.push("its .prj names a projection flow does not know: SRID 0 written; set `srid` to give it".into());
                0
            }),
            _ => {
                warnings.push("it has no .prj: SRID 0 written; set `srid` to give it".into());
                0
            }
        },
    };
    let table = match sidecar(shp, "dbf") {
        Some(dbf) => Some(Table::open(&dbf, options.encoding.as_deref())?),
        None => {
            warnings.push("it has no .dbf: its geometries are loaded without attributes".into());
            None
        }
    };
    let fields = table.as_ref().map(|t| t.fields.clone()).unwrap_or_default();
    // A record is read field by field, but names a table's columns: a
    // second field of the same name cannot be one.
    for (at, field) in fields.iter().enumerate() {
        if let Some(first) = fields[..at].iter().position(|f| f.name == field.name) {
            return Err(format!(
                "its .dbf has two fields named `{}` (fields {} and {}); rename one (in QGIS, or with `ogr2ogr -sql`)",
                field.name,
                first + 1,
                at + 1
            ));
        }
    }
    let shx = sidecar(shp, "shx");
    let shapes = crate::shapes::Shapes::open(shp, shx.as_deref())?;
    let shape_type = shapes.shape_type;
    let expected = match &table {
        Some(table) => table.records,
        None => shapes
            .count()
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
    };
    // The index (.shx) counts the shapes; without one, the records decide.
    if let (Some(count), Some(_)) = (shapes.count(), &table)
        && count != expected as usize
    {
        return Err(format!(
            "the .dbf has {expected} records and the .shp {count} shapes"
        ));
    }
    Ok(Opened {
        shapes,
        table,
        fields,
        expected,
        srid,
        warnings,
        shape_type,
    })
}

impl Opened {
    /// The next shape and its record's values (record `number`, from 1),
    /// with the problems of its values added to `problems`; `None` after
    /// the last shape.
    pub fn next_row(
        &mut self,
        number: u64,
        problems: &mut Problems,
    ) -> Option<Result<(shapefile::Shape, Vec<Value<'_>>), String>> {
        let shape = match self.shapes.next_shape()? {
            Ok(shape) => shape,
            Err(error) => return Some(Err(format!("record {number}: {error}"))),
        };
        let Some(table) = &mut self.table else {
            return Some(Ok((shape, Vec::new())));
        };
        let record = match table.next_record() {
            Some(Ok(record)) => record,
            Some(Err(error)) => return Some(Err(format!("record {number} of the .dbf: {error}"))),
            None => {
                return Some(Err(format!(
                    "the .dbf ends before record {number}; the .shp goes on"
                )));
            }
        };
        let mut values = Vec::with_capacity(self.fields.len());
        for (index, field) in self.fields.iter().enumerate() {
            let (value, problem) = record.value(index);
            if let Some(problem) = problem {
                problems.add(number, field, &problem.message);
            }
            values.push(value);
        }
        Some(Ok((shape, values)))
    }
}

/// Reads shapes and records side by side: record `number` (from 1) and
/// each problem with its values, reported at most `MAX_PROBLEMS` times a
/// file part.
pub struct Problems {
    pub lines: Vec<String>,
    pub count: u64,
}

/// Problems reported word for word per file part; the rest are counted.
pub const MAX_PROBLEMS: usize = 5;

impl Problems {
    pub fn new() -> Self {
        Self {
            lines: Vec::new(),
            count: 0,
        }
    }

    pub fn add(&mut self, record: u64, field: &Field, message: &str) {
        self.count += 1;
        if self.lines.len() < MAX_PROBLEMS {
            self.lines.push(format!(
                "record {record}, field `{}`: {message}",
                field.name
            ));
        }
    }

    /// The problems as one warning, if any.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let more = self.count - self.lines.len() as u64;
        let mut text = self.lines.join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        Some(text)
    }
}

/// A share of a file's records, read by one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub records: std::ops::Range<usize>,
    /// The only part: read every record, whatever the .dbf says, and check
    /// the count at the end (also for files without an index to seek with).
    pub whole: bool,
    pub first: bool,
    pub last: bool,
}

/// Files with at least this many records are split across cores.
pub const SPLIT_AT: usize = 50_000;

/// How a file of `records` records (`None`: no index to seek with) is read:
/// whole, or in one part per core when it is large.
pub fn parts(records: Option<usize>, cores: usize) -> Vec<Part> {
    let count = match records {
        Some(count) if count >= SPLIT_AT && cores > 1 => count,
        _ => {
            return vec![Part {
                records: 0..records.unwrap_or(0),
                whole: true,
                first: true,
                last: true,
            }];
        }
    };
    let size = count.div_ceil(cores);
    let ranges: Vec<std::ops::Range<usize>> = (0..cores)
        .map(|i| i * size..((i + 1) * size).min(count))
        .filter(|r| !r.is_empty())
        .collect();
    let n = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, records)| Part {
            records,
            whole: false,
            first: i == 0,
            last: i + 1 == n,
        })
        .collect()
}

/// Opens `shp` and positions it at the start of `part`.
pub fn open_part(shp: &Path, options: &Options, part: &Part) -> Result<Opened, String> {
    let mut opened = open(shp, options)?;
    if part.records.start > 0 {
        let failed = |e: String| format!("record {}: {e}", part.records.start + 1);
        opened
            .shapes
            .seek(part.records.start)
            .map_err(|e| failed(e.to_string()))?;
        if let Some(table) = &mut opened.table {
            table.seek(part.records.start).map_err(failed)?;
        }
    }
    Ok(opened)
}

/// The records a part read must be those it was given (for the whole file,
/// those the .dbf holds).
pub fn check_count(opened: &Opened, part: &Part, read: u64) -> Result<(), String> {
    let expected = if part.whole {
        u64::from(opened.expected)
    } else {
        part.records.len() as u64
    };
    if read == expected {
        return Ok(());
    }
    Err(format!(
        "the .dbf has {} records and the .shp {} shapes",
        opened.expected,
        part.records.start as u64 + read
    ))
}

/// The cores to split a large file across.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_are_split_per_core() {
        let whole = parts(Some(10), 2);
        assert_eq!(whole.len(), 1);
        assert!(whole[0].whole && whole[0].first && whole[0].last);
        assert_eq!(parts(None, 8).len(), 1);
        let split = parts(Some(100_001), 2);
        assert_eq!(
            split.iter().map(|p| p.records.clone()).collect::<Vec<_>>(),
            [0..50_001, 50_001..100_001]
        );
        assert!(split[0].first && !split[0].last && split[1].last && !split[1].whole);
        assert_eq!(parts(Some(60_000), 1).len(), 1);
    }
}
