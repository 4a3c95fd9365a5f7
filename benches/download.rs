//! Many small objects from S3: `minio:download` against `rclone copy`, from
//! the same SeaweedFS (`weed mini` on 127.0.0.1), into empty folders, in the
//! same run.
//!
//! `cargo bench -p flow-benches --bench download` uploads 2,500 objects of
//! 4 KiB, then times each tool twice (the better of two), and prints the
//! ratio (rclone's time / flow's). rclone is Debian's (`apt-get install
//! rclone`); without it the comparison is left out. Both download 8 objects
//! at a time (`jobs = 8`, `--transfers 8`).
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../cli/tests/support/s3.rs"]
mod s3_server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flow_engine::Registry;
use futures_util::StreamExt as _;
use s3_server::{ACCESS_KEY, S3Server, SECRET_KEY};
use {flow_plugin_minio as _, flow_plugin_pg as _};

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let objects = if full { 2_500 } else { 20 };
    let server = S3Server::private("benchdl").await;
    let bucket = server.bucket("bench").await;
    println!("uploading {objects} objects ...");
    let body = vec![7u8; 4096];
    futures_util::stream::iter(0..objects)
        .map(|i| {
            let (bucket, body) = (&bucket, &body);
            async move {
                bucket
                    .put_object(format!("small/{:02}/{i:05}.bin", i % 50), body)
                    .await
                    .expect("upload");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let dir: PathBuf = std::env::temp_dir().join(format!("flow-bench-dl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!(
        "s3://{}:{}@{}/small?endpoint={}",
        ACCESS_KEY,
        SECRET_KEY,
        bucket.name(),
        server.endpoint
    );
    let flow = format!(
        "flow bench\nstorage bucket = \"{url}\"\nstep minio:download {{\n  from = bucket\n  to = \"out\"\n  jobs = 8\n}}\n"
    );
    let pipeline = flow_engine::compile(
        &flow_dsl::parse(&flow).flow,
        &Registry::installed(),
        "bench",
    )
    .expect("flow");
    let storages = Arc::new(BTreeMap::from([("bucket".to_owned(), url.clone())]));
    let step = pipeline.steps.first().expect("step");
    let have_rclone = flow_benches::have("rclone");
    let config = flow_benches::rclone_config(&dir, &server.endpoint, ACCESS_KEY, SECRET_KEY);
    // Turns, one tool after the other, so that both meet the server in the
    // same state; the best of three each.
    let (mut flow_best, mut rclone_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(dir.join("out"));
        let mut context =
            flow_engine::RunContext::for_step(step, dir.clone(), Arc::default(), Arc::default());
        context.storages = Arc::clone(&storages);
        let started = std::time::Instant::now();
        step.operation
            .run(&context)
            .await
            .unwrap_or_else(|e| panic!("{:?}", e.report));
        flow_best = flow_best.min(started.elapsed());
        if have_rclone {
            let _ = std::fs::remove_dir_all(dir.join("rclone"));
            rclone_best = rclone_best.min(flow_benches::timed(&format!(
                // rclone refuses a CA bundle for a plain-HTTP endpoint.
                "env -u AWS_CA_BUNDLE rclone --config {} copy --transfers 8 --checkers 8 seaweed:{}/small {}",
                config.display(),
                bucket.name(),
                dir.join("rclone").display()
            )));
        }
    }
    let rclone = have_rclone.then_some(rclone_best);
    println!("\n{objects} objects of 4 KiB, 2 cores");
    flow_benches::line(
        "S3 -> folder",
        flow_best,
        rclone.map(|t| ("rclone copy", t)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
