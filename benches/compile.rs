//! Parse, check, compile and plan generated flows of 100, 1,000 and 10,000
//! steps: what `flow check` and `flow plan` cost.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flow_benches::generated_flow;
use flow_engine::{Plan, Registry, Selection};

// The allocator of the `flow` binary, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flow_plugin_sh as _;
use flow_plugin_sql as _;

fn compile(c: &mut Criterion) {
    let registry = Registry::installed();
    let mut group = c.benchmark_group("check_and_plan");
    group.sample_size(20);
    for steps in [100, 1_000, 10_000] {
        let text = generated_flow(steps);
        group.throughput(Throughput::Elements(steps as u64));
        group.bench_with_input(BenchmarkId::new("parse", steps), &text, |b, text| {
            b.iter(|| flow_dsl::parse(text));
        });
        group.bench_with_input(
            BenchmarkId::new("parse_compile_plan", steps),
            &text,
            |b, text| {
                b.iter(|| {
                    let parsed = flow_dsl::parse(text);
                    let pipeline =
                        flow_engine::compile(&parsed.flow, &registry, "generated").expect("valid");
                    let selected = Selection::default().apply(&pipeline).expect("selection");
                    Plan::new(&pipeline, &selected)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
