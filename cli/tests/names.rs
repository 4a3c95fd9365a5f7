//! Names that come from data (file names, CSV headers, DBF fields) and names
//! written in a flow: every value arrives under a distinct, predictable name,
//! or flow refuses before writing, naming the input. A table made beforehand
//! in the same database is untouched either way.

mod support;

use dbase::{FieldValue, Record, TableWriterBuilder};
use shapefile::{Point, Writer};
use support::{Project, flat};

const FLOW: &str = r#"flow names

database flow = env("FLOW_DATABASE_URL")

groups seed

step pg:source:create {
  group = seed
  from = "csv/*.csv"
}

step pg:source:load {
  group = seed
  from = "csv/*.csv"
  max_errors = 5
}
"#;

/// The flow, and a table of its own beside what it loads.
async fn project(name: &str) -> Project {
    let project = Project::new("names", name, "names.flow", FLOW).await;
    let client = project.db.client().await.expect("connect");
    client
        .batch_execute(
            "CREATE SCHEMA source; CREATE TABLE source.keep (n int); INSERT INTO source.keep VALUES (1), (2)",
        )
        .await
        .expect("keep");
    project
}

async fn rows(project: &Project, sql: &str) -> Vec<Vec<Option<String>>> {
    let client = project.db.client().await.expect("connect");
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
        .collect()
}

async fn kept(project: &Project) {
    assert_eq!(
        rows(project, "SELECT n::text FROM source.keep ORDER BY n").await,
        [[Some("1".to_owned())], [Some("2".to_owned())]],
        "a table the flow does not name is untouched"
    );
}

async fn columns(project: &Project, table: &str) -> Vec<String> {
    rows(
        project,
        &format!(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass('source.{table}')
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap_or_default())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_whose_names_share_63_bytes_load_into_tables_of_their_own() {
    let project = project("longfiles").await;
    let base = "a".repeat(60);
    project.write(&format!("csv/{base}_january.csv"), "n\n1\n");
    project.write(&format!("csv/{base}_february.csv"), "n\n2\n3\n");
    project.run(&[]).expect(0);
    let tables = rows(
        &project,
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'source'::regnamespace
         AND relkind = 'r' AND relname <> 'keep' ORDER BY relname",
    )
    .await;
    assert_eq!(tables.len(), 2, "{tables:?}");
    let mut counts = Vec::new();
    for table in &tables {
        let name = table[0].clone().expect("name");
        assert!(
            name.len() <= 63 && name.starts_with(&"a".repeat(54)),
            "{name}"
        );
        let count = rows(
            &project,
            &format!("SELECT count(*)::text FROM source.\"{name}\""),
        )
        .await;
        counts.push(count[0][0].clone().expect("count"));
    }
    counts.sort();
    assert_eq!(counts, ["1", "2"], "each file's rows in its own table");
    // The same names again: the same tables, nothing "changed".
    project.run(&["--force"]).expect(0);
    kept(&project).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_named_like_anothers_reject_table_is_refused_before_writing() {
    let project = project("rejectname").await;
    project.write("csv/t.csv", "n\n1\n");
    project.write("csv/t_rejects.csv", "line\n7\n");
    let output = project.run(&[]).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains(
            "`csv/t_rejects.csv` and `csv/t.csv` would both write table `source.t_rejects`"
        ),
        "{text}"
    );
    kept(&project).await;
    // pg:source:create made the tables; the load wrote nothing.
    assert_eq!(
        rows(&project, "SELECT count(*)::text FROM source.t_rejects").await[0][0].as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_repeated_and_odd_headers_keep_every_value_under_a_distinct_name() {
    let project = project("headers").await;
    let long = "h".repeat(70);
    let longer = format!("{long}x");
    // Repeated names, names equal in their first 63 bytes, a `$flow$` and a
    // `flow_line` that the reject path must not confuse with its own.
    project.write(
        "csv/odd.csv",
        &format!(
            "a,a,{long},{longer},\"x$flow$y\",flow_line,n\n1,2,3,4,5,6,7\n8,9,10,11,12,13,oops\n"
        ),
    );
    project.write("csv/tidy.csv", "n\n1\n");
    let output = project.run(&[]).expect(0);
    let columns = columns(&project, "odd").await;
    assert_eq!(columns.len(), 7, "{columns:?}");
    assert_eq!(&columns[..2], ["a", "a_2"]);
    assert!(
        columns[2] != columns[3] && columns[2].len() <= 63,
        "{columns:?}"
    );
    assert_eq!(&columns[4..], ["x$flow$y", "flow_line", "n"]);
    // `n` is text (`oops`), every value is there.
    let values = rows(&project, "SELECT a::text, a_2::text, \"x$flow$y\"::text, flow_line::text, n FROM source.odd ORDER BY a").await;
    assert_eq!(values.len(), 2, "{values:?}; {}", output.stderr);
    assert_eq!(
        values[0],
        ["1", "2", "5", "6", "7"].map(|v| Some(v.to_owned()))
    );
    // The long header maps the same way the next time: no "changed header".
    project.run(&["--force"]).expect(0);
    kept(&project).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_go_to_the_reject_table_whatever_the_headers() {
    let project = project("rejectheaders").await;
    project.write("csv/typed.csv", "\"x$flow$y\",flow_line\n1,2\n3,4\n");
    project.run(&["--step", "pg:source:create"]).expect(0);
    project.write("csv/typed.csv", "\"x$flow$y\",flow_line\n1,2\nbad,4\n5,6\n");
    let output = project.run(&["--step", "pg:source:load"]).expect(0);
    assert!(
        flat(&output.stderr).contains("1 rejected"),
        "{}",
        output.stderr
    );
    let rejected = rows(
        &project,
        "SELECT line::text, row->>'x$flow$y', row->>'flow_line' FROM source.typed_rejects",
    )
    .await;
    assert_eq!(
        rejected,
        [[
            Some("3".to_owned()),
            Some("bad".to_owned()),
            Some("4".to_owned())
        ]]
    );
    assert_eq!(
        rows(&project, "SELECT count(*)::text FROM source.typed").await[0][0].as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_postgresql_cannot_hold_is_named() {
    let project = project("nulheader").await;
    project.write("csv/nul.csv", "ok,\"bad\0name\"\n1,2\n");
    let output = project.run(&[]).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("csv/nul.csv")
            && text.contains("column 2 of its header")
            && text.contains("NUL"),
        "{text}"
    );
    kept(&project).await;
}

fn write_dbf_twice_named(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let name = |t: &str| -> dbase::FieldName { t.try_into().expect("name") };
    let table = TableWriterBuilder::new()
        .add_character_field(name("NAME"), 10)
        .add_character_field(name("NAME"), 10);
    let mut writer = Writer::from_path(dir.join("twice.shp"), table).expect("writer");
    let mut record = Record::default();
    record.insert("NAME".into(), FieldValue::Character(Some("x".into())));
    writer
        .write_shape_and_record(&Point::new(1.0, 2.0), &record)
        .expect("write");
}

#[tokio::test(flavor = "multi_thread")]
async fn dbf_fields_of_one_name_are_refused_on_both_paths() {
    let flow = r#"flow twice

database flow = env("FLOW_DATABASE_URL")

step shp:convert {
  from = "raw/*.shp"
  to = "csv"
}

step shp:load {
  from = "raw/*.shp"
}
"#;
    let project = Project::new("names", "dbftwice", "twice.flow", flow).await;
    write_dbf_twice_named(&project.dir.join("raw"));
    for step in ["shp:convert", "shp:load"] {
        let output = project.run(&["--step", step]).expect(1);
        let text = flat(&output.stderr);
        assert!(
            text.contains("twice.shp") && text.contains("its .dbf has two fields named `NAME`"),
            "{step}: {text}"
        );
    }
    assert!(!project.dir.join("csv/twice.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_named_geom_keeps_its_values_beside_the_geometry() {
    let flow = r#"flow geomfield

database flow = env("FLOW_DATABASE_URL")

step pg:flow:configure {}

step shp:load {
  from = "raw/*.shp"
}
"#;
    let project = Project::new("names", "geomfield", "geomfield.flow", flow).await;
    std::fs::create_dir_all(project.dir.join("raw")).expect("dir");
    let name = |t: &str| -> dbase::FieldName { t.try_into().expect("name") };
    let table = TableWriterBuilder::new().add_character_field(name("geom"), 10);
    let mut writer = Writer::from_path(project.dir.join("raw/g.shp"), table).expect("writer");
    let mut record = Record::default();
    record.insert("geom".into(), FieldValue::Character(Some("kept".into())));
    writer
        .write_shape_and_record(&Point::new(1.0, 2.0), &record)
        .expect("write");
    drop(writer);
    project.run(&[]).expect(0);
    assert_eq!(
        rows(&project, "SELECT geom, ST_AsText(geom_2) FROM source.g").await,
        [[Some("kept".to_owned()), Some("POINT(1 2)".to_owned())]]
    );
}

#[test]
fn reserved_and_over_long_schemas_are_refused_at_check() {
    let dir = std::env::temp_dir().join(format!("flow-names-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let long = "s".repeat(64);
    std::fs::write(
        dir.join("schemas.flow"),
        format!(
            "flow schemas\n\ndatabase flow = \"embedded\"\n\nstep pg:source:create {{\n  from = \"a/*.csv\"\n  schema = _flow\n}}\n\nstep pg:source:load {{\n  from = \"a/*.csv\"\n  schema = {long}\n}}\n"
        ),
    )
    .expect("flow");
    let output = support::Flow::new(["check", "schemas.flow"])
        .dir(&dir)
        .expect(2);
    let text = flat(&output.stderr);
    assert!(text.contains("schema `_flow` is reserved"), "{text}");
    assert!(text.contains("schemas.flow:7"), "{text}");
    assert!(
        text.contains("is 64 bytes long; PostgreSQL keeps 63"),
        "{text}"
    );
    assert!(text.contains("schemas.flow:12"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
