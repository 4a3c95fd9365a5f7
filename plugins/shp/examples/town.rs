//! Writes the shapefiles of the reference pipeline's demo data: a small
//! made-up town of 400 parcels on a 20 × 20 grid and its four zoning areas,
//! in WGS 84 near 8.5° E, 47.37° N.
//!
//! `cargo run -p flow-plugin-shp --example town -- fixtures/spaces/shapefiles/town`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use dbase::{FieldValue, Record, TableWriterBuilder};
use shapefile::{Point, Polygon, PolygonRing, Writer};

const WGS84: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["Degree",0.017453292519943295]]"#;
const WEST: f64 = 8.5;
const SOUTH: f64 = 47.37;
const LOT: f64 = 0.0005;
const SIDE: usize = 20;
const OWNERS: [&str; 5] = ["Müller", "Meier", "Schmid", "Keller", "Weber"];

/// The zoning class of a lot: by quadrant of the town.
fn zone(column: usize, row: usize) -> &'static str {
    match (column < SIDE / 2, row < SIDE / 2) {
        (true, true) => "residential",
        (false, true) => "commercial",
        (true, false) => "agricultural",
        (false, false) => "industrial",
    }
}

/// A clockwise ring (an outer ring, in shapefile terms).
fn rectangle(x: f64, y: f64, width: f64, height: f64) -> Vec<Point> {
    vec![
        Point::new(x, y),
        Point::new(x, y + height),
        Point::new(x + width, y + height),
        Point::new(x + width, y),
        Point::new(x, y),
    ]
}

fn field(name: &str) -> dbase::FieldName {
    name.try_into().expect("a valid field name")
}

fn write(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(folder)?;
    let table = TableWriterBuilder::new()
        .add_numeric_field(field("PARCEL_ID"), 10, 0)
        .add_character_field(field("ZONE"), 20)
        .add_character_field(field("OWNER"), 30)
        .add_date_field(field("SINCE"));
    let mut parcels = Writer::from_path(folder.join("parcels.shp"), table)?;
    for row in 0..SIDE {
        for column in 0..SIDE {
            let id = row * SIDE + column + 1;
            let (x, y) = (WEST + column as f64 * LOT, SOUTH + row as f64 * LOT);
            // Every seventh lot has a courtyard: a polygon with a hole.
            let mut rings = vec![PolygonRing::Outer(rectangle(x, y, LOT * 0.9, LOT * 0.9))];
            if id.is_multiple_of(7) {
                let mut court = rectangle(x + LOT * 0.3, y + LOT * 0.3, LOT * 0.3, LOT * 0.3);
                court.reverse();
                rings.push(PolygonRing::Inner(court));
            }
            let mut record = Record::default();
            record.insert("PARCEL_ID".into(), FieldValue::Numeric(Some(id as f64)));
            record.insert(
                "ZONE".into(),
                FieldValue::Character(Some(zone(column, row).into())),
            );
            record.insert(
                "OWNER".into(),
                FieldValue::Character(Some(OWNERS[id % OWNERS.len()].into())),
            );
            let day = dbase::Date::new(
                (id % 28 + 1) as u32,
                (id % 12 + 1) as u32,
                1990 + (id % 30) as u32,
            )?;
            record.insert("SINCE".into(), FieldValue::Date(Some(day)));
            parcels.write_shape_and_record(&Polygon::with_rings(rings), &record)?;
        }
    }
    drop(parcels);

    let table = TableWriterBuilder::new().add_character_field(field("ZONE"), 20);
    let mut zoning = Writer::from_path(folder.join("zoning.shp"), table)?;
    let half = LOT * (SIDE / 2) as f64;
    for (class, x, y) in [
        ("residential", WEST, SOUTH),
        ("commercial", WEST + half, SOUTH),
        ("agricultural", WEST, SOUTH + half),
    ] {
        let mut record = Record::default();
        record.insert("ZONE".into(), FieldValue::Character(Some(class.into())));
        zoning.write_shape_and_record(
            &Polygon::with_rings(vec![PolygonRing::Outer(rectangle(x, y, half, half))]),
            &record,
        )?;
    }
    // The industrial area comes in two parts, a road apart: a multi-part polygon.
    let mut record = Record::default();
    record.insert(
        "ZONE".into(),
        FieldValue::Character(Some("industrial".into())),
    );
    zoning.write_shape_and_record(
        &Polygon::with_rings(vec![
            PolygonRing::Outer(rectangle(WEST + half, SOUTH + half, half, half * 0.45)),
            PolygonRing::Outer(rectangle(
                WEST + half,
                SOUTH + half * 1.55,
                half,
                half * 0.45,
            )),
        ]),
        &record,
    )?;
    drop(zoning);
    for name in ["parcels", "zoning"] {
        std::fs::write(folder.join(format!("{name}.prj")), WGS84)?;
        std::fs::write(folder.join(format!("{name}.cpg")), "UTF-8")?;
    }
    Ok(())
}

fn main() {
    let folder = std::env::args().nth(1).map_or_else(
        || PathBuf::from("fixtures/spaces/shapefiles/town"),
        PathBuf::from,
    );
    match write(&folder) {
        Ok(()) => println!("wrote the town's shapefiles to {}", folder.display()),
        Err(error) => {
            eprintln!("cannot write the shapefiles: {error}");
            std::process::exit(1);
        }
    }
}
