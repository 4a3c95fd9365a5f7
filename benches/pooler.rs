//! The cost of a pooler: the reference pipeline by `flow run --force`
//! straight to PostgreSQL, and through Debian's PgBouncer in session and in
//! transaction mode (`pool_mode=transaction`: every statement unnamed in
//! one exchange, each connection used for one checkout), on the same
//! databases, in the same run.
//!
//! `cargo build --release && cargo bench -p flow-benches --bench pooler`
//! prints the median of five runs each and the ratios (through the pooler /
//! straight). The fixture's ten small steps are the worst case: many short
//! statements and checkouts, little work. Without the release `flow`
//! binary or pgbouncer, it says so and stops.
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../cli/tests/support/pooler.rs"]
mod pooler;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;
use pooler::{Bouncer, Server};

fn run(flow: &Path, dir: &Path, flow_url: &str, api_url: &str, spaces: &str) -> Duration {
    let started = Instant::now();
    let output = Command::new(flow)
        .args(["run", "parcels.flow", "--plain", "--force"])
        .current_dir(dir)
        .env("FLOW_DATABASE_URL", flow_url)
        .env("API_DATABASE_URL", api_url)
        .env("SPACES_URL", spaces)
        .env("NO_COLOR", "1")
        .output()
        .expect("flow runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let Some(flow) = flow_benches::release_flow() else {
        println!(
            "pooler: needs the `flow` binary beside this benchmark (cargo build --release); skipped"
        );
        return;
    };
    if !Path::new("/usr/sbin/pgbouncer").exists() {
        println!("pooler: needs pgbouncer (apt-get install pgbouncer); skipped");
        return;
    }
    let turns = if full { 5 } else { 1 };
    let dir = std::env::temp_dir().join(format!("flow-bench-pooler-{}", std::process::id()));
    flow_benches::reference_pipeline(&dir);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spaces = format!(
        "file://{}",
        std::fs::canonicalize(root.join("fixtures/spaces"))
            .expect("fixtures")
            .display()
    );
    let flow_db = TestDatabase::create("benchpoolf").await.expect("db");
    let api_db = TestDatabase::create("benchpoola").await.expect("db");
    let server = Server::of(&flow_db.url());
    let transaction = Bouncer::start_in("benchtx", &server, 2, "transaction");
    let session = Bouncer::start_in("benchsession", &server, 8, "session");
    // A first run makes the schemas; the timed ones redo every step.
    run(&flow, &dir, &flow_db.url(), &api_db.url(), &spaces);
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..turns {
        times[0].push(run(&flow, &dir, &flow_db.url(), &api_db.url(), &spaces));
        times[1].push(run(
            &flow,
            &dir,
            &session.url(&flow_db.url(), false),
            &session.url(&api_db.url(), false),
            &spaces,
        ));
        times[2].push(run(
            &flow,
            &dir,
            &transaction.url(&flow_db.url(), true),
            &transaction.url(&api_db.url(), true),
            &spaces,
        ));
    }
    let [direct, session_times, transaction_times] = times;
    let direct = flow_benches::median(direct);
    println!("\nthe reference pipeline, --force, median of {turns}");
    flow_benches::line(
        "through PgBouncer, session",
        direct,
        Some(("pooled", flow_benches::median(session_times))),
    );
    flow_benches::line(
        "through PgBouncer, transaction",
        direct,
        Some(("pooled", flow_benches::median(transaction_times))),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
