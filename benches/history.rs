//! `pg:target:populate` with history kept, against the same populate without
//! it, in the same run: each round changes 1% of a 1,000,000-row model
//! table's prices, then populates it into two API schemas, one keeping
//! `history = [t]` and one not.
//!
//! `cargo bench -p flow-benches --bench history` (`FLOW_BENCH_ROWS` for
//! another size). Runs against the test cluster (`scripts/test` starts it;
//! the benchmark starts it when it is not up). Prints the median of five
//! rounds of each and the ratio; a `CHECKPOINT` comes before each populate.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::{Registry, RunContext};
use flow_plugin_pg as _;

const FLOW: &str = r#"flow bench
database flow = "postgres://unused"
database api = "postgres://unused"
step pg:target:populate plain {
  from = model
  to = api.plain
  tables = [t]
}
step pg:target:populate kept {
  from = model
  to = api.kept
  tables = [t]
  history = [t]
  history_schema = kept_history
}
"#;

use flow_benches::median;

// Long on purpose (the reason): a benchmark's main is its scenario, top to
// bottom, timing both populates on the same data in the same run.
#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let rows: u64 = std::env::var("FLOW_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 1_000 });
    let flow_db = TestDatabase::create("benchhistf").await.expect("flow db");
    let api_db = TestDatabase::create("benchhista").await.expect("api db");
    let model = flow_db.client().await.expect("connect");
    model
        .batch_execute(&format!(
            "CREATE SCHEMA model;
             CREATE TABLE model.t (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), availability text);
             INSERT INTO model.t SELECT g, 'product ' || g, g % 1000, 'in' FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("model");
    model
        .batch_execute("VACUUM ANALYZE model.t")
        .await
        .expect("vacuum");
    api_db
        .client()
        .await
        .expect("connect")
        .batch_execute("CREATE SCHEMA plain; CREATE SCHEMA kept;")
        .await
        .expect("api");
    let parsed = flow_dsl::parse(FLOW);
    let pipeline =
        flow_engine::compile(&parsed.flow, &Registry::installed(), "bench").expect("flow");
    let mut databases = BTreeMap::new();
    for (name, db) in [("flow", &flow_db), ("api", &api_db)] {
        databases.insert(
            name.to_owned(),
            Database::connect(name, &Location::Url(db.url()), None, 4)
                .await
                .expect("pool"),
        );
    }
    let databases = Arc::new(databases);
    let contexts: Vec<_> = pipeline
        .steps
        .iter()
        .map(|step| {
            RunContext::for_step(
                step,
                std::env::temp_dir(),
                Arc::clone(&databases),
                Arc::default(),
            )
        })
        .collect();
    // First loads: the tables, and the history's first versions.
    for (step, context) in pipeline.steps.iter().zip(&contexts) {
        step.operation.run(context).await.expect("populate");
    }
    let (mut plain, mut kept) = (Vec::new(), Vec::new());
    let api = api_db.client().await.expect("connect");
    for round in 1..=5 {
        model
            .batch_execute(&format!(
                "UPDATE model.t SET price = price + 1 WHERE id % 100 = {round}"
            ))
            .await
            .expect("1% changed");
        for (i, (step, context)) in pipeline.steps.iter().zip(&contexts).enumerate() {
            // Neither pays for the other's dirty pages.
            api.batch_execute("CHECKPOINT").await.expect("checkpoint");
            let started = Instant::now();
            let outcome = step.operation.run(context).await.expect("populate");
            let took = started.elapsed();
            if i == 0 {
                plain.push(took);
            } else {
                kept.push(took);
                println!("round {round}: {}", outcome.note.unwrap_or_default());
            }
        }
        println!(
            "round {round}: without history {:.2?}, with history {:.2?}",
            plain[round - 1],
            kept[round - 1]
        );
    }
    let (plain, kept) = (median(plain), median(kept));
    println!(
        "populate of {rows} rows, 1% changed: without history {plain:.2?}, with history {kept:.2?}; history takes {:.2}× the time",
        kept.as_secs_f64() / plain.as_secs_f64()
    );
}
