//! `shp:convert` on real shapefiles (written by the `shapefile` crate here),
//! then loaded into PostGIS and compared with the geometries written.

mod support;

use std::path::Path;

use dbase::{FieldValue, Record, TableWriterBuilder};
use shapefile::{Point, PointZ, Polygon, PolygonRing, PolylineZ, Writer};
use support::{Flow, Project, flat};

const FLOW: &str = r#"flow shapes

database flow = env("FLOW_DATABASE_URL")

groups download -> configure -> seed

step shp:convert {
  group = download
  from = "raw/**/*.shp"
  to = "csv"
}

step pg:flow:configure {
  group = configure
}

step pg:source:create {
  group = seed
  from = "csv/**/*.csv"
}

step pg:source:load {
  group = seed
  from = "csv/**/*.csv"
}
"#;

const WGS84: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["Degree",0.017453292519943295]]"#;

fn name(text: &str) -> dbase::FieldName {
    text.try_into().expect("field name")
}

fn record(values: &[(&str, FieldValue)]) -> Record {
    let mut record = Record::default();
    for (key, value) in values {
        record.insert((*key).to_owned(), value.clone());
    }
    record
}

fn square(x: f64, y: f64, size: f64) -> Vec<Point> {
    // Clockwise: an outer ring.
    vec![
        Point::new(x, y),
        Point::new(x, y + size),
        Point::new(x + size, y + size),
        Point::new(x + size, y),
        Point::new(x, y),
    ]
}

fn write_fixtures(raw: &Path) {
    std::fs::create_dir_all(raw.join("zones")).expect("dir");
    // Points with every DBF type.
    let table = TableWriterBuilder::new()
        .add_character_field(name("NAME"), 20)
        .add_numeric_field(name("AREA"), 10, 2)
        .add_logical_field(name("OK"))
        .add_date_field(name("DAY"));
    let mut writer = Writer::from_path(raw.join("points.shp"), table).expect("writer");
    let rows = [
        (Point::new(1.0, 2.0), "first", 1.5, true, (31, 1, 2024)),
        (Point::new(3.0, 4.0), "second", 2.0, false, (1, 2, 2024)),
    ];
    for (shape, label, area, ok, (d, m, y)) in rows {
        let record = record(&[
            ("NAME", FieldValue::Character(Some(label.into()))),
            ("AREA", FieldValue::Numeric(Some(area))),
            ("OK", FieldValue::Logical(Some(ok))),
            (
                "DAY",
                FieldValue::Date(Some(dbase::Date::new(d, m, y).expect("date"))),
            ),
        ]);
        writer
            .write_shape_and_record(&shape, &record)
            .expect("write");
    }
    drop(writer);
    std::fs::write(raw.join("points.prj"), WGS84).expect("prj");

    // Polygons: one with a hole, one in two parts.
    let table = TableWriterBuilder::new().add_character_field(name("ZONE"), 20);
    let mut writer = Writer::from_path(raw.join("zones/zones.shp"), table).expect("writer");
    let mut hole = square(2.0, 2.0, 2.0);
    hole.reverse();
    let with_hole = Polygon::with_rings(vec![
        PolygonRing::Outer(square(0.0, 0.0, 10.0)),
        PolygonRing::Inner(hole),
    ]);
    let two_parts = Polygon::with_rings(vec![
        PolygonRing::Outer(square(20.0, 0.0, 1.0)),
        PolygonRing::Outer(square(30.0, 0.0, 1.0)),
    ]);
    writer
        .write_shape_and_record(
            &with_hole,
            &record(&[("ZONE", FieldValue::Character(Some("holed".into())))]),
        )
        .expect("write");
    writer
        .write_shape_and_record(
            &two_parts,
            &record(&[("ZONE", FieldValue::Character(Some("split".into())))]),
        )
        .expect("write");
    drop(writer);
    std::fs::write(raw.join("zones/zones.prj"), WGS84).expect("prj");

    // A 3D line with measures, and no .prj.
    let table = TableWriterBuilder::new().add_character_field(name("ROAD"), 20);
    let mut writer = Writer::from_path(raw.join("roads.shp"), table).expect("writer");
    let line = PolylineZ::new(vec![
        PointZ::new(0.0, 0.0, 5.0, 1.0),
        PointZ::new(1.0, 1.0, 6.0, 2.0),
    ]);
    writer
        .write_shape_and_record(
            &line,
            &record(&[("ROAD", FieldValue::Character(Some("A1".into())))]),
        )
        .expect("write");
}

/// A row of `source.points`: name, area, ok, day, geometry as WKT, SRID.
type PointRow = (String, f64, bool, String, Option<String>, Option<i32>);

/// The flow with the shapefiles of [`write_fixtures`] under `raw/`.
async fn project(name: &str) -> Project {
    let project = Project::new("shp", name, "shapes.flow", FLOW).await;
    write_fixtures(&project.dir.join("raw"));
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn shapefiles_arrive_in_postgis_as_written() {
    let project = project("all").await;
    let output = project.run(&[]).expect(0);
    assert!(
        output
            .stderr
            .contains("`raw/roads.shp`: it has no .prj: SRID 0 written"),
        "{}",
        output.stderr
    );
    assert!(
        project.dir.join("csv/zones/zones.csv").exists(),
        "paths below the glob's folder are kept"
    );
    let client = project.db.client().await.expect("connect");

    let rows = client
        .query("SELECT \"NAME\", \"AREA\"::float8, \"OK\", \"DAY\"::text, ST_AsText(geom), ST_SRID(geom) FROM source.points ORDER BY \"NAME\"", &[])
        .await
        .expect("points");
    let points: Vec<PointRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        points[0],
        (
            "first".into(),
            1.5,
            true,
            "2024-01-31".into(),
            Some("POINT(1 2)".into()),
            Some(4326)
        )
    );
    assert_eq!(
        points[1],
        (
            "second".into(),
            2.0,
            false,
            "2024-02-01".into(),
            Some("POINT(3 4)".into()),
            Some(4326)
        )
    );

    let equal: Vec<(String, bool, i32)> = client
        .query(
            "SELECT \"ZONE\", ST_Equals(geom, CASE \"ZONE\"
                 WHEN 'holed' THEN 'SRID=4326;MULTIPOLYGON(((0 0,0 10,10 10,10 0,0 0),(2 2,4 2,4 4,2 4,2 2)))'::geometry
                 ELSE 'SRID=4326;MULTIPOLYGON(((20 0,20 1,21 1,21 0,20 0)),((30 0,30 1,31 1,31 0,30 0)))'::geometry END),
                 ST_NumGeometries(geom)
             FROM source.zones ORDER BY 1",
            &[],
        )
        .await
        .expect("zones")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        equal,
        [("holed".into(), true, 1), ("split".into(), true, 2)]
    );
    let kind: String = client
        .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'source.zones'::regclass AND attname = 'geom'", &[])
        .await
        .expect("type")
        .get(0);
    assert_eq!(kind, "geometry(MultiPolygon,4326)");

    let road: String = client
        .query_one("SELECT ST_AsText(geom) FROM source.roads", &[])
        .await
        .expect("roads")
        .get(0);
    assert_eq!(road, "MULTILINESTRING ZM ((0 0 5 1,1 1 6 2))");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_shapefile_fails_with_its_file_and_record_and_leaves_no_csv() {
    let project = project("truncated").await;
    let shp = project.dir.join("raw/points.shp");
    let bytes = std::fs::read(&shp).expect("shp");
    std::fs::write(&shp, &bytes[..bytes.len() - 10]).expect("truncate");
    let output = project
        .run(&["--step", "shp:convert", "--keep-going"])
        .expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("`raw/points.shp`: record"),
        "{}",
        output.stderr
    );
    assert!(!project.dir.join("csv/points.csv").exists());
    assert!(
        project.dir.join("csv/zones/zones.csv").exists(),
        "the other files still convert"
    );
    let leftovers: Vec<_> = std::fs::read_dir(project.dir.join("csv"))
        .expect("csv")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("flow-part"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn latin1_attributes_are_decoded_from_the_cpg() {
    let project = project("latin1").await;
    let raw = project.dir.join("raw");
    let table = TableWriterBuilder::with_encoding(
        dbase::encoding::DynEncoding::from_name("ISO-8859-1").expect("latin1"),
    )
    .add_character_field(name("CITY"), 20);
    let mut writer = Writer::from_path(raw.join("cities.shp"), table).expect("writer");
    writer
        .write_shape_and_record(
            &Point::new(2.35, 48.85),
            &record(&[("CITY", FieldValue::Character(Some("Orléans".into())))]),
        )
        .expect("write");
    drop(writer);
    let dbf = std::fs::read(raw.join("cities.dbf")).expect("dbf");
    assert!(
        dbf.windows(2).any(|w| w == [b'l', 0xe9]),
        "the .dbf holds latin1 bytes"
    );
    std::fs::write(raw.join("cities.cpg"), "ISO-8859-1").expect("cpg");
    project.run(&[]).expect(0);
    let client = project.db.client().await.expect("connect");
    let city: String = client
        .query_one("SELECT \"CITY\" FROM source.cities", &[])
        .await
        .expect("cities")
        .get(0);
    assert_eq!(city, "Orléans");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dbf_with_fewer_records_than_shapes_is_refused() {
    let project = project("shortdbf").await;
    let raw = project.dir.join("raw");
    let table = TableWriterBuilder::new().add_character_field(name("NAME"), 20);
    let mut writer = table
        .build_with_file_dest(raw.join("points.dbf"))
        .expect("dbf");
    writer
        .write_record(&record(&[(
            "NAME",
            FieldValue::Character(Some("only one".into())),
        )]))
        .expect("record");
    drop(writer);
    let output = project.run(&["--step", "shp:convert"]).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("`raw/points.shp`: the .dbf has 1 records and the .shp 2 shapes"),
        "{}",
        output.stderr
    );
    assert!(!project.dir.join("csv/points.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn shp_load_gives_the_tables_the_csv_path_gives() {
    let project = project("direct").await;
    project.run(&[]).expect(0);
    // The town of the reference pipeline too: 400 polygons, some with holes.
    let town = project.dir.join("raw/town");
    std::fs::create_dir_all(&town).expect("dir");
    for entry in std::fs::read_dir(support::root().join("fixtures/spaces/shapefiles/town"))
        .expect("fixtures")
        .flatten()
    {
        std::fs::copy(entry.path(), town.join(entry.file_name())).expect("copy");
    }
    project.run(&[]).expect(0);
    std::fs::write(
        project.dir.join("direct.flow"),
        "flow direct\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep pg:flow:configure {}\n\nstep shp:load {\n  from = \"raw/**/*.shp\"\n  schema = direct\n}\n",
    )
    .expect("flow");
    let direct = || {
        Flow::new(["run", "direct.flow", "--force"])
            .dir(&project.dir)
            .env("FLOW_DATABASE_URL", project.db.url())
    };
    let output = direct().expect(0);
    assert!(
        output.stderr.contains("5 files, 409 records"),
        "{}",
        output.stderr
    );
    let client = project.db.client().await.expect("connect");
    for table in ["points", "zones", "roads", "parcels", "zoning"] {
        let differing: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM (
                       (SELECT to_jsonb(t) - 'geom', ST_AsEWKB(geom) FROM source.{table} t
                        EXCEPT ALL SELECT to_jsonb(t) - 'geom', ST_AsEWKB(geom) FROM direct.{table} t)
                       UNION ALL
                       (SELECT to_jsonb(t) - 'geom', ST_AsEWKB(geom) FROM direct.{table} t
                        EXCEPT ALL SELECT to_jsonb(t) - 'geom', ST_AsEWKB(geom) FROM source.{table} t)) d"
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .get(0);
        assert_eq!(differing, 0, "{table}: the two paths differ");
    }
    let kinds: Vec<String> = client
        .query(
            "SELECT c.relname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'direct' AND a.attname = 'geom' ORDER BY 1",
            &[],
        )
        .await
        .expect("types")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        [
            "parcels geometry(MultiPolygon,4326)",
            "points geometry(Point,4326)",
            "roads geometry(MultiLineStringZM)",
            "zones geometry(MultiPolygon,4326)",
            "zoning geometry(MultiPolygon,4326)"
        ]
    );
    // A second load replaces the rows; a truncated file fails and leaves them.
    direct().expect(0);
    let shp = project.dir.join("raw/points.shp");
    let bytes = std::fs::read(&shp).expect("shp");
    std::fs::write(&shp, &bytes[..bytes.len() - 10]).expect("truncate");
    let failed = direct().expect(1);
    assert!(
        flat(&failed.stderr).contains("`raw/points.shp`: record 2"),
        "{}",
        failed.stderr
    );
    let points: i64 = client
        .query_one("SELECT count(*) FROM direct.points", &[])
        .await
        .expect("points")
        .get(0);
    assert_eq!(points, 2);
}

/// A point shapefile whose second record is a null shape, written byte by
/// byte (the writer only writes one shape type per file).
fn write_with_null_shape(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let shapes: [Option<(f64, f64)>; 3] = [Some((1.0, 2.0)), None, Some((3.0, 4.0))];
    let contents: Vec<Vec<u8>> = shapes
        .iter()
        .map(|shape| match shape {
            Some((x, y)) => [
                1i32.to_le_bytes().as_slice(),
                &x.to_le_bytes(),
                &y.to_le_bytes(),
            ]
            .concat(),
            None => 0i32.to_le_bytes().to_vec(),
        })
        .collect();
    let header = |length_bytes: usize| {
        let mut h = Vec::with_capacity(100);
        h.extend_from_slice(&9994i32.to_be_bytes());
        h.extend_from_slice(&[0u8; 20]);
        h.extend_from_slice(&((length_bytes / 2) as i32).to_be_bytes());
        h.extend_from_slice(&1000i32.to_le_bytes());
        h.extend_from_slice(&1i32.to_le_bytes());
        for v in [1.0f64, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    };
    let shp_len = 100 + contents.iter().map(|c| 8 + c.len()).sum::<usize>();
    let mut shp = header(shp_len);
    let mut shx = header(100 + 8 * contents.len());
    for (i, content) in contents.iter().enumerate() {
        shx.extend_from_slice(&((shp.len() / 2) as i32).to_be_bytes());
        shx.extend_from_slice(&((content.len() / 2) as i32).to_be_bytes());
        shp.extend_from_slice(&(i as i32 + 1).to_be_bytes());
        shp.extend_from_slice(&((content.len() / 2) as i32).to_be_bytes());
        shp.extend_from_slice(content);
    }
    std::fs::write(dir.join("gaps.shp"), shp).expect("shp");
    std::fs::write(dir.join("gaps.shx"), shx).expect("shx");
    std::fs::write(dir.join("gaps.prj"), WGS84).expect("prj");
    let table = TableWriterBuilder::new().add_character_field(name("NAME"), 10);
    let mut writer = table
        .build_with_file_dest(dir.join("gaps.dbf"))
        .expect("dbf");
    for label in ["first", "none", "third"] {
        writer
            .write_record(&record(&[(
                "NAME",
                FieldValue::Character(Some(label.into())),
            )]))
            .expect("record");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn null_shapes_arrive_as_null_geometries_both_ways() {
    let project = project("nulls").await;
    write_with_null_shape(&project.dir.join("raw/gaps"));
    project.run(&[]).expect(0);
    std::fs::write(
        project.dir.join("direct.flow"),
        "flow direct\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep shp:load {\n  from = \"raw/gaps/*.shp\"\n  schema = direct\n}\n",
    )
    .expect("flow");
    Flow::new(["run", "direct.flow"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .expect(0);
    let client = project.db.client().await.expect("connect");
    for schema in ["source", "direct"] {
        let rows: Vec<(String, Option<String>)> = client
            .query(
                &format!("SELECT \"NAME\", ST_AsEWKT(geom) FROM {schema}.gaps ORDER BY \"NAME\""),
                &[],
            )
            .await
            .expect("gaps")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            rows,
            [
                ("first".to_owned(), Some("SRID=4326;POINT(1 2)".to_owned())),
                ("none".to_owned(), None),
                ("third".to_owned(), Some("SRID=4326;POINT(3 4)".to_owned())),
            ],
            "{schema}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_split_across_cores_keeps_every_record_in_order() {
    let project = project("large").await;
    let big = project.dir.join("raw/big");
    std::fs::create_dir_all(&big).expect("dir");
    let table = TableWriterBuilder::new().add_numeric_field(name("ID"), 10, 0);
    let mut writer = Writer::from_path(big.join("big.shp"), table).expect("writer");
    let count = 120_001;
    for i in 0..count {
        writer
            .write_shape_and_record(
                &Point::new(f64::from(i), 1.0),
                &record(&[("ID", FieldValue::Numeric(Some(f64::from(i))))]),
            )
            .expect("write");
    }
    drop(writer);
    std::fs::write(big.join("big.prj"), WGS84).expect("prj");
    project.run(&[]).expect(0);
    let csv = std::fs::read_to_string(project.dir.join("csv/big/big.csv")).expect("csv");
    let ids: Vec<&str> = csv
        .lines()
        .map(|l| l.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), count as usize + 1, "one header, every record");
    assert_eq!(ids[0], "ID");
    assert!(
        ids[1..]
            .iter()
            .enumerate()
            .all(|(i, id)| *id == i.to_string()),
        "records in file order"
    );
    std::fs::write(
        project.dir.join("direct.flow"),
        "flow direct\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep shp:load {\n  from = \"raw/big/*.shp\"\n  schema = direct\n}\n",
    )
    .expect("flow");
    let direct = || {
        Flow::new(["run", "direct.flow", "--force"])
            .dir(&project.dir)
            .env("FLOW_DATABASE_URL", project.db.url())
    };
    direct().expect(0);
    let client = project.db.client().await.expect("connect");
    for schema in ["source", "direct"] {
        let (rows, wrong): (i64, i64) = {
            let row = client
                .query_one(
                    &format!("SELECT count(*), count(*) FILTER (WHERE \"ID\"::float8 <> ST_X(geom)) FROM {schema}.big"),
                    &[],
                )
                .await
                .expect("big");
            (row.get(0), row.get(1))
        };
        assert_eq!((rows, wrong), (i64::from(count), 0), "{schema}");
    }
    // A file cut in its last part fails with the record, in both paths.
    let shp = big.join("big.shp");
    let bytes = std::fs::read(&shp).expect("shp");
    std::fs::write(&shp, &bytes[..bytes.len() - 28 * 10]).expect("truncate");
    let failed = direct().expect(1);
    assert!(
        flat(&failed.stderr).contains("`raw/big/big.shp`: record 119992"),
        "{}",
        failed.stderr
    );
    let failed = project.run(&["--step", "shp:convert"]).expect(1);
    assert!(
        flat(&failed.stderr).contains("`raw/big/big.shp`: record 119992"),
        "{}",
        failed.stderr
    );
    assert!(!project.dir.join("csv/big/big.csv.0").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_the_dbf_alone_makes_the_conversion_run_again() {
    let project = project("sidecar").await;
    project.run(&["--step", "shp:convert"]).expect(0);
    let again = project.run(&["--step", "shp:convert"]).expect(0);
    assert!(
        flat(&again.stderr).contains("skip shp:convert"),
        "{}",
        again.stderr
    );
    // The same points with other names: only the .dbf is copied over.
    let other = project.dir.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let table = TableWriterBuilder::new()
        .add_character_field(name("NAME"), 20)
        .add_numeric_field(name("AREA"), 10, 2)
        .add_logical_field(name("OK"))
        .add_date_field(name("DAY"));
    let mut writer = Writer::from_path(other.join("points.shp"), table).expect("writer");
    for (shape, label) in [
        (Point::new(1.0, 2.0), "renamed"),
        (Point::new(3.0, 4.0), "again"),
    ] {
        let record = record(&[
            ("NAME", FieldValue::Character(Some(label.into()))),
            ("AREA", FieldValue::Numeric(Some(1.0))),
            ("OK", FieldValue::Logical(Some(true))),
            (
                "DAY",
                FieldValue::Date(Some(dbase::Date::new(1, 1, 2024).expect("date"))),
            ),
        ]);
        writer
            .write_shape_and_record(&shape, &record)
            .expect("write");
    }
    drop(writer);
    std::fs::copy(other.join("points.dbf"), project.dir.join("raw/points.dbf")).expect("dbf");
    let changed = project.run(&["--step", "shp:convert"]).expect(0);
    assert!(
        flat(&changed.stderr).contains("done shp:convert"),
        "{}",
        changed.stderr
    );
    let csv = std::fs::read_to_string(project.dir.join("csv/points.csv")).expect("csv");
    assert!(csv.contains("renamed"), "{csv}");
}

const DIRECT: &str = r#"flow direct

database flow = env("FLOW_DATABASE_URL")

step pg:flow:configure {}

step shp:load {
  from = "raw/**/*.shp"
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_files_are_named_and_leave_their_tables_as_they_were() {
    let project = Project::new("shp", "corrupt", "direct.flow", DIRECT).await;
    let raw = project.dir.join("raw");
    write_fixtures(&raw);
    project.run(&[]).expect(0);
    // A .dbf cut inside its header, and a .shp that is no shapefile.
    let dbf = std::fs::read(raw.join("points.dbf")).expect("dbf");
    std::fs::write(raw.join("points.dbf"), &dbf[..40]).expect("cut");
    std::fs::write(raw.join("roads.shp"), "id,name\n".repeat(40)).expect("text");
    let output = project.run(&[]).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("points.dbf` ends inside its header"),
        "{text}"
    );
    assert!(
        text.contains("roads.shp` is not a shapefile: it starts with"),
        "{text}"
    );
    assert!(
        !text.contains("panicked") && !text.contains("Error {") && !text.contains("Kind"),
        "{text}"
    );
    let client = project.db.client().await.expect("connect");
    let count = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SELECT count(*) FROM source.{table}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("points").await, 2, "the table keeps its rows");
    assert_eq!(count("roads").await, 1, "the table keeps its rows");

    // With `skip_failures`, the good files load and the bad ones are named.
    project.write(
        "direct.flow",
        &DIRECT.replace(
            "from = \"raw/**/*.shp\"",
            "from = \"raw/**/*.shp\"\n  skip_failures = true",
        ),
    );
    client
        .batch_execute("DELETE FROM source.zones")
        .await
        .expect("empty zones");
    let output = project.run(&[]).expect(0);
    let text = flat(&output.stderr);
    assert!(
        text.contains("skipped `raw/points.shp`") && text.contains("skipped `raw/roads.shp`"),
        "{text}"
    );
    assert_eq!(count("zones").await, 2, "the good file loaded");
}
