//! `pg:target:populate` of one large table between two databases, against
//! `psql -c "COPY t TO STDOUT (FORMAT binary)" | psql -1 -c "DELETE FROM t" -c "COPY t FROM STDIN (FORMAT binary)"`
//! between the same two databases, in the same run.
//!
//! `cargo bench -p flow-benches --bench populate` (10 million rows; set
//! `FLOW_BENCH_ROWS` for another size). Runs against the test cluster
//! (`scripts/test` starts it; the benchmark starts it when it is not up).
//! Prints the median of three runs of each and the ratio; each run replaces
//! the rows of a full table (delete and load, in one transaction).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::{Registry, RunContext};

const FLOW: &str = r#"flow bench
database flow = "postgres://unused"
database api = "postgres://unused"
step pg:target:populate {
  from = model
  to = api.public
  tables = [t]
  mode = replace
}
"#;

const TABLE: &str = "(id bigint PRIMARY KEY, name text NOT NULL, value double precision, day date, geom geometry(Point, 4326))";

use flow_benches::median;

// Long on purpose (the reason): a benchmark's main is its scenario, top to
// bottom, timing flow and the other tool on the same data in the same run;
// in pieces it would only pass the files and databases around.
#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let rows: u64 = std::env::var("FLOW_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 1_000 });
    let flow_db = TestDatabase::create("benchflow")
        .await
        .expect("flow database");
    let api_db = TestDatabase::create("benchapi")
        .await
        .expect("api database");
    let flow_client = flow_db.client().await.expect("connect");
    println!("filling model.t with {rows} rows ...");
    flow_client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS postgis; CREATE SCHEMA model; CREATE TABLE model.t {TABLE};
             INSERT INTO model.t SELECT g, 'parcel ' || g, g * 0.5, DATE '2020-01-01' + (g % 1000)::int,
                    ST_SetSRID(ST_MakePoint(8 + (g % 1000) * 0.001, 47 + (g / 1000 % 1000) * 0.001), 4326)
             FROM generate_series(1, {rows}) g"
        ))
        .await
        .expect("model");
    flow_client
        .batch_execute("VACUUM ANALYZE model.t")
        .await
        .expect("vacuum");
    api_db
        .client()
        .await
        .expect("connect")
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS postgis; CREATE TABLE public.t {TABLE}"
        ))
        .await
        .expect("api");

    let parsed = flow_dsl::parse(FLOW);
    let pipeline =
        flow_engine::compile(&parsed.flow, &Registry::installed(), "bench").expect("flow");
    let step = &pipeline.steps[0];
    let mut databases = BTreeMap::new();
    for (name, db) in [("flow", &flow_db), ("api", &api_db)] {
        databases.insert(
            name.to_owned(),
            Database::connect(name, &Location::Url(db.url()), None, 4)
                .await
                .expect("pool"),
        );
    }
    let context = RunContext::for_step(
        step,
        std::env::temp_dir(),
        Arc::new(databases),
        Arc::default(),
    );
    // A first populate fills the API table, so that every measured round,
    // flow's and psql's alike, replaces a full table.
    step.operation.run(&context).await.expect("populate");
    let (mut flow_times, mut psql_times) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let started = Instant::now();
        let report = step.operation.run(&context).await.expect("populate");
        flow_times.push(started.elapsed());
        assert_eq!(report.rows, rows);

        let started = Instant::now();
        let mut out = Command::new(flow_benches::psql())
            .args([
                &flow_db.url(),
                "-qc",
                "COPY model.t TO STDOUT (FORMAT binary)",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql");
        let status = Command::new(flow_benches::psql())
            .args([
                &api_db.url(),
                "-q1",
                "-c",
                "DELETE FROM public.t",
                "-c",
                "COPY public.t FROM STDIN (FORMAT binary)",
            ])
            .stdin(out.stdout.take().expect("pipe"))
            .stdout(Stdio::null())
            .status()
            .expect("psql");
        let _ = out.wait();
        psql_times.push(started.elapsed());
        assert!(status.success());
        println!(
            "round {round}: flow {:.2?}, psql | psql {:.2?}",
            flow_times[round - 1],
            psql_times[round - 1]
        );
    }
    let (flow, psql) = (median(flow_times), median(psql_times));
    println!(
        "populate of {rows} rows: flow {flow:.2?} ({:.0} rows/s), psql COPY binary | psql {psql:.2?}; flow takes {:.2}× the time of the pipe",
        rows as f64 / flow.as_secs_f64(),
        flow.as_secs_f64() / psql.as_secs_f64()
    );
}
