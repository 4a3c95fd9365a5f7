//! Shapefiles and CSV files into PostGIS, against the tools users have today,
//! on the same data in the same run:
//!
//! - shapefile → CSV: `shp:convert` against `ogr2ogr -f CSV -lco GEOMETRY=AS_WKT`;
//! - CSV → table: `pg:source:load` against `psql -c "\copy ... CSV HEADER"`;
//! - shapefile → PostGIS: `shp:load` against `shp2pgsql -D | psql` and
//!   `ogr2ogr -f PostgreSQL`.
//!
//! `cargo bench -p flow-benches --bench shapefiles` generates a shapefile of
//! 2,000,000 points and one of 200,000 polygons (`FLOW_BENCH_SCALE=0.1` for a
//! tenth), runs each once after a warm-up, and prints the times and ratios
//! (the other tool's time / flow's), and flow's peak memory. A tool that is
//! not installed (Debian's `gdal-bin`, `postgis`) is left out.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dbase::{FieldValue, Record, TableWriterBuilder};
use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::Registry;
use shapefile::{Point, Polygon, PolygonRing, Writer};
use {flow_plugin_pg as _, flow_plugin_shp as _};

const WGS84: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["Degree",0.017453292519943295]]"#;

const FLOW: &str = r#"flow bench
database flow = "postgres://unused"
step shp:convert {
  from = "shp/*.shp"
  to = "csv"
  geometry = wkt
}
step pg:source:create {
  from = "csv/*.csv"
  schema = csv_flow
}
step pg:source:load {
  from = "csv/*.csv"
  schema = csv_flow
}
step shp:load {
  from = "shp/*.shp"
  schema = shp_flow
}
"#;

fn field(name: &str) -> dbase::FieldName {
    name.try_into().expect("field name")
}

fn record(id: usize) -> Record {
    let mut record = Record::default();
    record.insert("ID".into(), FieldValue::Numeric(Some(id as f64)));
    record.insert(
        "NAME".into(),
        FieldValue::Character(Some(format!("feature {id}"))),
    );
    record.insert(
        "VALUE".into(),
        FieldValue::Numeric(Some((id % 10_000) as f64 / 8.0)),
    );
    record
}

fn table() -> TableWriterBuilder {
    TableWriterBuilder::new()
        .add_numeric_field(field("ID"), 10, 0)
        .add_character_field(field("NAME"), 20)
        .add_numeric_field(field("VALUE"), 12, 3)
}

/// `points.shp` and `polygons.shp` under `dir/shp`.
fn generate(dir: &Path, points: usize, polygons: usize) {
    let shp = dir.join("shp");
    std::fs::create_dir_all(&shp).expect("dir");
    let mut writer = Writer::from_path(shp.join("points.shp"), table()).expect("writer");
    for i in 0..points {
        let point = Point::new(
            8.0 + (i % 2000) as f64 * 1e-4,
            47.0 + (i / 2000) as f64 * 1e-4,
        );
        writer
            .write_shape_and_record(&point, &record(i))
            .expect("write");
    }
    drop(writer);
    let mut writer = Writer::from_path(shp.join("polygons.shp"), table()).expect("writer");
    for i in 0..polygons {
        let (x, y) = (
            8.0 + (i % 500) as f64 * 1e-3,
            47.0 + (i / 500) as f64 * 1e-3,
        );
        let ring = vec![
            Point::new(x, y),
            Point::new(x, y + 8e-4),
            Point::new(x + 4e-4, y + 9e-4),
            Point::new(x + 8e-4, y + 8e-4),
            Point::new(x + 8e-4, y),
            Point::new(x, y),
        ];
        let polygon = Polygon::with_rings(vec![PolygonRing::Outer(ring)]);
        writer
            .write_shape_and_record(&polygon, &record(i))
            .expect("write");
    }
    drop(writer);
    for name in ["points", "polygons"] {
        std::fs::write(shp.join(format!("{name}.prj")), WGS84).expect("prj");
        std::fs::write(shp.join(format!("{name}.cpg")), "UTF-8").expect("cpg");
    }
}

// Long on purpose (the reason): a benchmark's main is its scenario, top to
// bottom, timing flow and the other tool on the same data in the same run;
// in pieces it would only pass the files and databases around.
#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let scale = flow_benches::scale(full, 0.001);
    let (points, polygons) = ((2_000_000.0 * scale) as usize, (200_000.0 * scale) as usize);
    let dir: PathBuf = std::env::temp_dir().join(format!("flow-bench-shp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("generating {points} points and {polygons} polygons ...");
    generate(&dir, points, polygons);

    let db = TestDatabase::create("benchshp").await.expect("database");
    let url = db.url();
    db.client()
        .await
        .expect("connect")
        .batch_execute("CREATE EXTENSION IF NOT EXISTS postgis; CREATE SCHEMA csv_psql; CREATE SCHEMA shp2pgsql; CREATE SCHEMA ogr")
        .await
        .expect("schemas");
    let parsed = flow_dsl::parse(FLOW);
    let pipeline =
        flow_engine::compile(&parsed.flow, &Registry::installed(), "bench").expect("flow");
    let databases = Arc::new(BTreeMap::from([(
        "flow".to_owned(),
        Database::connect("flow", &Location::Url(url.clone()), None, 4)
            .await
            .expect("pool"),
    )]));
    let shp = |name: &str| {
        dir.join("shp")
            .join(format!("{name}.shp"))
            .display()
            .to_string()
    };
    let gdal = flow_benches::have("ogr2ogr");
    let shp2pgsql = flow_benches::have("shp2pgsql");

    // Shapefile to CSV (WKT), both files.
    flow_benches::run_step(&pipeline, "shp:convert", &databases, &dir).await;
    let flow_convert = flow_benches::run_step(&pipeline, "shp:convert", &databases, &dir).await;
    let ogr_convert = gdal.then(|| {
        let out = dir.join("ogr-csv");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("dir");
        let started = Instant::now();
        for name in ["points", "polygons"] {
            flow_benches::timed(&format!(
                "ogr2ogr -f CSV {} {} -lco GEOMETRY=AS_WKT",
                out.join(format!("{name}.csv")).display(),
                shp(name)
            ));
        }
        started.elapsed()
    });

    // CSV to table.
    flow_benches::run_step(&pipeline, "pg:source:create", &databases, &dir).await;
    flow_benches::run_step(&pipeline, "pg:source:load", &databases, &dir).await;
    let flow_csv = flow_benches::run_step(&pipeline, "pg:source:load", &databases, &dir).await;
    db.client()
        .await
        .expect("connect")
        .batch_execute("CREATE TABLE csv_psql.points (LIKE csv_flow.points); CREATE TABLE csv_psql.polygons (LIKE csv_flow.polygons)")
        .await
        .expect("tables");
    let psql_csv = {
        let started = Instant::now();
        for name in ["points", "polygons"] {
            flow_benches::timed(&format!(
                "{} '{url}' -qc \"\\copy csv_psql.{name} FROM '{}' CSV HEADER\"",
                flow_benches::psql(),
                dir.join("csv").join(format!("{name}.csv")).display()
            ));
        }
        started.elapsed()
    };

    // Shapefile to PostGIS.
    flow_benches::run_step(&pipeline, "shp:load", &databases, &dir).await;
    let flow_load = flow_benches::run_step(&pipeline, "shp:load", &databases, &dir).await;
    let shp2pgsql_load = shp2pgsql.then(|| {
        let started = Instant::now();
        for name in ["points", "polygons"] {
            flow_benches::timed(&format!(
                "shp2pgsql -D -s 4326 -d {} shp2pgsql.{name} 2>/dev/null | {} '{url}' -q 2>/dev/null",
                shp(name),
                flow_benches::psql()
            ));
        }
        started.elapsed()
    });
    let ogr_load = gdal.then(|| {
        let started = Instant::now();
        for name in ["points", "polygons"] {
            flow_benches::timed(&format!(
                "ogr2ogr -f PostgreSQL '{}' {} -nln ogr.{name} -overwrite -lco SPATIAL_INDEX=NONE --config PG_USE_COPY YES",
                db.gdal_connection(),
                shp(name)
            ));
        }
        started.elapsed()
    });

    println!("\n{points} points and {polygons} polygons, 2 cores");
    flow_benches::line(
        "shapefile -> CSV (WKT)",
        flow_convert,
        ogr_convert.map(|t| ("ogr2ogr -f CSV", t)),
    );
    flow_benches::line("CSV -> table", flow_csv, Some(("psql \\copy", psql_csv)));
    flow_benches::line(
        "shapefile -> PostGIS",
        flow_load,
        shp2pgsql_load.map(|t| ("shp2pgsql -D | psql", t)),
    );
    if let Some(time) = ogr_load {
        flow_benches::line(
            "shapefile -> PostGIS",
            flow_load,
            Some(("ogr2ogr -f PostgreSQL", time)),
        );
    }
    println!(
        "flow's peak memory (this process, incl. generating the data): {:.0} MiB",
        flow_benches::peak_mib()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
