//! One shapefile to one CSV file: every DBF attribute, then the geometry.

use std::io::Write as _;
use std::path::Path;

use dbase::FieldValue;
use shapefile::Shape;

/// How a conversion went, for the step's summary.
pub struct Converted {
    pub records: u64,
    pub bytes: u64,
    /// Set when the `.prj` named no projection flow knows.
    pub warning: Option<String>,
}

pub struct Options {
    pub wkt: bool,
    pub srid: Option<u32>,
    pub encoding: Option<String>,
}

/// Converts `shp` into the CSV file `out`, written under a temporary name and
/// renamed when complete. Errors name the record they are about.
pub fn convert(shp: &Path, out: &Path, options: &Options) -> Result<Converted, String> {
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
    let dbase_reader = builder
        .open(&dbf)
        .map_err(|e| format!("cannot read `{}`: {e}", dbf.display()))?;
    let fields: Vec<String> = dbase_reader
        .fields()
        .iter()
        .map(|f| f.name().to_owned())
        .filter(|n| n != "DeletionFlag")
        .collect();
    let expected = dbase_reader.header().num_records;
    let shape_reader = shapefile::ShapeReader::from_path(shp).map_err(|e| e.to_string())?;
    let mut reader = shapefile::Reader::new(shape_reader, dbase_reader);
    // The index (.shx) counts the shapes; without one, the records decide.
    let shapes = reader.shape_count().ok();
    if let Some(shapes) = shapes
        && shapes != expected as usize
    {
        return Err(format!(
            "the .dbf has {expected} records and the .shp {shapes} shapes"
        ));
    }

    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    let partial = flow_engine::PartialFile::beside(out);
    let file = std::fs::File::create(partial.path())
        .map_err(|e| format!("cannot write `{}`: {e}", partial.path().display()))?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    let mut header = fields.clone();
    header.push(if options.wkt {
        "wkt".into()
    } else {
        "geom".into()
    });
    writer.write_record(&header).map_err(|e| e.to_string())?;

    let mut records = 0u64;
    let mut row: Vec<String> = Vec::with_capacity(header.len());
    for item in reader.iter_shapes_and_records() {
        let number = records + 1;
        let (shape, mut record) = item.map_err(|e| format!("record {number}: {e}"))?;
        row.clear();
        for field in &fields {
            row.push(record.remove(field).map(value).unwrap_or_default());
        }
        row.push(geometry(&shape, options.wkt, srid).unwrap_or_default());
        writer
            .write_record(&row)
            .map_err(|e| format!("record {number}: {e}"))?;
        records += 1;
    }
    if u64::from(expected) != records {
        return Err(format!(
            "the .dbf has {expected} records and the .shp {records} shapes"
        ));
    }
    let mut inner = writer.into_inner().map_err(|e| e.to_string())?;
    inner.flush().map_err(|e| e.to_string())?;
    let file = inner.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    partial
        .commit()
        .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    Ok(Converted {
        records,
        bytes,
        warning,
    })
}

fn geometry(shape: &Shape, wkt: bool, srid: u32) -> Option<String> {
    if wkt {
        crate::geometry::to_wkt(shape)
    } else {
        crate::geometry::to_ewkb(shape, srid)
    }
}

/// A DBF value as CSV text; empty for no value.
fn value(value: FieldValue) -> String {
    match value {
        FieldValue::Character(Some(text)) => text.trim_end().to_owned(),
        FieldValue::Numeric(Some(n)) | FieldValue::Double(n) | FieldValue::Currency(n) => number(n),
        FieldValue::Float(Some(n)) => number(f64::from(n)),
        FieldValue::Integer(n) => n.to_string(),
        FieldValue::Logical(Some(flag)) => flag.to_string(),
        FieldValue::Date(Some(date)) => {
            format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
        }
        FieldValue::Memo(text) => text,
        FieldValue::DateTime(time) => {
            let (date, clock) = (time.date(), time.time());
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                date.year(),
                date.month(),
                date.day(),
                clock.hours(),
                clock.minutes(),
                clock.seconds()
            )
        }
        _ => String::new(),
    }
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}
