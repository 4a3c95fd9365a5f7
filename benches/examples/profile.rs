//! `cargo run --release -p flow-benches --example profile -- 10000`: one
//! parse, compile and plan of a generated flow, with the time of each stage.
#![allow(clippy::print_stdout)]

use std::time::Instant;

// The allocator of the `flow` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flow_plugin_sh as _;
use flow_plugin_sql as _;

fn main() {
    let steps = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let text = flow_benches::generated_flow(steps);
    let registry = flow_engine::Registry::installed();
    let start = Instant::now();
    let parsed = flow_dsl::parse(&text);
    let parsed_at = start.elapsed();
    let pipeline = flow_engine::compile(&parsed.flow, &registry, "generated").expect("valid");
    let compiled_at = start.elapsed();
    let selected = flow_engine::Selection::default()
        .apply(&pipeline)
        .expect("selection");
    let plan = flow_engine::Plan::new(&pipeline, &selected);
    let planned_at = start.elapsed();
    println!(
        "{steps} steps: parse {parsed_at:?}, compile {:?}, plan {:?} ({} waves)",
        compiled_at - parsed_at,
        planned_at - compiled_at,
        plan.waves
    );
}
