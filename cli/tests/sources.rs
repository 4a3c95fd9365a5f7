//! `pg:source:create` and `pg:source:load` with CSV files, against PostGIS.

mod support;

use support::{Project, flat};

const FLOW: &str = r#"flow sources

database flow = env("FLOW_DATABASE_URL")

groups configure -> seed

step pg:flow:configure {
  group = configure
}

step pg:source:create {
  group = seed
  from = "csv/*.csv"
  schema = source
}

step pg:source:load {
  group = seed
  from = "csv/*.csv"
  schema = source
}
"#;

const PARCELS: &str = "id,zone,area m²,geom\n\
    1,residential,120.5,0101000020E6100000000000000000F03F0000000000000040\n\
    2,commercial,80,0101000020E610000000000000000008400000000000001040\n";

/// The flow with its two CSV files.
async fn project(name: &str) -> Project {
    let project = Project::new("sources", name, "sources.flow", FLOW).await;
    project.write("csv/parcels.csv", PARCELS);
    project.write(
        "csv/owners.csv",
        "name,since\nAda,2020-01-02\nGrace,2021-03-04\n",
    );
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_files_become_typed_tables_and_load_whole() {
    let project = project("csvload").await;
    project.run(&[]).expect(0);
    let client = project.db.client().await.expect("connect");
    let types: Vec<(String, String)> = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'source.parcels'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("id", "bigint"),
        ("zone", "text"),
        ("area m²", "numeric"),
        ("geom", "geometry(Point,4326)"),
    ];
    assert_eq!(types, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let row = client
        .query_one(
            "SELECT count(*), sum(\"area m²\")::text, ST_AsText(ST_Collect(geom)) FROM source.parcels",
            &[],
        )
        .await
        .expect("parcels");
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, String>(1), "200.5");
    assert_eq!(row.get::<_, String>(2), "MULTIPOINT((1 2),(3 4))");
    let since: String = client
        .query_one("SELECT max(since)::text FROM source.owners", &[])
        .await
        .expect("owners")
        .get(0);
    assert_eq!(since, "2021-03-04");

    // Loading again replaces the rows; the tables are kept.
    let output = project.run(&["--force"]).expect(0);
    assert!(
        output.stderr.contains("0 created, 2 already there"),
        "{}",
        output.stderr
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM source.parcels", &[])
        .await
        .expect("parcels")
        .get(0);
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_row_fails_the_load_with_its_place_and_keeps_the_old_rows() {
    let project = project("csvbad").await;
    project.run(&[]).expect(0);
    std::fs::write(
        project.dir.join("csv/parcels.csv"),
        format!("{PARCELS}3,industrial,lots,0101000020E6100000000000000000F03F0000000000000040\n"),
    )
    .expect("csv");
    let output = project.run(&["--step", "pg:source:load"]).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("`csv/parcels.csv`, line 4, column area m²:"),
        "{}",
        output.stderr
    );
    assert!(
        text.contains("invalid input syntax for type numeric: \"lots\""),
        "{}",
        output.stderr
    );
    let client = project.db.client().await.expect("connect");
    let count: i64 = client
        .query_one("SELECT count(*) FROM source.parcels", &[])
        .await
        .expect("parcels")
        .get(0);
    assert_eq!(count, 2, "the table keeps its rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_header_is_reported() {
    let project = project("csvheader").await;
    project.run(&[]).expect(0);
    std::fs::write(
        project.dir.join("csv/owners.csv"),
        "name,since,city\nAda,2020-01-02,London\n",
    )
    .expect("csv");
    let output = project.run(&["--step", "pg:source:create"]).expect(1);
    let text = flat(&output.stderr);
    assert!(text.contains("the header of `csv/owners.csv` changed: table `source.owners` has columns name, since, the file has name, since, city"), "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_errors_bad_rows_go_to_a_reject_table_with_their_line() {
    let project = project("csvrejects").await;
    project.run(&[]).expect(0);
    std::fs::write(
        project.dir.join("csv/parcels.csv"),
        format!(
            "{PARCELS}3,industrial,lots,0101000020E6100000000000000000F03F0000000000000040\n\
             4,commercial,10,not a geometry\n\
             5,residential,12.5,0101000020E6100000000000000000F03F0000000000000040\n"
        ),
    )
    .expect("csv");
    let at = FLOW.rfind("  schema = source\n}").expect("the load step");
    let with = |max: u32| {
        format!(
            "{}  schema = source\n  max_errors = {max}\n}}{}",
            &FLOW[..at],
            &FLOW[at + "  schema = source\n}".len()..]
        )
    };
    std::fs::write(project.dir.join("sources.flow"), with(1)).expect("flow");
    let output = project.run(&["--step", "pg:source:load"]).expect(1);
    let text = flat(&output.stderr);
    assert!(text.contains("more than 1 bad rows: line 5:"), "{text}");
    let client = project.db.client().await.expect("connect");
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .expect(sql)
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM source.parcels").await,
        2,
        "the table keeps its rows"
    );

    std::fs::write(project.dir.join("sources.flow"), with(2)).expect("flow");
    let output = project.run(&["--step", "pg:source:load"]).expect(0);
    assert!(output.stderr.contains("2 rejected"), "{}", output.stderr);
    assert_eq!(count("SELECT count(*) FROM source.parcels").await, 3);
    let rejects: Vec<(i64, String, String)> = client
        .query(
            "SELECT line, reason, row->>'area m²' FROM source.parcels_rejects ORDER BY line",
            &[],
        )
        .await
        .expect("rejects")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!((rejects[0].0, rejects[0].2.as_str()), (4, "lots"));
    assert!(
        rejects[0]
            .1
            .contains("invalid input syntax for type numeric"),
        "{rejects:?}"
    );
    assert_eq!(rejects[1].0, 5);
    assert!(rejects[1].1.contains("parse error"), "{rejects:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_with_too_many_or_too_few_fields_are_placed_and_can_be_rejected() {
    let project = project("ragged").await;
    std::fs::write(
        project.dir.join("csv/owners.csv"),
        "name,since\nAda,2020-01-02\nGrace,2021-03-04,extra\nAlan\nEdsger,2022-05-06\n",
    )
    .expect("csv");
    // The table is made from the rows that fit; the load fails on the first
    // that does not, with its line.
    project
        .run(&["--step", "pg:flow:configure", "--step", "pg:source:create"])
        .expect(0);
    let output = project.run(&["--step", "pg:source:load"]).expect(1);
    let text = flat(&output.stderr);
    assert!(text.contains("`csv/owners.csv`, line 3"), "{text}");
    assert!(
        text.contains("extra data after last expected column"),
        "{text}"
    );

    let at = FLOW.rfind("  schema = source\n}").expect("the load step");
    let flow = format!(
        "{}  schema = source\n  max_errors = 2\n}}{}",
        &FLOW[..at],
        &FLOW[at + "  schema = source\n}".len()..]
    );
    std::fs::write(project.dir.join("sources.flow"), flow).expect("flow");
    project.run(&["--step", "pg:source:load"]).expect(0);
    let client = project.db.client().await.expect("connect");
    let rejects: Vec<(i64, String, String)> = client
        .query(
            "SELECT line, reason, row::text FROM source.owners_rejects ORDER BY line",
            &[],
        )
        .await
        .expect("rejects")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rejects,
        [
            (
                3,
                "it has 3 fields; the header has 2".to_owned(),
                r#"["Grace", "2021-03-04", "extra"]"#.to_owned()
            ),
            (
                4,
                "it has 1 fields; the header has 2".to_owned(),
                r#"["Alan"]"#.to_owned()
            )
        ]
    );
    let names: Vec<String> = client
        .query("SELECT name FROM source.owners ORDER BY since", &[])
        .await
        .expect("owners")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Ada", "Edsger"]);
}
