//! One shapefile to one CSV file: every DBF attribute, then the geometry.

use std::io::Write as _;
use std::path::Path;

use dbase::FieldValue;
use rayon::prelude::*;
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
/// renamed when complete. Errors name the record they are about. A large
/// file is converted by a thread per core, each its share of the records
/// into a file of its own; the shares are joined in order at the end.
pub fn convert(shp: &Path, out: &Path, options: &Options) -> Result<Converted, String> {
    let opened = crate::open::open(shp, options)?;
    let warning = opened.warning.clone();
    let parts = crate::open::parts(opened.reader.shape_count().ok(), crate::open::cores());
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    let partial = flow_engine::PartialFile::beside(out);
    let records = if let [part] = parts.as_slice() {
        // One part: the file as opened, read through.
        write_part(opened, partial.path(), options, part)?
    } else {
        drop(opened);
        let shares: Vec<flow_engine::PartialFile> = (0..parts.len())
            .map(|i| flow_engine::PartialFile::beside(&out.with_extension(format!("csv.{i}"))))
            .collect();
        let counts = parts
            .par_iter()
            .zip(&shares)
            .map(|(part, share)| {
                let opened = crate::open::open_part(shp, options, part)?;
                write_part(opened, share.path(), options, part)
            })
            .collect::<Result<Vec<u64>, String>>()?;
        let failed =
            |e: std::io::Error| format!("cannot write `{}`: {e}", partial.path().display());
        let mut joined = std::fs::File::create(partial.path()).map_err(failed)?;
        for share in &shares {
            let mut piece = std::fs::File::open(share.path()).map_err(failed)?;
            std::io::copy(&mut piece, &mut joined).map_err(failed)?;
        }
        joined.sync_all().map_err(failed)?;
        counts.iter().sum()
    };
    let bytes = std::fs::metadata(partial.path())
        .map(|m| m.len())
        .unwrap_or(0);
    partial
        .commit()
        .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    Ok(Converted {
        records,
        bytes,
        warning,
    })
}

/// One part of a shapefile, opened at its start, as CSV into `path`; the
/// first part writes the header.
fn write_part(
    mut opened: crate::open::Opened,
    path: &Path,
    options: &Options,
    part: &crate::open::Part,
) -> Result<u64, String> {
    let fields: Vec<String> = opened.fields.iter().map(|(name, _)| name.clone()).collect();
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    if part.first {
        let mut header = fields.clone();
        header.push(crate::open::geometry_column(
            &opened.fields,
            if options.wkt { "wkt" } else { "geom" },
        ));
        writer.write_record(&header).map_err(|e| e.to_string())?;
    }
    let mut records = 0u64;
    let mut row: Vec<String> = Vec::with_capacity(fields.len() + 1);
    let limit = if part.whole {
        usize::MAX
    } else {
        part.records.len()
    };
    let srid = opened.srid;
    for item in opened.reader.iter_shapes_and_records().take(limit) {
        let number = part.records.start as u64 + records + 1;
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
    crate::open::check_count(&opened, part, records)?;
    let mut inner = writer.into_inner().map_err(|e| e.to_string())?;
    inner.flush().map_err(|e| e.to_string())?;
    let file = inner.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(records)
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
