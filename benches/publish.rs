//! Publishing: `pg:<db>:export` against `psql -c "\copy (...) TO ... CSV
//! HEADER"`, and `minio:upload` against `rclone copy`, in the same run.
//!
//! `cargo bench -p flow-benches --bench publish` makes four tables of
//! 1,000,000 rows (a bigint, a text, a numeric, a date and a point;
//! `FLOW_BENCH_SCALE` scales the rows) and times, the better of two turns
//! each: one table, then all four (flow four streams in one snapshot; psql
//! one `\copy` after the other, as a script would). Then it uploads the four
//! files and 500 small ones to SeaweedFS (`weed mini` on 127.0.0.1) into an
//! empty prefix, flow with `jobs = 8` and rclone with `--transfers 8`.
//! Prints each ratio (the other tool's time / flow's).
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../cli/tests/support/s3.rs"]
mod s3_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::Registry;
use s3_server::{ACCESS_KEY, S3Server, SECRET_KEY};
use {flow_plugin_minio as _, flow_plugin_pg as _};

const TABLES: usize = 4;

fn flow(upload_url: &str) -> String {
    format!(
        r#"flow bench
database flow = "postgres://unused"
storage bucket = "{upload_url}"
step pg:flow:export one {{
  tables = [t0]
  to = "one/{{table}}.csv"
}}
step pg:flow:export all {{
  tables = [t0, t1, t2, t3]
  to = "all/{{table}}.csv"
  jobs = 4
}}
step minio:upload {{
  from = "all"
  to = bucket
  jobs = 8
}}
"#
    )
}

async fn tables(client: &flow_db::tokio_postgres::Client, rows: usize) {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")
        .await
        .expect("postgis");
    for t in 0..TABLES {
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS t{t};
                 CREATE TABLE t{t} AS SELECT i::bigint AS id,
                   'customer ' || lpad(i::text, 10, '0') || ', account ' || (i % 977) AS name,
                   (i % 100000)::numeric + (i % 100) / 100.0 AS amount,
                   date '2024-01-01' + (i % 365) AS day,
                   ST_SetSRID(ST_MakePoint(7 + (i % 1000) / 1000.0, 46 + (i % 997) / 997.0), 4326) AS geom
                 FROM generate_series(1, {rows}) i"
            ))
            .await
            .expect("table");
        client
            .batch_execute(&format!("VACUUM ANALYZE t{t}"))
            .await
            .expect("vacuum");
    }
}

fn small_files(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir.join("small")).expect("dir");
    for i in 0..count {
        let body: Vec<u8> = (0..16 * 1024).map(|j| ((i + j) % 251) as u8).collect();
        std::fs::write(dir.join(format!("small/s{i:04}.bin")), body).expect("file");
    }
}

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let scale = flow_benches::scale(full, 0.001);
    let rows = ((1_000_000.0 * scale) as usize).max(10);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("flow-bench-publish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    let db = TestDatabase::create("benchpublish")
        .await
        .expect("database");
    let client = db.client().await.expect("client");
    println!("making {TABLES} tables of {rows} rows ...");
    tables(&client, rows).await;
    let server = S3Server::private("benchpublish").await;
    let bucket = server.bucket("bench").await;
    let prefix = |tool: &str, turn: usize| format!("{tool}{turn}");
    let databases = Arc::new(BTreeMap::from([(
        "flow".to_owned(),
        Database::connect("flow", &Location::Url(db.url()), None, 6)
            .await
            .expect("pool"),
    )]));
    let psql = flow_benches::psql();
    let copy = |tables: &[usize], out: &Path| -> String {
        let copies: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "-c \"\\copy (SELECT * FROM t{t}) TO '{}/t{t}.csv' CSV HEADER\"",
                    out.display()
                )
            })
            .collect();
        format!("{psql} -q -X '{}' {}", db.url(), copies.join(" "))
    };
    let have_rclone = flow_benches::have("rclone");
    let config = flow_benches::rclone_config(&dir, &server.endpoint, ACCESS_KEY, SECRET_KEY);

    let (mut one, mut all) = (
        (Duration::MAX, Duration::MAX),
        (Duration::MAX, Duration::MAX),
    );
    let mut upload = (Duration::MAX, Duration::MAX);
    for turn in 0..2 {
        for out in ["one", "all", "psql"] {
            let _ = std::fs::remove_dir_all(dir.join(out));
        }
        std::fs::create_dir_all(dir.join("psql")).expect("dir");
        let url = server.url(&bucket, &prefix("flow", turn));
        let url = url.replacen("s3://", &format!("s3://{ACCESS_KEY}:{SECRET_KEY}@"), 1);
        let pipeline = flow_engine::compile(
            &flow_dsl::parse(&flow(&url)).flow,
            &Registry::installed(),
            "bench",
        )
        .expect("flow");
        one.0 = one
            .0
            .min(flow_benches::run_step(&pipeline, "pg:flow:export/one", &databases, &dir).await);
        one.1 = one
            .1
            .min(flow_benches::timed(&copy(&[0], &dir.join("psql"))));
        all.0 = all
            .0
            .min(flow_benches::run_step(&pipeline, "pg:flow:export/all", &databases, &dir).await);
        all.1 = all
            .1
            .min(flow_benches::timed(&copy(&[0, 1, 2, 3], &dir.join("psql"))));
        if turn == 0 {
            let size = std::fs::metadata(dir.join("psql/t0.csv")).map_or(0, |m| m.len());
            let ours = std::fs::metadata(dir.join("all/t0.csv")).map_or(0, |m| m.len());
            assert_eq!(size, ours, "flow and psql write the same CSV");
        }
        small_files(&dir.join("all"), 500);
        let step = pipeline
            .steps
            .iter()
            .find(|s| s.key == "minio:upload")
            .expect("step");
        let mut context =
            flow_engine::RunContext::for_step(step, dir.clone(), Arc::default(), Arc::default());
        context.storages = Arc::new(BTreeMap::from([("bucket".to_owned(), url.clone())]));
        let started = std::time::Instant::now();
        step.operation
            .run(&context)
            .await
            .unwrap_or_else(|e| panic!("{:?}", e.report));
        upload.0 = upload.0.min(started.elapsed());
        if have_rclone {
            upload.1 = upload.1.min(flow_benches::timed(&format!(
                "env -u AWS_CA_BUNDLE rclone --config {} copy --transfers 8 --checkers 8 {} seaweed:{}/{}",
                config.display(),
                dir.join("all").display(),
                bucket.name(),
                prefix("rclone", turn)
            )));
        }
    }
    let size: u64 = (0..TABLES)
        .map(|t| std::fs::metadata(dir.join(format!("all/t{t}.csv"))).map_or(0, |m| m.len()))
        .sum();
    println!(
        "\n{TABLES} tables of {rows} rows ({:.0} MB of CSV), 2 cores",
        size as f64 / 1e6
    );
    flow_benches::line("export one table", one.0, Some(("psql \\copy", one.1)));
    flow_benches::line("export four tables", all.0, Some(("psql \\copy x4", all.1)));
    flow_benches::line(
        "upload 4 large + 500 small",
        upload.0,
        have_rclone.then_some(("rclone copy", upload.1)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
