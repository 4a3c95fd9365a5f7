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

/// The identity of `source.big`: a new table has a new one.
async fn big_oid(client: &flow_db::tokio_postgres::Client) -> u32 {
    client
        .query_one("SELECT 'source.big'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0)
}

/// A CSV file over 64 MiB (so that it loads over several streams): `rows`
/// rows of an id, a quoted text with a comma and a newline in it, and a
/// number; `bad` puts a word in the number column of that row.
fn large_csv(path: &std::path::Path, rows: usize, bad: Option<usize>) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("csv"));
    writeln!(out, "id,note,amount").expect("header");
    for id in 1..=rows {
        if bad == Some(id) {
            writeln!(out, "{id},\"bad, row\",lots").expect("row");
        } else {
            writeln!(
                out,
                "{id},\"note {id}, with a comma\nand a second line of some length, long enough\",{}.25",
                id % 1000
            )
            .expect("row");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_loads_over_several_streams_and_replaces_the_rows_whole() {
    let project = project("parallel").await;
    let rows = 900_000;
    large_csv(&project.dir.join("csv/big.csv"), rows, None);
    assert!(
        std::fs::metadata(project.dir.join("csv/big.csv"))
            .expect("size")
            .len()
            > 64 << 20
    );
    project.run(&[]).expect(0);
    let client = project.db.client().await.expect("connect");
    let check = "SELECT count(*), sum(id)::bigint, count(*) FILTER (WHERE note LIKE 'note %, with a comma\nand a second line of some length, long enough'), sum(amount)::text FROM source.big";
    let summary = |row: flow_db::tokio_postgres::Row| -> (i64, i64, i64, String) {
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    let expected_sum: i64 = (1..=rows as i64).sum();
    let amounts: f64 = (1..=rows).map(|id| (id % 1000) as f64 + 0.25).sum();
    let first = summary(client.query_one(check, &[]).await.expect("big"));
    assert_eq!(
        first,
        (
            rows as i64,
            expected_sum,
            rows as i64,
            format!("{amounts:.2}")
        )
    );
    // Again: the rows are replaced, not added to, by a new table put in
    // the old one's place (several streams).
    let before = big_oid(&client).await;
    project
        .run(&["--force", "--step", "pg:source:load"])
        .expect(0);
    assert_eq!(
        summary(client.query_one(check, &[]).await.expect("big")),
        first
    );
    assert_ne!(
        big_oid(&client).await,
        before,
        "loaded over several streams"
    );

    // A view over the table: loaded by the single stream, the view sees the
    // new rows.
    client
        .batch_execute("CREATE VIEW public.big_count AS SELECT count(*) AS n FROM source.big")
        .await
        .expect("view");
    large_csv(&project.dir.join("csv/big.csv"), rows + 1, None);
    let before = big_oid(&client).await;
    project.run(&["--step", "pg:source:load"]).expect(0);
    assert_eq!(
        big_oid(&client).await,
        before,
        "loaded by the single stream"
    );
    let n: i64 = client
        .query_one("SELECT n FROM public.big_count", &[])
        .await
        .expect("view")
        .get(0);
    assert_eq!(n, rows as i64 + 1);
    client
        .batch_execute("DROP VIEW public.big_count")
        .await
        .expect("drop view");

    // A bad row: the old rows stay, and the error has its line.
    large_csv(&project.dir.join("csv/big.csv"), rows, Some(700_000));
    let output = project.run(&["--step", "pg:source:load"]).expect(1);
    let text = flat(&output.stderr);
    assert!(text.contains("`csv/big.csv`, line 1400000"), "{text}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM source.big", &[])
        .await
        .expect("big")
        .get(0);
    assert_eq!(count, rows as i64 + 1);
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'big\\_\\_flow%'",
            &[],
        )
        .await
        .expect("leftovers")
        .get(0);
    assert_eq!(leftovers, 0, "no table of the load is left behind");
}
