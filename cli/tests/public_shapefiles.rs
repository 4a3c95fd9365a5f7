//! Real shapefiles from a public package (the test data of pyshp 2.3.1, MIT,
//! in `fixtures/pyshp/`): what `shp:load` and `shp:convert` + `pg:source:load`
//! put in PostGIS equals what `ogr2ogr` (Debian's gdal-bin, installed by
//! `scripts/prerequisites`) loads from the same files: geometries by
//! `ST_Equals`, attributes by value.

mod support;

use dbase::{FieldValue, Record, TableWriterBuilder};
use flow_db::testing::TestDatabase;
use shapefile::{
    MultipointM, MultipointZ, PointM, PointZ, PolygonM, PolygonRing, PolygonZ, PolylineM, Writer,
};
use support::{Flow, root};

const FLOW: &str = r#"flow public

database flow = env("FLOW_DATABASE_URL")

step pg:flow:configure {}

step shp:load pyshp {
  from = "pyshp/*.shp"
  schema = direct
}

step shp:convert {
  from = "pyshp/*.shp"
  to = "csv"
}

step pg:source:create {
  from = "csv/*.csv"
  schema = viacsv
}

step pg:source:load {
  from = "csv/*.csv"
  schema = viacsv
}

step shp:load latin1 {
  from = "pyshp/latin1/*.shp"
  schema = latin
  encoding = "latin1"
}
"#;

const FILES: &[&str] = &[
    "blockgroups",
    "MyPolyZ",
    "NullTest",
    "line",
    "linem",
    "linez",
    "multipoint",
    "point",
    "polygon",
];

fn ogr2ogr(gdal: &str, shp: &std::path::Path, table: &str, encoding: Option<&str>) {
    // pyshp's latin1 file comes without its .shx.
    let options: &[&str] = match encoding {
        Some(encoding) => &[
            "--config",
            "SHAPE_ENCODING",
            encoding,
            "--config",
            "SHAPE_RESTORE_SHX",
            "YES",
        ],
        None => &[],
    };
    if let Err(error) = support::ogr2ogr(gdal, shp, table, options) {
        panic!("ogr2ogr {}: {error}", shp.display());
    }
}

/// Rows of `ours` that differ from ogr2ogr's table, row by row in file order:
/// the geometry (ST_Equals, both NULL for null shapes) and every attribute.
async fn differences(
    client: &flow_db::tokio_postgres::Client,
    ours: &str,
    theirs: &str,
) -> Vec<String> {
    let (schema, table) = ours.split_once('.').expect("schema.table");
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'geom'
             ORDER BY a.attnum",
            &[&format!("\"{schema}\".\"{table}\"")],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut checks = vec![
        "NOT coalesce(ST_Equals(a.geom, b.geom), a.geom IS NULL AND b.geom IS NULL)".to_owned(),
    ];
    for (name, kind) in &columns {
        checks.push(if kind == "double precision" || kind == "bigint" {
            format!("abs(a.\"{name}\"::float8 - b.\"{name}\"::float8) > 1e-9 OR (a.\"{name}\" IS NULL) <> (b.\"{name}\" IS NULL)")
        } else {
            format!("nullif(trim(a.\"{name}\"::text), '') IS DISTINCT FROM nullif(trim(b.\"{name}\"::text), '')")
        });
    }
    let sql = format!(
        "WITH a AS (SELECT row_number() OVER () AS flow_n, * FROM \"{schema}\".\"{table}\"),
              b AS (SELECT row_number() OVER (ORDER BY ogr_fid) AS flow_n, * FROM {theirs})
         SELECT coalesce(a.flow_n, b.flow_n)::text || ': ' || concat_ws(' | ', ST_AsText(a.geom), ST_AsText(b.geom))
         FROM a FULL JOIN b ON a.flow_n = b.flow_n
         WHERE a.flow_n IS NULL OR b.flow_n IS NULL OR {}
         LIMIT 5",
        checks.join(" OR ")
    );
    client
        .query(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{ours}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Loads `shp` with ogr2ogr as `ogr.<name>`, and asserts that what both of
/// flow's paths loaded (`direct.<name>`, `viacsv.<name>`) equals it.
async fn assert_like_ogr2ogr(
    client: &flow_db::tokio_postgres::Client,
    gdal: &str,
    shp: &std::path::Path,
    name: &str,
) {
    ogr2ogr(gdal, shp, &format!("ogr.{name}"), None);
    for schema in ["direct", "viacsv"] {
        let differing = differences(
            client,
            &format!("{schema}.{name}"),
            &format!("ogr.\"{name}\""),
        )
        .await;
        assert!(
            differing.is_empty(),
            "{schema}.{name} differs from ogr2ogr: {differing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_shapefiles_load_as_ogr2ogr_loads_them() {
    let dir = std::env::temp_dir().join(format!("flow-public-shp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pyshp/latin1")).expect("dir");
    for folder in ["", "latin1"] {
        let from = root().join("fixtures/pyshp").join(folder);
        for entry in std::fs::read_dir(&from).expect("fixtures").flatten() {
            if entry.path().is_file() {
                std::fs::copy(
                    entry.path(),
                    dir.join("pyshp").join(folder).join(entry.file_name()),
                )
                .expect("copy");
            }
        }
    }
    std::fs::write(dir.join("public.flow"), FLOW).expect("flow");
    let db = TestDatabase::create("publicshp").await.expect("database");
    let output = Flow::new(["run", "public.flow"])
        .dir(&dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    assert!(
        output.stderr.contains("it has no .prj: SRID 0 written"),
        "{}",
        output.stderr
    );
    let client = db.client().await.expect("connect");
    client
        .batch_execute("CREATE SCHEMA ogr")
        .await
        .expect("schema");
    for name in FILES {
        assert_like_ogr2ogr(
            &client,
            &db.gdal_connection(),
            &dir.join(format!("pyshp/{name}.shp")),
            name,
        )
        .await;
    }
    ogr2ogr(
        &db.gdal_connection(),
        &dir.join("pyshp/latin1/latin1.shp"),
        "ogr.latin1",
        Some("LATIN1"),
    );
    let differing = differences(&client, "latin.latin1", "ogr.latin1").await;
    assert!(
        differing.is_empty(),
        "latin1 differs from ogr2ogr: {differing:?}"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM direct.blockgroups", &[])
        .await
        .expect("count")
        .get(0);
    assert!(rows > 600, "{rows}");
    // NullTest's empty values (`****` numbers, `00000000` dates) are NULL.
    let nulls: i64 = client
        .query_one(
            "SELECT count(*) FROM direct.\"NullTest\" WHERE \"MY_DATE\" IS NULL AND \"MY_INT\" IS NULL",
            &[],
        )
        .await
        .expect("nulls")
        .get(0);
    assert!(nulls > 0, "NullTest has empty values");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One file per shape type the pyshp files do not cover, two records each.
fn write_every_type(dir: &std::path::Path) {
    fn write<S: shapefile::record::EsriShape>(dir: &std::path::Path, name: &str, shapes: &[S]) {
        let table =
            TableWriterBuilder::new().add_character_field("LABEL".try_into().expect("field"), 10);
        let mut writer = Writer::from_path(dir.join(format!("{name}.shp")), table).expect("writer");
        for (i, shape) in shapes.iter().enumerate() {
            let mut record = Record::default();
            record.insert(
                "LABEL".into(),
                FieldValue::Character(Some(format!("{name}{i}"))),
            );
            writer
                .write_shape_and_record(shape, &record)
                .expect("write");
        }
    }
    let square_m = |x: f64| {
        vec![
            PointM::new(x, 0.0, 1.0),
            PointM::new(x, 1.0, 2.0),
            PointM::new(x + 1.0, 1.0, 3.0),
            PointM::new(x + 1.0, 0.0, 4.0),
            PointM::new(x, 0.0, 1.0),
        ]
    };
    let square_z = |x: f64| {
        vec![
            PointZ::new(x, 0.0, 5.0, 1.0),
            PointZ::new(x, 1.0, 6.0, 2.0),
            PointZ::new(x + 1.0, 1.0, 7.0, 3.0),
            PointZ::new(x + 1.0, 0.0, 8.0, 4.0),
            PointZ::new(x, 0.0, 5.0, 1.0),
        ]
    };
    write(
        dir,
        "pointz",
        &[
            PointZ::new(1.0, 2.0, 3.0, 4.0),
            PointZ::new(5.0, 6.0, 7.0, 8.0),
        ],
    );
    write(
        dir,
        "pointm",
        &[PointM::new(1.0, 2.0, 3.0), PointM::new(4.0, 5.0, 6.0)],
    );
    write(
        dir,
        "multipointz",
        &[
            MultipointZ::new(vec![
                PointZ::new(0.0, 0.0, 1.0, 2.0),
                PointZ::new(1.0, 1.0, 3.0, 4.0),
            ]),
            MultipointZ::new(vec![PointZ::new(2.0, 2.0, 5.0, 6.0)]),
        ],
    );
    write(
        dir,
        "multipointm",
        &[
            MultipointM::new(vec![PointM::new(0.0, 0.0, 1.0), PointM::new(1.0, 1.0, 2.0)]),
            MultipointM::new(vec![PointM::new(2.0, 2.0, 3.0)]),
        ],
    );
    write(
        dir,
        "polylinem",
        &[
            PolylineM::new(vec![PointM::new(0.0, 0.0, 1.0), PointM::new(1.0, 1.0, 2.0)]),
            PolylineM::with_parts(vec![
                vec![PointM::new(0.0, 0.0, 1.0), PointM::new(1.0, 0.0, 2.0)],
                vec![PointM::new(5.0, 5.0, 3.0), PointM::new(6.0, 5.0, 4.0)],
            ]),
        ],
    );
    write(
        dir,
        "polygonm",
        &[
            PolygonM::with_rings(vec![PolygonRing::Outer(square_m(0.0))]),
            PolygonM::with_rings(vec![
                PolygonRing::Outer(square_m(10.0)),
                PolygonRing::Outer(square_m(20.0)),
            ]),
        ],
    );
    write(
        dir,
        "polygonz",
        &[
            PolygonZ::with_rings(vec![PolygonRing::Outer(square_z(0.0))]),
            PolygonZ::with_rings(vec![
                PolygonRing::Outer(square_z(10.0)),
                PolygonRing::Outer(square_z(30.0)),
            ]),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shape_type_loads_as_ogr2ogr_loads_it() {
    let dir = std::env::temp_dir().join(format!("flow-every-type-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pyshp")).expect("dir");
    write_every_type(&dir.join("pyshp"));
    std::fs::create_dir_all(dir.join("pyshp/latin1")).expect("dir");
    std::fs::write(dir.join("public.flow"), FLOW.replace("step shp:load latin1 {\n  from = \"pyshp/latin1/*.shp\"\n  schema = latin\n  encoding = \"latin1\"\n}\n", "")).expect("flow");
    let db = TestDatabase::create("everytype").await.expect("database");
    Flow::new(["run", "public.flow"])
        .dir(&dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    let client = db.client().await.expect("connect");
    client
        .batch_execute("CREATE SCHEMA ogr")
        .await
        .expect("schema");
    for name in [
        "pointz",
        "pointm",
        "multipointz",
        "multipointm",
        "polylinem",
        "polygonm",
        "polygonz",
    ] {
        assert_like_ogr2ogr(
            &client,
            &db.gdal_connection(),
            &dir.join(format!("pyshp/{name}.shp")),
            name,
        )
        .await;
        // Z and M arrive too (ST_Equals compares in 2D).
        let dims: String = client
            .query_one(
                &format!(
                    "SELECT string_agg(DISTINCT ST_CoordDim(geom)::text, ',') FROM direct.{name}"
                ),
                &[],
            )
            .await
            .expect("dims")
            .get(0);
        let expected = if name.ends_with('z') { "4" } else { "3" };
        assert_eq!(dims, expected, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
