//! Differential test on public shapefiles flow did not make: every shapefile
//! of several independent collections (`scripts/public-data` brings them from
//! package registries: npm's `shapefile` test files, geopandas' Natural Earth
//! datasets, libpysal's examples; and pyshp's test files in `fixtures/`) goes
//! through both of flow's paths (`shp:load`, and `shp:convert` →
//! `pg:source:create` → `pg:source:load`) and through `ogr2ogr`, and the
//! tables are compared row by row: geometry (ST_Equals, SRID, dimensions,
//! Z and M values), every attribute by value (numbers exactly, text exactly,
//! dates as dates, NULL as NULL). The test lists every file that differs and
//! how; it passes when none does, or when flow says why (a warning naming the
//! file) in the cases listed in `EXPLAINED`.

mod support;

use std::path::{Path, PathBuf};

use flow_db::testing::TestDatabase;
use support::{Flow, root};

/// Where `scripts/public-data` put the collections.
fn public_data() -> PathBuf {
    std::env::var_os("FLOW_PUBLIC_DATA")
        .map_or_else(|| root().join("target/public-data"), PathBuf::from)
}

/// Every shapefile of a collection, by path.
fn shapefiles(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("collection").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("shp"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn flow_text(table: &str) -> String {
    format!(
        r#"flow differential

database flow = env("FLOW_DATABASE_URL")

step pg:flow:configure {{}}

step shp:load {{
  from = "in/{table}.shp"
  schema = direct
}}

step shp:convert {{
  from = "in/{table}.shp"
  to = "csv"
}}

step pg:source:create {{
  from = "csv/{table}.csv"
  schema = viacsv
}}

step pg:source:load {{
  from = "csv/{table}.csv"
  schema = viacsv
}}
"#
    )
}

fn ogr2ogr(
    gdal: &str,
    shp: &Path,
    table: &str,
    encoding: Option<&str>,
    precision: bool,
) -> Result<(), String> {
    let mut options = vec![
        "-lco",
        "GEOM_TYPE=geometry",
        "--config",
        "SHAPE_RESTORE_SHX",
        "YES",
    ];
    if let Some(encoding) = encoding {
        options.extend(["--config", "SHAPE_ENCODING", encoding]);
    }
    if !precision {
        options.extend(["-lco", "PRECISION=NO"]);
    }
    support::ogr2ogr(gdal, shp, table, &options)
}

/// How the rows of `ours` differ from ogr2ogr's `theirs`, at most a few.
async fn differences(
    client: &flow_db::tokio_postgres::Client,
    ours: &str,
    theirs: &str,
) -> Vec<String> {
    let columns = |table: String| async move {
        client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname NOT IN ('geom', 'ogr_fid')
                 ORDER BY a.attnum",
                &[&table],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let (mine, reference) = (
        columns(ours.to_owned()).await,
        columns(theirs.to_owned()).await,
    );
    let names = |c: &[(String, String)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if names(&mine) != names(&reference) {
        return vec![format!(
            "columns {:?}, ogr2ogr has {:?}",
            names(&mine),
            names(&reference)
        )];
    }
    let boolean_text = |name: &str| {
        format!(
            "(CASE upper(trim(b.\"{name}\"::text)) WHEN 'T' THEN true WHEN 'Y' THEN true WHEN 'F' THEN false WHEN 'N' THEN false END)"
        )
    };
    let number = |kind: &str| {
        ["integer", "bigint", "smallint", "double precision", "real"].contains(&kind)
            || kind.starts_with("numeric")
    };
    let mut checks = vec![
        "NOT coalesce(ST_Equals(a.geom, b.geom), false) AND NOT (coalesce(ST_IsEmpty(a.geom), true) AND coalesce(ST_IsEmpty(b.geom), true))".to_owned(),
        "ST_SRID(a.geom) IS DISTINCT FROM ST_SRID(b.geom)".to_owned(),
        "ST_Zmflag(a.geom) IS DISTINCT FROM ST_Zmflag(b.geom)".to_owned(),
        "(SELECT sum(ST_Z(p.geom)) FROM ST_DumpPoints(a.geom) p) IS DISTINCT FROM (SELECT sum(ST_Z(p.geom)) FROM ST_DumpPoints(b.geom) p)".to_owned(),
        "(SELECT sum(ST_M(p.geom)) FROM ST_DumpPoints(a.geom) p) IS DISTINCT FROM (SELECT sum(ST_M(p.geom)) FROM ST_DumpPoints(b.geom) p)".to_owned(),
    ];
    for ((name, mine), (_, theirs)) in mine.iter().zip(&reference) {
        let name = name.replace('"', "\"\"");
        checks.push(if mine == "boolean" && theirs != "boolean" {
            // GDAL reads logical fields as their letter (`T`, `F`, `?`).
            format!("a.\"{name}\" IS DISTINCT FROM {}", boolean_text(&name))
        } else if number(mine) && number(theirs) {
            // GDAL reads every number through a double: flow's exact
            // decimals must be the same double.
            format!("a.\"{name}\"::float8 IS DISTINCT FROM b.\"{name}\"::float8")
        } else if mine == theirs {
            format!("a.\"{name}\" IS DISTINCT FROM b.\"{name}\"")
        } else {
            format!("a.\"{name}\"::text IS DISTINCT FROM b.\"{name}\"::text")
        });
    }
    let mut found = Vec::new();
    let a_rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {ours}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1);
    let b_rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {theirs}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1);
    if a_rows != b_rows {
        found.push(format!("{a_rows} rows, ogr2ogr has {b_rows}"));
    }
    for check in checks {
        let sql = format!(
            "WITH a AS (SELECT row_number() OVER () AS flow_n, * FROM {ours}),
                  b AS (SELECT row_number() OVER (ORDER BY ogr_fid) AS flow_n, * FROM {theirs})
             SELECT a.flow_n::text, count(*) OVER ()::text, (SELECT to_jsonb(x) - 'geom' - 'flow_n' FROM (SELECT a.*) x)::text,
                    (SELECT to_jsonb(x) - 'geom' - 'flow_n' - 'ogr_fid' FROM (SELECT b.*) x)::text,
                    concat_ws(' / ', left(ST_AsEWKT(a.geom), 80), left(ST_AsEWKT(b.geom), 80))
             FROM a JOIN b ON a.flow_n = b.flow_n WHERE {check} LIMIT 1"
        );
        match client.query(&sql, &[]).await {
            Ok(rows) => {
                for row in rows {
                    let (n, count, a, b, geoms): (String, String, String, String, String) =
                        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
                    let what = check.split(" IS DISTINCT").next().unwrap_or(&check);
                    found.push(format!(
                        "{count} rows differ in {what}; record {n}: flow {a} {geoms} | ogr2ogr {b}"
                    ));
                }
            }
            Err(error) => found.push(format!(
                "cannot compare ({check}): {}",
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |e| e.message().to_owned())
            )),
        }
    }
    found
}

/// A `.dbf` written byte by byte: `fields` as (name, type, length,
/// decimals), `rows` as the raw bytes of each value, `ldid` the language
/// driver byte.
fn dbf(fields: &[(&str, u8, u8, u8)], rows: &[Vec<&[u8]>], ldid: u8) -> Vec<u8> {
    let record_len: usize = 1 + fields.iter().map(|f| usize::from(f.2)).sum::<usize>();
    let header_len = 32 + 32 * fields.len() + 1;
    let mut out = vec![3u8, 124, 1, 1];
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(&(record_len as u16).to_le_bytes());
    out.extend_from_slice(&[0; 17]);
    out.push(ldid);
    out.extend_from_slice(&[0; 2]);
    for (name, kind, length, decimals) in fields {
        let mut descriptor = [0u8; 32];
        descriptor[..name.len()].copy_from_slice(name.as_bytes());
        descriptor[11] = *kind;
        descriptor[16] = *length;
        descriptor[17] = *decimals;
        out.extend_from_slice(&descriptor);
    }
    out.push(0x0D);
    for row in rows {
        out.push(b' ');
        for ((_, _, length, _), value) in fields.iter().zip(row) {
            let mut cell = vec![b' '; usize::from(*length)];
            cell[..value.len()].copy_from_slice(value);
            out.extend_from_slice(&cell);
        }
    }
    out.push(0x1A);
    out
}

/// A point shapefile (`.shp` and `.shx`) of `points`, each (x, y, z): type
/// 11 (PointZ) without the optional M, or type 1 when `z` is `None`.
fn points(points: &[(f64, f64, Option<f64>)]) -> (Vec<u8>, Vec<u8>) {
    let z = points.iter().any(|p| p.2.is_some());
    let (kind, content): (i32, usize) = if z { (11, 28) } else { (1, 20) };
    let header = |length: usize| {
        let mut h = vec![0u8; 100];
        h[..4].copy_from_slice(&9994i32.to_be_bytes());
        h[24..28].copy_from_slice(&((length / 2) as i32).to_be_bytes());
        h[28..32].copy_from_slice(&1000i32.to_le_bytes());
        h[32..36].copy_from_slice(&kind.to_le_bytes());
        h
    };
    let (mut shp, mut shx) = (Vec::new(), Vec::new());
    let mut records = Vec::new();
    for (i, (x, y, z)) in points.iter().enumerate() {
        let offset = 100 + records.len();
        shx.extend_from_slice(&((offset / 2) as i32).to_be_bytes());
        shx.extend_from_slice(&((content / 2) as i32).to_be_bytes());
        records.extend_from_slice(&(i as i32 + 1).to_be_bytes());
        records.extend_from_slice(&((content / 2) as i32).to_be_bytes());
        records.extend_from_slice(&kind.to_le_bytes());
        records.extend_from_slice(&x.to_le_bytes());
        records.extend_from_slice(&y.to_le_bytes());
        if let Some(z) = z {
            records.extend_from_slice(&z.to_le_bytes());
        }
    }
    shp.extend(header(100 + records.len()));
    shp.extend(records);
    let mut index = header(100 + shx.len());
    index.extend(shx);
    (shp, index)
}

/// Files made here for what public collections may lack: text in code
/// pages named by a `.cpg` (852) or by the language driver byte (1252), a
/// number with 15 significant digits in exponent form, codes with leading
/// zeros, PointZ without measures, a State Plane `.prj` in ESRI WKT.
fn write_generated(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let write = |name: &str, ext: &str, bytes: &[u8]| {
        std::fs::write(dir.join(format!("{name}.{ext}")), bytes).expect("write");
    };
    let (shp, shx) = points(&[(1.0, 2.0, None), (3.0, 4.0, None)]);
    for (name, cpg, ldid, text) in [
        ("cp852", Some("852"), 0u8, &b"\x9d\xa2d\xab"[..]),
        ("cp1252", None, 0x57, &b"Na\xe7\xe3o"[..]),
        (
            "ansi1251",
            Some("ANSI 1251"),
            0,
            &b"\xcc\xee\xf1\xea\xe2\xe0"[..],
        ),
    ] {
        write(name, "shp", &shp);
        write(name, "shx", &shx);
        if let Some(cpg) = cpg {
            write(name, "cpg", cpg.as_bytes());
        }
        write(
            name,
            "dbf",
            &dbf(
                &[("NAME", b'C', 20, 0)],
                &[vec![text], vec![b"plain"]],
                ldid,
            ),
        );
    }
    write("numbers", "shp", &shp);
    write("numbers", "shx", &shx);
    write(
        "numbers",
        "dbf",
        &dbf(
            &[
                ("AREA", b'F', 20, 11),
                ("CODE", b'C', 6, 0),
                ("BIG", b'N', 18, 0),
            ],
            &[
                vec![b"1.42948681360561E+03", b"000107", b"123456789012345678"],
                vec![b"-0.00000000001", b"069", b"-1"],
            ],
            0,
        ),
    );
    let (shp_z, shx_z) = points(&[(1.0, 2.0, Some(7.5)), (3.0, 4.0, Some(-2.0))]);
    write("zonly", "shp", &shp_z);
    write("zonly", "shx", &shx_z);
    write(
        "zonly",
        "dbf",
        &dbf(&[("ID", b'N', 4, 0)], &[vec![b"1"], vec![b"2"]], 0),
    );
    write("stateplane", "shp", &shp);
    write("stateplane", "shx", &shx);
    write(
        "stateplane",
        "dbf",
        &dbf(&[("ID", b'N', 4, 0)], &[vec![b"1"], vec![b"2"]], 0),
    );
    write(
        "stateplane",
        "prj",
        br#"PROJCS["NAD_1983_StatePlane_California_III_FIPS_0403_Feet",GEOGCS["GCS_North_American_1983",DATUM["D_North_American_1983",SPHEROID["GRS_1980",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic"],PARAMETER["False_Easting",6561666.666666666],PARAMETER["False_Northing",1640416.666666667],PARAMETER["Central_Meridian",-120.5],PARAMETER["Standard_Parallel_1",37.06666666666667],PARAMETER["Standard_Parallel_2",38.43333333333333],PARAMETER["Latitude_Of_Origin",36.5],UNIT["Foot_US",0.3048006096012192]]"#,
    );
}

/// Files for which flow must print a warning (stem, what it says), beside
/// loading what ogr2ogr loads.
const EXPLAINED: &[(&str, &str)] = &[
    ("ignore-properties", "it has no .dbf"),
    ("lattice10x10", "it has no .dbf"),
];

#[tokio::test(flavor = "multi_thread")]
async fn public_shapefiles_arrive_as_ogr2ogr_reads_them() {
    let data = public_data();
    let mut collections: Vec<(String, PathBuf)> =
        vec![("pyshp".into(), root().join("fixtures/pyshp"))];
    for name in ["npm-shapefile", "geopandas", "libpysal"] {
        let dir = data.join(name);
        assert!(
            dir.join(".complete").exists(),
            "`{}` is missing: run scripts/public-data (scripts/test does)",
            dir.display()
        );
        collections.push((name.into(), dir));
    }
    let generated = std::env::temp_dir().join(format!("flow-generated-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&generated);
    write_generated(&generated);
    collections.push(("generated".into(), generated.clone()));
    let db = TestDatabase::create("differential")
        .await
        .expect("database");
    let client = db.client().await.expect("connect");
    client
        .batch_execute("CREATE SCHEMA ogr")
        .await
        .expect("schema");
    let gdal = db.gdal_connection();
    let work = std::env::temp_dir().join(format!("flow-differential-{}", std::process::id()));
    let mut report = Vec::new();
    let mut compared = 0;
    for (collection, dir) in &collections {
        for shp in shapefiles(dir) {
            let stem = shp
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let place = format!(
                "{collection}/{}",
                shp.strip_prefix(dir).expect("inside").display()
            );
            let _ = std::fs::remove_dir_all(&work);
            std::fs::create_dir_all(work.join("in")).expect("dir");
            for entry in std::fs::read_dir(shp.parent().expect("folder"))
                .expect("folder")
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{stem}.")) {
                    std::fs::copy(entry.path(), work.join("in").join(&name)).expect("copy");
                }
            }
            std::fs::write(work.join("d.flow"), flow_text(&stem)).expect("flow");
            // A table per file and path; earlier ones dropped.
            client
                .batch_execute(
                    "DROP SCHEMA IF EXISTS direct, viacsv CASCADE; DROP TABLE IF EXISTS ogr.t;
                     CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public",
                )
                .await
                .expect("reset");
            let input = work.join(format!("in/{stem}.shp"));
            let mut theirs = ogr2ogr(&gdal, &input, "ogr.t", None, true);
            // ogr2ogr types `N(24,15)` as numeric(24,15), which cannot hold
            // the file's own 10-digit values: compare with its doubles.
            if theirs
                .as_ref()
                .is_err_and(|e| e.contains("COPY statement failed"))
            {
                theirs = ogr2ogr(&gdal, &input, "ogr.t", None, false);
            }
            // Text GDAL cannot pass on (no .cpg, no language driver, not
            // UTF-8): flow reads it as Windows-1252 and must say so.
            let mut why = EXPLAINED
                .iter()
                .find(|(s, _)| *s == stem)
                .map(|(_, why)| *why);
            if theirs.as_ref().is_err_and(|e| e.contains("Non UTF-8")) {
                theirs = ogr2ogr(&gdal, &input, "ogr.t", Some("CP1252"), true);
                why = Some("no encoding is declared; read as Windows-1252");
            }
            if theirs.is_ok() {
                client
                    .batch_execute(
                        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'ogr.t'::regclass AND attname = 'wkb_geometry')
                         THEN ALTER TABLE ogr.t RENAME wkb_geometry TO geom; END IF; END $$",
                    )
                    .await
                    .expect("geometry column");
            }
            let ours = Flow::new(["run", "d.flow"])
                .dir(&work)
                .env("FLOW_DATABASE_URL", db.url())
                .run();
            if let Some(why) = why
                && ours.code == 0
                && !support::flat(&ours.stderr).contains(why)
            {
                report.push(format!("{place}: flow does not say `{why}`"));
            }
            match (theirs, ours.code) {
                (Err(error), 0) => {
                    report.push(format!("{place}: flow loads it, ogr2ogr refuses: {error}"))
                }
                (Err(_), _) => {}
                (Ok(()), 0) => {
                    compared += 1;
                    let table = format!("\"{}\"", stem.replace('"', "\"\""));
                    for schema in ["direct", "viacsv"] {
                        let found =
                            differences(&client, &format!("{schema}.{table}"), "ogr.t").await;
                        if !found.is_empty() {
                            report.push(format!("{place} ({schema}): {}", found.join("; ")));
                        }
                    }
                }
                (Ok(()), code) => report.push(format!(
                    "{place}: ogr2ogr loads it, flow exits with {code}: {}",
                    support::flat(&ours.stderr)
                )),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&generated);
    assert!(
        report.is_empty(),
        "{} of the public shapefiles differ from ogr2ogr:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(compared > 40, "only {compared} files compared");
}
