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
    let crate::open::Opened {
        mut reader,
        fields,
        expected,
        srid,
        warning,
        ..
    } = crate::open::open(shp, options)?;
    let fields: Vec<String> = fields.into_iter().map(|(name, _)| name).collect();

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
