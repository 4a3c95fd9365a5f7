//! Opening a shapefile: its reader, its attributes, its SRID and encoding.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use dbase::FieldType;

use crate::convert::Options;

/// A shapefile ready to be read record by record.
pub struct Opened {
    pub reader: shapefile::Reader<BufReader<File>, crate::dbf::Dbf>,
    /// The DBF attributes, in order.
    pub fields: Vec<(String, FieldType)>,
    /// The records the .dbf says it holds.
    pub expected: u32,
    pub srid: u32,
    /// Set when the SRID could not be read from a .prj.
    pub warning: Option<String>,
    pub shape_type: shapefile::ShapeType,
}

/// The name of the geometry column beside `fields`: `geom`, or the first
/// free `geom_2`, `geom_3`, ... when a field is named `geom`.
pub fn geometry_column(fields: &[(String, FieldType)], wanted: &str) -> String {
    let mut names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    names.push(wanted);
    flow_engine::flow_db::names::columns(&names)
        .ok()
        .and_then(|mut all| all.pop())
        .unwrap_or_else(|| wanted.to_owned())
}

/// Opens `shp` with its .dbf (decoded as the .cpg or `options` say) and
/// finds its SRID; a .dbf whose count differs from the .shx is refused.
pub fn open(shp: &Path, options: &Options) -> Result<Opened, String> {
    let mut warning = None;
    let srid = match options.srid {
        Some(srid) => srid,
        None => match std::fs::read_to_string(shp.with_extension("prj")) {
            Ok(prj) => crate::prj::srid(&prj).unwrap_or_else(|| {
                warning = Some("its .prj names a projection flow does not know: SRID 0 written; set `srid` to give it".into());
                0
            }),
            Err(_) => {
                warning = Some("it has no .prj: SRID 0 written; set `srid` to give it".into());
                0
            }
        },
    };
    let dbf = shp.with_extension("dbf");
    let encoding = options.encoding.clone().or_else(|| {
        std::fs::read_to_string(shp.with_extension("cpg"))
            .ok()
            .map(|label| label.trim().trim_start_matches('\u{feff}').to_owned())
    });
    let builder = match encoding.as_deref() {
        Some(label) => {
            // Names as users and .cpg files write them, as the reader knows them.
            let known = match label.to_ascii_lowercase().as_str() {
                "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "88591" => "ISO-8859-1",
                "windows-1252" | "cp1252" | "1252" => "1252",
                "utf-8" | "utf8" => "UTF-8",
                _ => label,
            };
            let encoding = dbase::encoding::DynEncoding::from_name(known)
                .ok_or_else(|| format!("unknown encoding `{label}`"))?;
            dbase::ReaderBuilder::new().with_encoding(encoding)
        }
        None => dbase::ReaderBuilder::new(),
    };
    let unreadable = |e: &dyn std::fmt::Display| format!("cannot read `{}`: {e}", dbf.display());
    let source = crate::dbf::Dbf::open(&dbf).map_err(|e| unreadable(&e))?;
    let dbase_reader = builder.build(source).map_err(|e| unreadable(&e))?;
    let fields: Vec<(String, FieldType)> = dbase_reader
        .fields()
        .iter()
        .filter(|f| f.name() != "DeletionFlag")
        .map(|f| (f.name().to_owned(), f.field_type()))
        .collect();
    // A record is read as a map from field name to value: a second field of
    // the same name would lose its values.
    for (at, (name, _)) in fields.iter().enumerate() {
        if let Some(first) = fields[..at].iter().position(|(n, _)| n == name) {
            return Err(format!(
                "`{}` has two fields named `{name}` (fields {} and {}); flow cannot tell their values apart, so it loads neither: rename one (in QGIS, or `ogr2ogr -sql`)",
                dbf.display(),
                first + 1,
                at + 1
            ));
        }
    }
    let expected = dbase_reader.header().num_records;
    let shape_reader = shapefile::ShapeReader::from_path(shp).map_err(|e| e.to_string())?;
    let shape_type = shape_reader.header().shape_type;
    let reader = shapefile::Reader::new(shape_reader, dbase_reader);
    // The index (.shx) counts the shapes; without one, the records decide.
    if let Ok(shapes) = reader.shape_count()
        && shapes != expected as usize
    {
        return Err(format!(
            "the .dbf has {expected} records and the .shp {shapes} shapes"
        ));
    }
    Ok(Opened {
        reader,
        fields,
        expected,
        srid,
        warning,
        shape_type,
    })
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
        opened
            .reader
            .seek(part.records.start)
            .map_err(|e| format!("record {}: {e}", part.records.start + 1))?;
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
