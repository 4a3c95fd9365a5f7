//! An environment copy: `pg:<db>:copy` with two masked columns against
//! `pg_dump -Fc | pg_restore` without masking, between the same databases,
//! in the same run: masked in flow's stream (`mask_on = stream`), masked in
//! SQL on the source (the default), and nothing masked.
//!
//! `cargo bench -p flow-benches --bench copy` makes a source table of
//! 10,000,000 rows (bigint key, email, name, numeric, date, an index on the
//! email; `FLOW_BENCH_SCALE` scales the rows) and times each tool copying
//! it into an emptied target, once each after a warm-up, and prints the
//! ratio (pg_dump | pg_restore's time / flow's).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::Registry;
use flow_plugin_pg as _;

const FLOW: &str = r#"flow bench
database flow = "postgres://unused"
database source = "postgres://unused"
database target = "postgres://unused"
step pg:target:copy masked {
  from = source
  mask = { customers = { email = { fake = email }, name = hash } }
}
step pg:target:copy streamed {
  from = source
  mask_on = stream
  mask = { customers = { email = { fake = email }, name = hash } }
}
step pg:target:copy plain {
  from = source
}
"#;

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    // The masks' salt comes from the environment: the benchmark runs itself
    // again with one.
    if std::env::var("FLOW_MASK_SALT").is_err() {
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(std::env::args().skip(1))
            .env("FLOW_MASK_SALT", "bench-salt-0123456789abcdef")
            .status()
            .expect("the benchmark runs");
        std::process::exit(status.code().unwrap_or(1));
    }
    let scale = flow_benches::scale(full, 0.0001);
    let rows = ((10_000_000.0 * scale) as usize).max(100);
    let source = TestDatabase::create("benchcopysrc")
        .await
        .expect("database");
    let target = TestDatabase::create("benchcopydst")
        .await
        .expect("database");
    let restored = TestDatabase::create("benchcopyrst")
        .await
        .expect("database");
    println!("making {rows} rows ...");
    let client = source.client().await.expect("client");
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS customers;
             CREATE TABLE customers AS SELECT i::bigint AS id,
               'person' || i || '@mail.example' AS email,
               'Person Number ' || i AS name,
               (i % 100000)::numeric / 100 AS balance,
               date '2020-01-01' + (i % 1500) AS since
             FROM generate_series(1, {rows}) i;
             ALTER TABLE customers ADD PRIMARY KEY (id);
             CREATE INDEX customers_email ON customers (email);"
        ))
        .await
        .expect("table");
    client
        .batch_execute("VACUUM ANALYZE customers")
        .await
        .expect("vacuum");
    let connect = |name: &'static str, url: String| async move {
        Database::connect(name, &Location::Url(url), None, 4)
            .await
            .expect("pool")
    };
    let databases = Arc::new(BTreeMap::from([
        ("source".to_owned(), connect("source", source.url()).await),
        ("target".to_owned(), connect("target", target.url()).await),
    ]));
    let pipeline =
        flow_engine::compile(&flow_dsl::parse(FLOW).flow, &Registry::installed(), "bench")
            .expect("flow");
    let dir = std::env::temp_dir();
    let restore = || -> Duration {
        let reset = restored.url();
        let clear = format!(
            "PGOPTIONS='-c client_min_messages=warning' {} -q -X '{reset}' -c 'DROP SCHEMA public CASCADE' -c 'CREATE SCHEMA public'",
            flow_benches::psql()
        );
        flow_benches::timed(&clear);
        let started = Instant::now();
        flow_benches::timed(&format!(
            "pg_dump -Fc '{}' | pg_restore --no-owner -d '{reset}'",
            source.url()
        ));
        started.elapsed()
    };
    // Each timed run starts after a checkpoint, so that none pays for the
    // previous one's writes.
    let settle = || async {
        client
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
    };
    // A warm-up of each, then one timed run of each.
    flow_benches::run_step(&pipeline, "pg:target:copy/streamed", &databases, &dir).await;
    restore();
    settle().await;
    let streamed =
        flow_benches::run_step(&pipeline, "pg:target:copy/streamed", &databases, &dir).await;
    settle().await;
    let dump = restore();
    settle().await;
    let masked = flow_benches::run_step(&pipeline, "pg:target:copy/masked", &databases, &dir).await;
    settle().await;
    let plain = flow_benches::run_step(&pipeline, "pg:target:copy/plain", &databases, &dir).await;
    println!("\n{rows} rows, two columns masked by flow, 2 cores");
    flow_benches::line(
        "masked in the stream",
        streamed,
        Some(("pg_dump -Fc | pg_restore", dump)),
    );
    flow_benches::line(
        "masked on the source",
        masked,
        Some(("pg_dump -Fc | pg_restore", dump)),
    );
    flow_benches::line(
        "the same, nothing masked",
        plain,
        Some(("pg_dump -Fc | pg_restore", dump)),
    );
}
