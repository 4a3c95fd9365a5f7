//! One large CSV file into a table: `pg:source:load` (several COPY streams
//! into a new table, switched in by renaming) against `psql -c "\copy ...
//! CSV HEADER"` (one stream), on the same file in the same run.
//!
//! `cargo bench -p flow-benches --bench csv` generates 20,000,000 rows
//! (about 1.6 GB: a bigint id, a text, a numeric, a date; `FLOW_BENCH_SCALE`
//! scales the rows), loads it once to warm up, then times each tool once and
//! prints the ratio (psql's time / flow's).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::Registry;
use {flow_plugin_pg as _, flow_plugin_shp as _};

const FLOW: &str = r#"flow bench
database flow = "postgres://unused"
step pg:source:create {
  from = "csv/*.csv"
  schema = csv_flow
}
step pg:source:load {
  from = "csv/*.csv"
  schema = csv_flow
}
"#;

/// `rows` rows of about 80 bytes.
fn generate(path: &Path, rows: usize) {
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("csv"));
    writeln!(out, "id,name,amount,day").expect("header");
    for id in 0..rows {
        writeln!(
            out,
            "{id},\"customer {id:010}, account {}\",{}.{:02},2024-{:02}-{:02}",
            id % 977,
            id % 100_000,
            id % 100,
            1 + id % 12,
            1 + id % 28
        )
        .expect("row");
    }
    out.flush().expect("flush");
}

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let scale = flow_benches::scale(full, 0.0001);
    let rows = (20_000_000.0 * scale) as usize;
    let dir: PathBuf = std::env::temp_dir().join(format!("flow-bench-csv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("csv")).expect("dir");
    let file = dir.join("csv/big.csv");
    println!("generating {rows} rows ...");
    generate(&file, rows);
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);

    let db = TestDatabase::create("benchcsv").await.expect("database");
    let url = db.url();
    let pipeline =
        flow_engine::compile(&flow_dsl::parse(FLOW).flow, &Registry::installed(), "bench")
            .expect("flow");
    let databases = Arc::new(BTreeMap::from([(
        "flow".to_owned(),
        Database::connect("flow", &Location::Url(url.clone()), None, 4)
            .await
            .expect("pool"),
    )]));
    flow_benches::run_step(&pipeline, "pg:source:create", &databases, &dir).await;
    flow_benches::run_step(&pipeline, "pg:source:load", &databases, &dir).await;
    // Each timed load starts with no dirty pages of the one before it.
    let checkpoint = || async {
        db.client()
            .await
            .expect("connect")
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
    };
    checkpoint().await;
    let flow = flow_benches::run_step(&pipeline, "pg:source:load", &databases, &dir).await;
    db.client()
        .await
        .expect("connect")
        .batch_execute("CREATE SCHEMA csv_psql; CREATE TABLE csv_psql.big (LIKE csv_flow.big)")
        .await
        .expect("table");
    checkpoint().await;
    let psql = flow_benches::timed(&format!(
        "{} '{url}' -qc \"\\copy csv_psql.big FROM '{}' CSV HEADER\"",
        flow_benches::psql(),
        file.display()
    ));
    println!(
        "\n{rows} rows, {:.2} GB, {} cores",
        size as f64 / 1e9,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    flow_benches::line("CSV -> table", flow, Some(("psql \\copy", psql)));
    let _ = std::fs::remove_dir_all(&dir);
}
