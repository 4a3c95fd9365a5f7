//! One shapefile to one CSV file: every DBF attribute, then the geometry.

use std::io::Write as _;
use std::path::Path;

use crate::dbf::Value;
use crate::open::Options;
use rayon::prelude::*;
use shapefile::Shape;

/// How a conversion went, for the step's summary.
pub struct Converted {
    pub records: u64,
    pub bytes: u64,
    /// What the user should know: SRID, encoding, sidecars, bad values.
    pub warnings: Vec<String>,
}

/// Converts `shp` into the CSV file `out`, written under a temporary name and
/// renamed when complete, with its column types beside it. Errors name the
/// record they are about. A large file is converted by a thread per core,
/// each its share of the records into a file of its own; the shares are
/// joined in order at the end.
pub fn convert(shp: &Path, out: &Path, options: &Options) -> Result<Converted, String> {
    let opened = crate::open::open(shp, options)?;
    let mut warnings = opened.warnings.clone();
    let parts = crate::open::parts(opened.shapes.count(), crate::open::cores());
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    write_types(&opened, out)?;
    let partial = flow_engine::PartialFile::beside(out);
    let results = if let [part] = parts.as_slice() {
        // One part: the file as opened, read through.
        vec![write_part(opened, partial.path(), options, part)?]
    } else {
        drop(opened);
        let shares: Vec<flow_engine::PartialFile> = (0..parts.len())
            .map(|i| flow_engine::PartialFile::beside(&out.with_extension(format!("csv.{i}"))))
            .collect();
        let results = parts
            .par_iter()
            .zip(&shares)
            .map(|(part, share)| {
                let opened = crate::open::open_part(shp, options, part)?;
                write_part(opened, share.path(), options, part)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let failed =
            |e: std::io::Error| format!("cannot write `{}`: {e}", partial.path().display());
        let mut joined = std::fs::File::create(partial.path()).map_err(failed)?;
        for share in &shares {
            let mut piece = std::fs::File::open(share.path()).map_err(failed)?;
            std::io::copy(&mut piece, &mut joined).map_err(failed)?;
        }
        joined.sync_all().map_err(failed)?;
        results
    };
    let records = results.iter().map(|(n, _)| n).sum();
    warnings.extend(results.iter().filter_map(|(_, p)| p.warning()));
    let bytes = std::fs::metadata(partial.path())
        .map(|m| m.len())
        .unwrap_or(0);
    partial
        .commit()
        .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    Ok(Converted {
        records,
        bytes,
        warnings,
    })
}

/// One part of a shapefile, opened at its start, as CSV into `path`; the
/// first part writes the header. Returns the records and the problems.
fn write_part(
    mut opened: crate::open::Opened,
    path: &Path,
    options: &Options,
    part: &crate::open::Part,
) -> Result<(u64, crate::open::Problems), String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    if part.first {
        writer
            .write_record(header(&opened, options))
            .map_err(|e| e.to_string())?;
    }
    let mut records = 0u64;
    let mut problems = crate::open::Problems::new();
    let mut row: Vec<String> = Vec::with_capacity(opened.fields.len() + 1);
    let limit = if part.whole {
        usize::MAX
    } else {
        part.records.len()
    };
    let (srid, measures) = (opened.srid, opened.shapes.measures);
    while (records as usize) < limit {
        let number = part.records.start as u64 + records + 1;
        let Some(item) = opened.next_row(number, &mut problems) else {
            break;
        };
        let (shape, values) = item?;
        row.clear();
        row.extend(values.into_iter().map(value));
        row.push(geometry(&shape, options.wkt, srid, measures).unwrap_or_default());
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
    Ok((records, problems))
}

/// The CSV header: every field, then the geometry column.
fn header(opened: &crate::open::Opened, options: &Options) -> Vec<String> {
    let mut header: Vec<String> = opened.fields.iter().map(|f| f.name.clone()).collect();
    header.push(crate::open::geometry_column(
        &opened.fields,
        if options.wkt { "wkt" } else { "geom" },
    ));
    header
}

/// The column types of a converted file, beside it as `<file>.csv.types`
/// (a CSV of `column,type`), so that `pg:source:create` makes the table
/// `shp:load` makes instead of guessing from the values. The geometry
/// column is left to its reading of the values (EWKB carries its SRID).
pub fn write_types(opened: &crate::open::Opened, out: &Path) -> Result<(), String> {
    let path = types_path(out);
    let failed = |e: &dyn std::fmt::Display| format!("cannot write `{}`: {e}", path.display());
    let mut writer = csv::Writer::from_path(&path).map_err(|e| failed(&e))?;
    writer
        .write_record(["column", "type"])
        .map_err(|e| failed(&e))?;
    for field in &opened.fields {
        writer
            .write_record([field.name.as_str(), field.column().sql()])
            .map_err(|e| failed(&e))?;
    }
    writer.flush().map_err(|e| failed(&e))
}

/// Where the column types of the CSV file `out` are written.
pub fn types_path(out: &Path) -> std::path::PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".types");
    std::path::PathBuf::from(name)
}

fn geometry(shape: &Shape, wkt: bool, srid: u32, measures: bool) -> Option<String> {
    if wkt {
        crate::geometry::to_wkt(shape, measures)
    } else {
        crate::geometry::to_ewkb(shape, srid, measures)
    }
}

/// A DBF value as CSV text; empty for no value. Numbers are written as the
/// file writes them, every digit kept.
fn value(value: Value<'_>) -> String {
    match value {
        Value::Null => String::new(),
        Value::Text(text) => text.into_owned(),
        Value::Decimal(text) => text.to_owned(),
        Value::Integer(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Date { year, month, day } => format!("{year:04}-{month:02}-{day:02}"),
        Value::Timestamp(micros) => crate::dbf::timestamp_text(micros),
    }
}
