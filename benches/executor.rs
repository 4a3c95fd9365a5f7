//! A 10,000-step no-op DAG executed end to end by flow's executor, against the
//! same DAG as a Makefile run by `make -j2`, in the same run.
//!
//! `cargo bench -p flow-benches --bench executor` prints the median of five
//! runs of each, the overhead per step, and the ratios. make runs the DAG
//! three times: with empty recipes (pure scheduling), with `@:` recipes
//! (which make runs without a process), and with `@true` recipes (one process
//! per target, the least a make-based pipeline's step costs).
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_benches::{generated_flow, median};
use flow_engine::executor::{self, Memory, Options, Shared};
use flow_engine::{
    BoxFuture, Node, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Pipeline, Prepared,
    Problem, Registry, Resource, RunContext, Selection, StepContext, StepError, Target, table_ref,
};
use tokio_util::sync::CancellationToken;

/// Stand-ins for `sql:<db>:run` and `sh:run` that declare the same resources
/// and do nothing when run.
struct Noop(&'static OperationSpec);

static SQL: OperationSpec = OperationSpec {
    tool: "sql",
    target: Target::Database,
    operation: "run",
    summary: "no-op",
    params: &[
        ParamSpec::required("sql", ParamType::Glob, ""),
        ParamSpec::optional("reads", ParamType::Strings, ""),
        ParamSpec::optional("writes", ParamType::Strings, ""),
    ],
};

static SH: OperationSpec = OperationSpec {
    tool: "sh",
    target: Target::None,
    operation: "run",
    summary: "no-op",
    params: &[
        ParamSpec::required("command", ParamType::String, ""),
        ParamSpec::optional("reads", ParamType::Strings, ""),
        ParamSpec::optional("writes", ParamType::Strings, ""),
    ],
};

impl Operation for Noop {
    fn spec(&self) -> &'static OperationSpec {
        self.0
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let mut prepared = Prepared::default();
        for (key, write) in [("reads", false), ("writes", true)] {
            for text in step.params.list(key) {
                let resource = if self.0.tool == "sql" {
                    table_ref("flow", text).unwrap_or_else(|_| Resource::file(text))
                } else {
                    Resource::file(text)
                };
                prepared = if write {
                    prepared.writes(resource)
                } else {
                    prepared.reads(resource)
                };
            }
        }
        Ok(prepared)
    }

    fn run<'a>(&'a self, _context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async { Ok(Outcome::default()) })
    }
}

static NOOP_SQL: Noop = Noop(&SQL);
static NOOP_SH: Noop = Noop(&SH);

fn makefile(pipeline: &Pipeline, recipe: &str) -> String {
    let name = |node: petgraph::graph::NodeIndex| match pipeline.graph[node] {
        Node::Step(i) => format!("s{i}"),
        Node::GroupDone(k) => format!("g{k}"),
    };
    let mut text = String::from(".PHONY: all");
    for node in pipeline.graph.node_indices() {
        let _ = write!(text, " {}", name(node));
    }
    text.push_str("\nall:");
    for node in pipeline.graph.node_indices() {
        let _ = write!(text, " {}", name(node));
    }
    text.push('\n');
    for node in pipeline.graph.node_indices() {
        let _ = write!(text, "{}:", name(node));
        for pred in pipeline
            .graph
            .neighbors_directed(node, petgraph::Direction::Incoming)
        {
            let _ = write!(text, " {}", name(pred));
        }
        text.push('\n');
        if !recipe.is_empty() && matches!(pipeline.graph[node], Node::Step(_)) {
            let _ = writeln!(text, "\t{recipe}");
        }
    }
    text
}

fn time_make(dir: &Path, makefile_text: &str) -> Option<Duration> {
    let path = dir.join("Makefile");
    std::fs::write(&path, makefile_text).ok()?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let status = Command::new("make")
            .args(["-j2", "-s", "-f"])
            .arg(&path)
            .arg("all")
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        times.push(started.elapsed());
    }
    Some(median(times))
}

fn main() {
    // A test run gets a quick smoke run of the same code.
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let steps = if full { 10_000 } else { 200 };
    let text = generated_flow(steps);
    let parsed = flow_dsl::parse(&text);
    let registry = Registry::new([&NOOP_SQL as &dyn Operation, &NOOP_SH]);
    let pipeline =
        flow_engine::compile(&parsed.flow, &registry, "generated").expect("a valid flow");
    let selected = Selection::default().apply(&pipeline).expect("selection");
    let runtime = if std::env::var_os("FLOW_BENCH_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let shared = Arc::new(Shared {
        base_dir: std::env::temp_dir(),
        databases: Default::default(),
        storages: Default::default(),
        vars: Default::default(),
        run: None,
    });
    let options = Options {
        jobs: 2,
        ..Options::default()
    };
    let memory = Arc::new(Memory::default());
    let pipeline = Arc::new(pipeline);
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (pipeline, selected, shared, options, memory) = (
            Arc::clone(&pipeline),
            selected.clone(),
            Arc::clone(&shared),
            options.clone(),
            Arc::clone(&memory),
        );
        // The executor runs on a worker, as `flow run` runs it.
        let results = runtime
            .block_on(runtime.spawn(async move {
                executor::execute(
                    &pipeline,
                    &selected,
                    &shared,
                    &options,
                    &memory,
                    &CancellationToken::new(),
                    |_| {},
                )
                .await
            }))
            .expect("the executor task");
        times.push(started.elapsed());
        assert!(results.values().all(executor::StepResult::succeeded));
    }
    let flow_time = median(times);
    let per_step = flow_time / steps as u32;
    println!(
        "{steps}-step no-op DAG, {} edges, -j2:",
        pipeline.graph.edge_count()
    );
    println!("  flow executor            {flow_time:>10.1?}   {per_step:.1?} per step");

    let dir = std::env::temp_dir().join(format!("flow-bench-make-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let variants: &[(&str, &str)] = if !full || std::env::var_os("FLOW_BENCH_NO_MAKE").is_some() {
        &[]
    } else {
        &[
            ("make -j2, no recipes", ""),
            ("make -j2, `@:` recipes", "@:"),
            ("make -j2, `@true` recipes", "@true"),
        ]
    };
    for &(label, recipe) in variants {
        match time_make(&dir, &makefile(&pipeline, recipe)) {
            Some(make_time) => println!(
                "  {label:<24} {make_time:>10.1?}   {:.1?} per step   make/flow time: {:.2}",
                make_time / steps as u32,
                make_time.as_secs_f64() / flow_time.as_secs_f64()
            ),
            None => println!("  {label:<24} (make not available)"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
