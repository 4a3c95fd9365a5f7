//! Publishing: `pg:<db>:export` and `minio:upload` against real PostGIS and
//! SeaweedFS, and the files read back by other tools (`ogr2ogr`,
//! `minio:download`, `pg:source:load`).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;
use support::reference::Reference;
use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use support::{Flow, Folder, flat};

const PUBLISH: &str = r#"flow publish

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")
storage out = env("OUT_URL")

step pg:api:export {
  tables = [parcels, zoning]
  to = "exports/{release}/{table}.csv"
  release = "1.0"
}

step pg:api:export queries {
  sql = "queries/*.sql"
  to = "exports/{release}/queries/{table}.csv"
  release = "1.0"
}

step pg:api:export geojson {
  tables = [parcels]
  to = "exports/{release}/geojson/{table}.geojson"
  release = "1.0"
  reproject = true
}

step minio:upload {
  from = "exports"
  to = out "releases/"
}
"#;

const IMPORT: &str = r#"flow import

database flow = env("IMPORT_DATABASE_URL")
storage out = env("OUT_URL")

step minio:download {
  from = out "releases/1.0/"
  to = "imported"
}

step pg:flow:configure {}

step pg:source:create {
  from = "imported/*.csv"
  schema = imported
}

step pg:source:load {
  from = "imported/*.csv"
  schema = imported
}
"#;

/// Every row of a table, each value as text and geometry as hex EWKB, by key.
async fn rows(client: &flow_db::tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
        .collect()
}

const PARCELS: &str = "SELECT id::text, zoning::text, owner, owned_since::text, area_m2::text,
    encode(ST_AsEWKB(geom), 'hex') FROM {schema}.parcels ORDER BY id";
const ZONING: &str = "SELECT class::text, parcels::text, area_m2::text,
    encode(ST_AsEWKB(geom), 'hex') FROM {schema}.zoning ORDER BY class::text";

/// Asserts two row sets are equal, naming the first difference.
fn same(got: &[Vec<Option<String>>], expected: &[Vec<Option<String>>], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: row counts");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g, e, "{what}: the first row that differs");
    }
}

fn sha256(path: &Path) -> String {
    let output = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .expect("the manifest is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_publishes_its_tables_and_another_flow_starts_from_them() {
    let reference = Reference::new("pub").await;
    reference.run(&[]).expect(0);
    let server = S3Server::shared().await;
    let bucket = server.bucket("published").await;
    let out = server.url(&bucket, "");
    let dir = &reference.dir;
    std::fs::write(dir.join("publish.flow"), PUBLISH).expect("flow");
    std::fs::create_dir_all(dir.join("queries")).expect("dir");
    std::fs::write(
        dir.join("queries/large_parcels.sql"),
        "-- parcels over a hectare\nSELECT id, owner, area_m2 FROM parcels WHERE area_m2 > (SELECT avg(area_m2) FROM parcels) ORDER BY id;\n",
    )
    .expect("sql");
    let publish = |args: &[&str]| {
        let mut all = vec!["run", "publish.flow", "--plain"];
        all.extend(args);
        let mut flow = Flow::new(all).dir(dir).env("OUT_URL", &out);
        for (name, value) in reference.env() {
            flow = flow.env(name, value);
        }
        flow
    };
    let first = publish(&[]).expect(0);
    let text = flat(&first.stderr);
    assert!(text.contains("2 file(s), "), "{text}");
    assert!(text.contains("uploaded, 0 unchanged"), "{text}");

    // The manifest says what each file holds, and it is so.
    let release = dir.join("exports/1.0");
    let listed = manifest(&release.join("manifest.json"));
    assert_eq!(listed["release"], "1.0");
    assert!(listed["run"].as_i64().is_some(), "{listed}");
    let api = reference.api().await;
    for file in listed["files"].as_array().expect("files") {
        let name = file["file"].as_str().expect("file");
        let path = release.join(name);
        assert_eq!(
            file["sha256"].as_str(),
            Some(sha256(&path).as_str()),
            "{name}"
        );
        assert_eq!(
            file["bytes"].as_u64(),
            Some(std::fs::metadata(&path).expect("file").len())
        );
        let table = file["name"].as_str().expect("name");
        let count: i64 = api
            .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(file["rows"].as_i64(), Some(count), "{name}");
    }
    let queries = manifest(&release.join("queries/manifest.json"));
    let large: i64 = api
        .query_one("SELECT count(*) FROM public.parcels WHERE area_m2 > (SELECT avg(area_m2) FROM public.parcels)", &[])
        .await
        .expect("count")
        .get(0);
    assert!(large > 0, "the query selects some parcels");
    assert_eq!(queries["files"][0]["rows"].as_i64(), Some(large));
    assert_eq!(queries["files"][0]["query"], "queries/large_parcels.sql");

    // Nothing changed in the API: nothing is written or sent again.
    let again = publish(&[]).expect(0);
    let text = flat(&again.stderr);
    assert!(
        text.contains("unchanged since `exports/1.0/manifest.json`"),
        "{text}"
    );
    assert!(
        text.contains("skip minio:upload (unchanged since run"),
        "{text}"
    );
    // Forced, the upload finds every object there as it is and sends none.
    let forced = publish(&["--force"]).expect(0);
    let text = flat(&forced.stderr);
    assert!(text.contains("0 uploaded, 7 unchanged"), "{text}");

    // GeoJSON read by GDAL equals the API's rows.
    let gdal_db = TestDatabase::create("pubgdal").await.expect("database");
    let gdal = gdal_db.client().await.expect("client");
    gdal.batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")
        .await
        .expect("postgis");
    support::ogr2ogr(
        &gdal_db.gdal_connection(),
        &release.join("geojson/parcels.geojson"),
        "parcels",
        &[],
    )
    .expect("ogr2ogr reads the GeoJSON");
    let expected = rows(&api, &PARCELS.replace("{schema}", "public")).await;
    assert_eq!(expected.len(), 400);
    // GDAL's PostgreSQL driver writes doubles with 15 significant digits, so
    // the areas are compared in the file itself, below.
    let without_area = |rows: Vec<Vec<Option<String>>>| -> Vec<Vec<Option<String>>> {
        rows.into_iter()
            .map(|mut row| {
                row.remove(4);
                row
            })
            .collect()
    };
    same(
        &without_area(rows(&gdal, &PARCELS.replace("{schema}", "public")).await),
        &without_area(expected.clone()),
        "GDAL",
    );
    let geojson = manifest(&release.join("geojson/parcels.geojson"));
    assert_eq!(geojson["type"], "FeatureCollection");
    assert!(geojson.get("crs").is_none(), "WGS 84 is GeoJSON's own CRS");
    assert_eq!(geojson["features"].as_array().map(Vec::len), Some(400));
    // Numbers read as text: serde_json's float parsing may be a unit off in
    // the last place; Rust's `parse` is exact. One feature per line.
    let text = std::fs::read_to_string(release.join("geojson/parcels.geojson")).expect("file");
    let number = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
        let rest = line[start..].trim_start();
        Some(rest[..rest.find([',', '}'])?].to_owned())
    };
    let areas: std::collections::HashMap<i64, f64> = text
        .lines()
        .filter(|line| line.contains("\"properties\""))
        .map(|line| {
            let id = number(line, "id").and_then(|n| n.parse().ok()).expect("id");
            let area = number(line, "area_m2")
                .and_then(|n| n.parse().ok())
                .expect("area");
            (id, area)
        })
        .collect();
    for row in api
        .query("SELECT id, area_m2 FROM public.parcels", &[])
        .await
        .expect("areas")
    {
        let (id, area): (i32, f64) = (row.get(0), row.get(1));
        assert_eq!(areas.get(&i64::from(id)), Some(&area), "parcel {id}");
    }

    // Another flow downloads the release and loads it: the rows are the API's.
    let import = TestDatabase::create("pubimport").await.expect("database");
    std::fs::write(dir.join("import.flow"), IMPORT).expect("flow");
    Flow::new(["run", "import.flow", "--plain"])
        .dir(dir)
        .env("OUT_URL", &out)
        .env("IMPORT_DATABASE_URL", import.url())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .expect(0);
    let imported = import.client().await.expect("client");
    same(
        &rows(&imported, &PARCELS.replace("{schema}", "imported")).await,
        &expected,
        "imported parcels",
    );
    same(
        &rows(&imported, &ZONING.replace("{schema}", "imported")).await,
        &rows(&api, &ZONING.replace("{schema}", "public")).await,
        "imported zoning",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_export_leaves_the_previous_one_and_values_come_from_the_run() {
    let db = TestDatabase::create("pubfail").await.expect("database");
    let client = db.client().await.expect("client");
    client
        .batch_execute(
            "CREATE TABLE public.people (id int PRIMARY KEY, name text, note text);
             INSERT INTO public.people VALUES (1, 'Ada', ''), (2, NULL, 'line one\nline \"two\"'), (3, 'Zoë', ',');",
        )
        .await
        .expect("table");
    let folder = Folder::new("pub", "fail");
    folder.write(
        "out.flow",
        "flow out\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep pg:flow:export {\n  tables = [people]\n  sql = \"queries/*.sql\"\n  to = \"exports/{release}/{table}.csv\"\n}\n",
    );
    folder.write(
        "queries/named.sql",
        "SELECT id, name FROM people WHERE name IS NOT NULL",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["run", "out.flow", "--plain"];
        all.extend(args);
        Flow::new(all)
            .dir(&folder.dir)
            .env("FLOW_DATABASE_URL", db.url())
    };
    // No release: the run says which value is missing and how to give it.
    let missing = run(&[]).expect(1);
    let text = flat(&missing.stderr);
    assert!(text.contains("flow::values::missing"), "{text}");
    assert!(text.contains("--var release=VALUE"), "{text}");

    run(&["--var", "release=2026-11-30"]).expect(0);
    let people = folder.read("exports/2026-11-30/people.csv");
    assert_eq!(
        people,
        "id,name,note\n1,Ada,\"\"\n2,,\"line one\nline \"\"two\"\"\"\n3,Zoë,\",\"\n"
    );
    let manifest_before = folder.read("exports/2026-11-30/manifest.json");
    assert!(manifest_before.contains("\"rows\": 3"), "{manifest_before}");

    // The table changes, and the query breaks: nothing of the export changes.
    client
        .batch_execute("INSERT INTO public.people VALUES (4, 'Grace', NULL)")
        .await
        .expect("insert");
    folder.write("queries/named.sql", "SELECT id, nope FROM people");
    let failed = run(&["--var", "release=2026-11-30"]).expect(1);
    let text = flat(&failed.stderr);
    assert!(text.contains("flow::export::read"), "{text}");
    assert!(text.contains("queries/named.sql"), "{text}");
    assert_eq!(folder.read("exports/2026-11-30/people.csv"), people);
    assert_eq!(
        folder.read("exports/2026-11-30/manifest.json"),
        manifest_before
    );
    let left: Vec<PathBuf> = std::fs::read_dir(folder.dir.join("exports/2026-11-30"))
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("flow-part"))
        .collect();
    assert!(left.is_empty(), "no partial file is left: {left:?}");

    // `flow check` refuses one file for several tables and an unknown format.
    folder.write(
        "bad.flow",
        "flow bad\n\nstep pg:flow:export {\n  tables = [a, b]\n  to = \"exports/all.txt\"\n}\n",
    );
    let check = Flow::new(["check", "bad.flow"]).dir(&folder.dir).expect(2);
    let text = flat(&check.stderr);
    assert!(
        text.contains("would be the same file for every table"),
        "{text}"
    );
    assert!(text.contains("cannot tell the format"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn geojson_names_its_crs_or_is_reprojected_to_wgs84() {
    let db = TestDatabase::create("pubcrs").await.expect("database");
    let client = db.client().await.expect("client");
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             CREATE TABLE public.sites (id int PRIMARY KEY, name text, geom geometry(Point, 2056));
             INSERT INTO public.sites VALUES (1, 'Bern', 'SRID=2056;POINT(2600000.123456789 1200000.987654321)');
             CREATE TABLE public.plain (id int);",
        )
        .await
        .expect("tables");
    let folder = Folder::new("pub", "crs");
    folder.write(
        "out.flow",
        "flow out\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep pg:flow:export {\n  tables = [sites]\n  to = \"native/{table}.geojson\"\n}\n\nstep pg:flow:export wgs84 {\n  tables = [sites]\n  to = \"wgs84/{table}.geojson\"\n  reproject = true\n}\n",
    );
    Flow::new(["run", "out.flow", "--plain"])
        .dir(&folder.dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    let native = folder.read("native/sites.geojson");
    assert!(native.contains("urn:ogc:def:crs:EPSG::2056"), "{native}");
    assert!(
        native.contains("[2600000.123456789,1200000.987654321]"),
        "coordinates as stored: {native}"
    );
    let wgs84 = folder.read("wgs84/sites.geojson");
    assert!(!wgs84.contains("\"crs\""), "{wgs84}");
    let expected: String = client
        .query_one(
            "SELECT ST_AsGeoJSON(ST_Transform(geom, 4326), 40) FROM public.sites",
            &[],
        )
        .await
        .expect("transform")
        .get(0);
    assert!(wgs84.contains(&expected), "{wgs84} holds {expected}");

    // A table without geometry cannot be GeoJSON: the run says so.
    folder.write(
        "out.flow",
        "flow out\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep pg:flow:export {\n  tables = [plain]\n  to = \"native/{table}.geojson\"\n}\n",
    );
    let failed = Flow::new(["run", "out.flow", "--plain"])
        .dir(&folder.dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(1);
    let text = flat(&failed.stderr);
    assert!(
        text.contains("has no geometry column for GeoJSON"),
        "{text}"
    );
}

/// The keys under a prefix, with their sizes.
async fn objects(bucket: &s3::Bucket, prefix: &str) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = bucket
        .list(prefix.to_owned(), None)
        .await
        .expect("list")
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|o| (o.key, o.size))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_upload_leaves_no_partial_object_and_a_rerun_completes() {
    let mut server = S3Server::private("killedup").await;
    let db = TestDatabase::create("killedup").await.expect("database");
    let bucket = server.bucket("killedup").await;
    let folder = Folder::new("pub", "killed");
    let url = server.url(&bucket, "");
    folder.write(
        "up.flow",
        "flow up\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\nstorage out = env(\"OUT_URL\")\n\nstep minio:upload {\n  from = \"release\"\n  to = out \"r/\"\n  jobs = 1\n  retries = 4\n}\n",
    );
    let chunk: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    std::fs::create_dir_all(folder.dir.join("release/parts")).expect("dir");
    for i in 0..80 {
        std::fs::write(
            folder.dir.join(format!("release/parts/f{i:03}.bin")),
            &chunk,
        )
        .expect("file");
    }
    // Three parts of a multipart upload.
    let large: Vec<u8> = chunk
        .iter()
        .cycle()
        .take(20 * 1024 * 1024)
        .copied()
        .collect();
    std::fs::write(folder.dir.join("release/large.bin"), &large).expect("file");
    folder.write("release/manifest.json", "{\"files\": 81}");
    let child = support::spawn_flow(&folder.dir, "up.flow", "OUT_URL", &url, &db.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects(&bucket, "r/").await.len() < 3 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let output = child.wait_with_output().expect("flow ends");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.restart().await;
    let there = objects(&bucket, "r/").await;
    assert!(
        there.len() < 82,
        "the server was killed before the end: {there:?}"
    );
    assert!(
        !there.iter().any(|(key, _)| key == "r/manifest.json"),
        "the manifest goes last: {there:?}"
    );
    for (key, size) in &there {
        let expected = if key == "r/large.bin" {
            large.len()
        } else {
            chunk.len()
        };
        assert_eq!(*size, expected as u64, "{key} is whole");
    }

    let up = || {
        Flow::new(["run", "up.flow", "--plain"])
            .dir(&folder.dir)
            .env("OUT_URL", &url)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("FLOW_DATABASE_URL", db.url())
            .expect(0)
    };
    let rerun = up();
    let text = flat(&rerun.stderr);
    assert!(
        text.contains(&format!("{} unchanged", there.len())),
        "what arrived before is not sent again: {text}"
    );
    assert_eq!(objects(&bucket, "r/").await.len(), 82);
    let body = bucket.get_object("r/large.bin").await.expect("get");
    assert_eq!(body.bytes().as_ref(), large.as_slice());

    // A file gone from the folder: reported, then mirrored with delete.
    std::fs::remove_file(folder.dir.join("release/parts/f000.bin")).expect("remove");
    let kept = up();
    assert!(
        flat(&kept.stderr).contains(
            "warning: 1 deleted from the folder but still in the storage: `parts/f000.bin`"
        ),
        "{}",
        kept.stderr
    );
    let flow = folder
        .read("up.flow")
        .replace("jobs = 1", "jobs = 1\n  delete = true");
    folder.write("up.flow", &flow);
    up();
    assert_eq!(objects(&bucket, "r/").await.len(), 81);
}
