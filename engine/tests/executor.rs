//! The executor with fake operations: order, real parallelism, fail-fast,
//! keep-going, retries, timeouts and cancellation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow_engine::executor::{self, Options, Shared, Status};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Pipeline, Prepared,
    Problem, Registry, Resource, RunContext, Selection, StepContext, StepError, Target,
};
use tokio_util::sync::CancellationToken;

/// `test:work`: sleeps `ms`, then fails if `fail`, or fails transiently for
/// its first `flaky` attempts. Records when it started and ended.
struct Work;

static WORK: OperationSpec = OperationSpec {
    tool: "test",
    target: Target::None,
    operation: "work",
    summary: "a fake operation",
    params: &[
        ParamSpec::optional("ms", ParamType::Count, "how long"),
        ParamSpec::optional("fail", ParamType::Bool, "fail at the end"),
        ParamSpec::optional(
            "flaky",
            ParamType::Count,
            "transient failures before success",
        ),
        ParamSpec::optional("writes", ParamType::Strings, "files"),
        ParamSpec::optional("reads", ParamType::Strings, "files"),
    ],
};

static LOG: Mutex<Vec<(String, &'static str, Instant)>> = Mutex::new(Vec::new());
static ATTEMPTS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

impl Operation for Work {
    fn spec(&self) -> &'static OperationSpec {
        &WORK
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let mut prepared = Prepared::default();
        for file in step.params.list("writes") {
            prepared = prepared.writes(Resource::file(file));
        }
        for file in step.params.list("reads") {
            prepared = prepared.reads(Resource::file(file));
        }
        Ok(prepared)
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let attempt = {
                let mut attempts = ATTEMPTS.lock().expect("lock");
                let entry = attempts.entry(context.step.clone()).or_default();
                *entry += 1;
                *entry
            };
            LOG.lock()
                .expect("lock")
                .push((context.step.clone(), "start", Instant::now()));
            tokio::time::sleep(Duration::from_millis(
                context.params.count("ms").unwrap_or(0),
            ))
            .await;
            LOG.lock()
                .expect("lock")
                .push((context.step.clone(), "end", Instant::now()));
            if u64::from(attempt) <= context.params.count("flaky").unwrap_or(0) {
                return Err(StepError::message("connection reset", None).transient());
            }
            if context.params.bool("fail") == Some(true) {
                return Err(StepError::message("it failed", None));
            }
            Ok(Outcome::note(format!("attempt {attempt}")))
        })
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Compiles a flow of `test:work` steps; step names are made unique per test
/// so that the shared logs do not mix.
fn pipeline(text: &str) -> (Pipeline, String) {
    let tag = format!("t{}", COUNTER.fetch_add(1, Ordering::SeqCst));
    let text = text
        .replace("step test:work ", &format!("step test:work {tag}_"))
        .replace("[test:work/", &format!("[test:work/{tag}_"));
    let parsed = flow_dsl::parse(&text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let registry = Registry::new([&Work as &dyn Operation]);
    let pipeline =
        flow_engine::compile(&parsed.flow, &registry, "test").unwrap_or_else(|e| panic!("{e:?}"));
    (pipeline, tag)
}

/// What every step of a test run shares: no databases, no storages.
fn shared() -> Shared {
    Shared {
        base_dir: std::env::temp_dir(),
        databases: Arc::default(),
        storages: Arc::default(),
        vars: Arc::default(),
        run: None,
    }
}

async fn run(
    pipeline: &Pipeline,
    options: Options,
    cancel: &CancellationToken,
) -> BTreeMap<String, Status> {
    let selected = Selection::default().apply(pipeline).expect("selection");
    let shared = shared();
    let memory = executor::Memory::default();
    let results = executor::execute(
        pipeline,
        &selected,
        &shared,
        &options,
        &memory,
        cancel,
        |_| {},
    )
    .await;
    results
        .into_iter()
        .map(|(i, r)| {
            (
                pipeline.steps[i].id.name.clone().unwrap_or_default(),
                r.status,
            )
        })
        .collect()
}

fn times(tag: &str, step: &str, what: &str) -> Instant {
    LOG.lock()
        .expect("lock")
        .iter()
        .find(|(s, w, _)| s.ends_with(&format!("{tag}_{step}")) && *w == what)
        .map(|(_, _, t)| *t)
        .unwrap_or_else(|| panic!("{step} never logged {what}"))
}

fn fast() -> Options {
    Options {
        jobs: 4,
        backoff: Duration::from_millis(10),
        ..Options::default()
    }
}

fn name(tag: &str, step: &str) -> String {
    format!("{tag}_{step}")
}

#[tokio::test]
async fn a_step_starts_after_what_it_reads_is_written() {
    let (pipeline, tag) = pipeline(
        r#"
        step test:work b { ms = 10 reads = ["out/a.txt"] }
        step test:work a { ms = 50 writes = ["out/a.txt"] }
        "#,
    );
    let results = run(&pipeline, fast(), &CancellationToken::new()).await;
    assert!(results.values().all(|s| matches!(s, Status::Succeeded(_))));
    assert!(times(&tag, "b", "start") >= times(&tag, "a", "end"));
}

#[tokio::test]
async fn independent_steps_really_run_at_the_same_time() {
    let (pipeline, tag) = pipeline(
        r#"
        step test:work a { ms = 300 }
        step test:work b { ms = 300 }
        step test:work c { ms = 300 }
        "#,
    );
    let started = Instant::now();
    run(&pipeline, fast(), &CancellationToken::new()).await;
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "took {:?}",
        started.elapsed()
    );
    assert!(times(&tag, "b", "start") < times(&tag, "a", "end"));
}

#[tokio::test]
async fn jobs_bound_the_parallelism() {
    let (pipeline, _) = pipeline(
        r#"
        step test:work a { ms = 200 }
        step test:work b { ms = 200 }
        "#,
    );
    let started = Instant::now();
    run(
        &pipeline,
        Options { jobs: 1, ..fast() },
        &CancellationToken::new(),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_first_failure_cancels_running_siblings_and_starts_nothing() {
    let (pipeline, tag) = pipeline(
        r#"
        groups one -> two
        step test:work fails { group = one ms = 10 fail = true }
        step test:work slow { group = one ms = 2000 }
        step test:work later { group = two }
        "#,
    );
    let started = Instant::now();
    let results = run(&pipeline, fast(), &CancellationToken::new()).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the slow sibling was cancelled"
    );
    assert!(matches!(results[&name(&tag, "fails")], Status::Failed(_)));
    assert!(matches!(results[&name(&tag, "slow")], Status::Cancelled));
    assert!(matches!(
        results[&name(&tag, "later")],
        Status::NotRun { .. }
    ));
}

#[tokio::test]
async fn keep_going_runs_every_branch_that_does_not_depend_on_the_failure() {
    let (pipeline, tag) = pipeline(
        r#"
        step test:work fails { ms = 10 fail = true writes = ["x/1"] }
        step test:work after_failure { reads = ["x/1"] }
        step test:work slow { ms = 200 writes = ["y/1"] }
        step test:work after_slow { reads = ["y/1"] }
        "#,
    );
    let options = Options {
        keep_going: true,
        ..fast()
    };
    let results = run(&pipeline, options, &CancellationToken::new()).await;
    assert!(matches!(results[&name(&tag, "fails")], Status::Failed(_)));
    assert!(matches!(
        results[&name(&tag, "after_failure")],
        Status::NotRun { .. }
    ));
    assert!(matches!(results[&name(&tag, "slow")], Status::Succeeded(_)));
    assert!(matches!(
        results[&name(&tag, "after_slow")],
        Status::Succeeded(_)
    ));
}

#[tokio::test]
async fn transient_errors_are_retried_up_to_the_limit() {
    let (pipeline, tag) = pipeline(
        r#"
        step test:work recovers { flaky = 2 retries = 2 }
        step test:work gives_up { flaky = 5 retries = 1 }
        "#,
    );
    let results = run(
        &pipeline,
        Options {
            keep_going: true,
            ..fast()
        },
        &CancellationToken::new(),
    )
    .await;
    match &results[&name(&tag, "recovers")] {
        Status::Succeeded(outcome) => assert_eq!(outcome.note.as_deref(), Some("attempt 3")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        results[&name(&tag, "gives_up")],
        Status::Failed(_)
    ));
    assert_eq!(
        ATTEMPTS.lock().expect("lock")[&format!("test:work/{}", name(&tag, "gives_up"))],
        2
    );
}

#[tokio::test]
async fn a_step_over_its_timeout_fails() {
    let (pipeline, tag) =
        pipeline(r#"step test:work sleepy { ms = 5000 timeout = 100ms retries = 0 }"#);
    let started = Instant::now();
    let results = run(&pipeline, fast(), &CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    match &results[&name(&tag, "sleepy")] {
        Status::Failed(error) => {
            assert!(error.report.to_string().contains("timed out after 100ms"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn cancelling_stops_running_steps_and_starts_no_more() {
    let (pipeline, tag) = pipeline(
        r#"
        groups one -> two
        step test:work long { group = one ms = 5000 }
        step test:work next { group = two }
        "#,
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let results = run(&pipeline, fast(), &cancel).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(results[&name(&tag, "long")], Status::Cancelled));
    assert!(matches!(
        results[&name(&tag, "next")],
        Status::NotRun { .. }
    ));
}

#[tokio::test]
async fn keep_going_lets_later_groups_run_and_says_why_a_step_did_not() {
    let (pipeline, tag) = pipeline(
        r#"
        groups one -> two -> three
        step test:work fails { group = one fail = true writes = ["x/1"] }
        step test:work fine { group = one writes = ["y/1"] }
        step test:work reads_failure { group = two reads = ["x/1"] writes = ["z/1"] }
        step test:work waits_by_after { group = two after = [test:work/fails] }
        step test:work reads_fine { group = two reads = ["y/1"] }
        step test:work downstream { group = three reads = ["z/1"] }
        step test:work later { group = three }
        "#,
    );
    let options = Options {
        keep_going: true,
        ..fast()
    };
    let results = run(&pipeline, options, &CancellationToken::new()).await;
    assert!(matches!(results[&name(&tag, "fails")], Status::Failed(_)));
    for ran in ["fine", "reads_fine", "later"] {
        assert!(
            matches!(results[&name(&tag, ran)], Status::Succeeded(_)),
            "{ran}: {:?}",
            results[&name(&tag, ran)]
        );
    }
    let reason = |step: &str| match &results[&name(&tag, step)] {
        Status::NotRun { reason } => reason.clone().unwrap_or_default(),
        other => panic!("{step}: {other:?}"),
    };
    let failed = format!("depends on `test:work/{tag}_fails`");
    assert!(
        reason("reads_failure").contains(&failed),
        "{}",
        reason("reads_failure")
    );
    assert!(
        reason("waits_by_after").contains("through `after`"),
        "{}",
        reason("waits_by_after")
    );
    assert!(
        reason("downstream").contains(&failed),
        "{}",
        reason("downstream")
    );
}

#[tokio::test]
async fn a_run_s_events_reach_every_receiver_of_its_stream_in_order() {
    use flow_engine::run::{Observer, RunEvent, RunStatus, Stream};
    let (pipeline, tag) = pipeline(
        r#"
        step test:work a { ms = 5 writes = ["out/a.txt"] }
        step test:work b { flaky = 1 reads = ["out/a.txt"] }
        "#,
    );
    let pipeline = Arc::new(pipeline);
    let mut stream = Stream::new(Arc::clone(&pipeline), 64);
    let watch = stream.watch();
    let (before, mut first) = watch.subscribe();
    assert!(before.is_empty());
    let selected = Selection::default().apply(&pipeline).expect("selection");
    let shared = shared();
    stream.started(7, "default", 2);
    let results = executor::execute(
        &pipeline,
        &selected,
        &shared,
        &fast(),
        &executor::Memory::default(),
        &CancellationToken::new(),
        |event| stream.event(&event),
    )
    .await;
    stream.finished(7, RunStatus::Succeeded, &results);
    // A watcher that comes when the run is over still gets it all.
    let (late, mut second) = watch.subscribe();
    drop((stream, watch));

    let mut events = Vec::new();
    while let Ok(event) = first.recv().await {
        events.push(event);
    }
    let (a, b) = (
        format!("test:work/{}", name(&tag, "a")),
        format!("test:work/{}", name(&tag, "b")),
    );
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            RunEvent::RunStarted { run, .. } => format!("run {run}"),
            RunEvent::StepStarted { step } => format!("start {step}"),
            RunEvent::StepRetrying { step, attempt, .. } => format!("retry {step} {attempt}"),
            RunEvent::StepFinished { step, status, .. } => format!("{status} {step}"),
            RunEvent::RunFinished { status, .. } => format!("run {status}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run 7".to_owned(),
            format!("start {a}"),
            format!("succeeded {a}"),
            format!("start {b}"),
            format!("retry {b} 1"),
            format!("succeeded {b}"),
            "run succeeded".to_owned(),
        ]
    );
    let json = serde_json::to_value(&events[2]).expect("json");
    assert_eq!(json["event"], "step_finished");
    assert_eq!(json["rows"], 0);
    assert_eq!(late.len(), events.len());
    assert!(second.recv().await.is_err(), "nothing after the end");
}
