//! `minio:download` against a real S3-compatible server (SeaweedFS).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;
use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use support::{Flow, Folder, flat};

struct Project {
    /// Removed with the project.
    _folder: Folder,
    dir: PathBuf,
}

impl Project {
    fn new(name: &str, extra: &str) -> Self {
        let folder = Folder::new("dl", name);
        folder.write(
            "downloads.flow",
            &format!(
                "flow downloads\n\nstorage bucket = env(\"BUCKET_URL\")\n\nstep minio:download {{\n  from = bucket \"shp/\"\n  to = \"data/raw\"\n{extra}}}\n"
            ),
        );
        let dir = folder.dir.clone();
        Self {
            _folder: folder,
            dir,
        }
    }

    /// `flow run` with the bucket, recording in a database of the test cluster.
    fn run(&self, url: &str, flow_db: &str) -> Flow {
        Flow::new(["run", "downloads.flow"])
            .dir(&self.dir)
            .env("BUCKET_URL", url)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("FLOW_DATABASE_URL", flow_db)
    }

    fn raw(&self) -> PathBuf {
        self.dir.join("data/raw")
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

fn note(output: &support::Output) -> String {
    output
        .stderr
        .lines()
        .find(|l| l.starts_with("done  minio:download"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_a_thousand_keys_then_only_what_changed() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("pages").await;
    let mut uploads = Vec::new();
    for i in 0..1_100 {
        let bucket = bucket.clone();
        uploads.push(tokio::spawn(async move {
            bucket
                .put_object(
                    format!("shp/part{:02}/f{i:04}.txt", i % 7),
                    format!("object {i}").as_bytes(),
                )
                .await
        }));
    }
    for upload in uploads {
        upload.await.expect("task").expect("upload");
    }
    bucket
        .put_object("elsewhere/not-this.txt", b"outside the prefix")
        .await
        .expect("upload");
    let project = Project::new("pages", "");
    let url = server.url(&bucket, "");

    let output = project.run(&url, &db.url()).expect(0);
    assert!(
        note(&output).contains("1100 downloaded, 0 unchanged"),
        "{}",
        output.stderr
    );
    let local = files(&project.raw());
    assert_eq!(local.iter().filter(|f| f.ends_with(".txt")).count(), 1_100);
    assert!(local.contains(&"part03/f0003.txt".to_owned()));
    assert_eq!(
        std::fs::read_to_string(project.raw().join("part03/f0010.txt")).expect("file"),
        "object 10"
    );

    let output = project.run(&url, &db.url()).expect(0);
    assert!(
        note(&output).contains("0 downloaded, 1100 unchanged"),
        "{}",
        output.stderr
    );

    bucket
        .put_object("shp/part03/f0010.txt", b"changed")
        .await
        .expect("upload");
    let output = project.run(&url, &db.url()).expect(0);
    assert!(
        note(&output).contains("1 downloaded, 1099 unchanged"),
        "{}",
        output.stderr
    );
    assert_eq!(
        std::fs::read_to_string(project.raw().join("part03/f0010.txt")).expect("file"),
        "changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn include_and_exclude_globs_pick_keys() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("globs").await;
    for key in ["shp/a.shp", "shp/a.dbf", "shp/sub/b.shp", "shp/readme.txt"] {
        bucket.put_object(key, b"x").await.expect("upload");
    }
    let project = Project::new(
        "globs",
        "  include = [\"**/*.shp\", \"*.shp\", \"*.dbf\"]\n  exclude = [\"sub/**\"]\n",
    );
    project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    assert_eq!(
        files(&project.raw()),
        [".flow-manifest.json", "a.dbf", "a.shp"]
    );
    // A download always runs: the plan says why.
    let plan = Flow::new(["plan", "downloads.flow"])
        .dir(&project.dir)
        .env("BUCKET_URL", server.url(&bucket, ""))
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    assert!(
        plan.stdout
            .contains("runs: it reads objects `bucket/shp/`, which can change outside the flow"),
        "{}",
        plan.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifty_megabyte_object_arrives_whole() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("large").await;
    let content: Vec<u8> = (0..50 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    bucket
        .put_object("shp/large.bin", &content)
        .await
        .expect("upload");
    let project = Project::new("large", "");
    let output = project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    assert!(
        note(&output).contains("52428800 bytes"),
        "{}",
        output.stderr
    );
    assert!(std::fs::read(project.raw().join("large.bin")).expect("file") == content);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_and_missing_buckets_fail_clearly() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("denied").await;
    bucket.put_object("shp/a.txt", b"x").await.expect("upload");
    let project = Project::new("denied", "");
    let output = project
        .run(&server.url(&bucket, ""), &db.url())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
        .expect(1);
    let text = flat(&output.stderr);
    assert!(text.contains("access denied"), "{}", output.stderr);
    assert!(
        output.stderr.contains("flow::minio::access_denied"),
        "{}",
        output.stderr
    );
    assert!(
        text.contains(&format!(
            "bucket `{}` at {}",
            bucket.name(),
            server.endpoint
        )),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("not-the-secret-at-all"));

    let missing = server
        .url(&bucket, "")
        .replace(&bucket.name(), "no-such-bucket-here");
    let output = project.run(&missing, &db.url()).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("bucket `no-such-bucket-here`") && text.contains("does not exist"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("flow::minio::no_bucket"),
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_download_leaves_no_partial_file_and_a_rerun_completes() {
    let mut server = S3Server::private("killed").await;
    let db = TestDatabase::create("killeddl").await.expect("database");
    let bucket = server.bucket("killed").await;
    let chunk = vec![7u8; 2 * 1024 * 1024];
    for i in 0..120 {
        bucket
            .put_object(format!("shp/f{i:03}.bin"), &chunk)
            .await
            .expect("upload");
    }
    // A server coming back may refuse a moment longer: a few more retries.
    let project = Project::new("killed", "  jobs = 1\n  retries = 4\n");
    let url = server.url(&bucket, "");
    let child = support::spawn_flow(
        &project.dir,
        "downloads.flow",
        "BUCKET_URL",
        &url,
        &db.url(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while files(&project.raw()).len() < 3 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let output = child.wait_with_output().expect("flow ends");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left = files(&project.raw());
    assert!(left.len() < 121, "the server was killed before the end");
    assert!(
        left.iter().all(|f| !f.contains("flow-part")),
        "no partial file remains: {left:?}"
    );
    for file in left.iter().filter(|f| f.ends_with(".bin")) {
        assert_eq!(
            std::fs::metadata(project.raw().join(file))
                .expect("file")
                .len(),
            chunk.len() as u64,
            "{file} is whole"
        );
    }

    server.restart().await;
    let output = project.run(&url, &db.url()).expect(0);
    assert!(note(&output).contains("unchanged"), "{}", output.stderr);
    assert_eq!(files(&project.raw()).len(), 121);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_is_a_folder_and_no_key_can_leave_the_download_folder() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("prefixes").await;
    for key in ["shp/a.shp", "shp-old/b.shp", "shpx.shp"] {
        bucket.put_object(key, b"x").await.expect("upload");
    }
    // The step names the prefix without its slash.
    let project = Project::new("prefixes", "");
    let flow = std::fs::read_to_string(project.dir.join("downloads.flow")).expect("flow");
    std::fs::write(
        project.dir.join("downloads.flow"),
        flow.replace("bucket \"shp/\"", "bucket \"shp\""),
    )
    .expect("flow");
    project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    assert_eq!(files(&project.raw()), [".flow-manifest.json", "a.shp"]);

    // A key that would land outside the folder or on another key's file is
    // refused before anything is written. (SeaweedFS refuses such keys
    // itself; a folder storage can hold one: a file name with backslashes.)
    let source = project.dir.join("source/shp");
    std::fs::create_dir_all(&source).expect("dir");
    std::fs::write(source.join("c.shp"), "x").expect("file");
    std::fs::write(source.join("sub\\..\\d.shp"), "x").expect("file");
    let _ = std::fs::remove_dir_all(project.raw());
    let output = project.run("file://source", &db.url()).expect(1);
    let text = flat(&output.stderr);
    assert!(
        text.contains("`sub\\..\\d.shp` (it holds a backslash)"),
        "{text}"
    );
    assert!(files(&project.raw()).is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_deleted_from_the_storage_are_reported_and_removed_on_request() {
    let server = S3Server::shared().await;
    let db = TestDatabase::create("downloads").await.expect("database");
    let bucket = server.bucket("deleted").await;
    for key in ["shp/a.shp", "shp/b.shp"] {
        bucket.put_object(key, b"x").await.expect("upload");
    }
    let project = Project::new("deleted", "");
    project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    bucket.delete_object("shp/b.shp").await.expect("delete");
    let output = project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    let text = flat(&output.stderr);
    assert!(
        text.contains("warning: 1 deleted from the storage but still in `data/raw`: `b.shp`"),
        "{text}"
    );
    assert_eq!(
        files(&project.raw()),
        [".flow-manifest.json", "a.shp", "b.shp"]
    );
    let flow = std::fs::read_to_string(project.dir.join("downloads.flow")).expect("flow");
    std::fs::write(
        project.dir.join("downloads.flow"),
        flow.replace(
            "  to = \"data/raw\"\n",
            "  to = \"data/raw\"\n  delete = true\n",
        ),
    )
    .expect("flow");
    let output = project.run(&server.url(&bucket, ""), &db.url()).expect(0);
    assert!(
        flat(&output.stderr)
            .contains("1 deleted from the storage, removed from `data/raw`: `b.shp`"),
        "{}",
        output.stderr
    );
    assert_eq!(files(&project.raw()), [".flow-manifest.json", "a.shp"]);
    let manifest =
        std::fs::read_to_string(project.raw().join(".flow-manifest.json")).expect("manifest");
    assert!(!manifest.contains("b.shp"), "{manifest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_fails_the_step_in_bounded_time_with_each_retry_shown() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let db = TestDatabase::create("downloads").await.expect("database");
    let project = Project::new("silent", "  request_timeout = 1s\n");
    let started = Instant::now();
    let output = project
        .run(
            &format!("s3://bucket?endpoint=http://127.0.0.1:{port}"),
            &db.url(),
        )
        .expect(1);
    let elapsed = started.elapsed();
    let text = flat(&output.stderr);
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert_eq!(
        text.matches("retry minio:download").count(),
        2,
        "two retries, each shown: {text}"
    );
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}
