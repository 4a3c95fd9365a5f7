//! The embedded cluster: a PostgreSQL server flow runs itself.
//!
//! State lives in the flow's `.flow/` folder: `pg/` (the data directory),
//! `pg.port`, `pg.password` (mode 0600) and `pgpass` (for `psql`). The server
//! listens on 127.0.0.1 only, on a free port, with scram-sha-256 passwords.
//!
//! Several flow processes may share one cluster. Each holds a [`Lease`] (a
//! shared lock on `pg.users`) while it works; the last one out stops the
//! server, unless `flow db up` asked to keep it up (`pg.keep`). Starting and
//! stopping happen under an exclusive lock on `pg.lock`.
//!
//! PostgreSQL refuses to run as root. As root, flow runs the server as the
//! `postgres` system user (created by Debian's packages), or creates a `flow`
//! system user; when that user cannot reach `.flow/`, the data directory goes
//! to `/var/tmp/flow-clusters/` instead, and `.flow/pg.data` records where.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::DbError;

/// The superuser of the embedded cluster.
pub(crate) const SUPERUSER: &str = "flow";

#[derive(Debug, Clone)]
pub struct Cluster {
    state: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    /// The system user the server runs as, when flow runs as root.
    server_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStatus {
    NotCreated,
    Stopped,
    Running { port: u16 },
}

/// A process's claim on a running cluster; dropping it stops the server when
/// nobody else holds one and it was not kept up.
#[derive(Debug)]
pub struct Lease {
    cluster: Cluster,
    users: Option<File>,
    pub port: u16,
}

impl Cluster {
    /// The cluster whose state is in `state` (a flow's `.flow/` folder).
    pub fn new(state: &Path) -> Result<Self, DbError> {
        let bindir = find_bindir().ok_or(DbError::PostgresMissing)?;
        let server_user = if is_root() {
            Some(server_user()?)
        } else {
            None
        };
        fs::create_dir_all(state)
            .map_err(DbError::io(format!("cannot create `{}`", state.display())))?;
        let state = state
            .canonicalize()
            .map_err(DbError::io(format!("cannot read `{}`", state.display())))?;
        let recorded = state.join("pg.data");
        let data = match fs::read_to_string(&recorded) {
            Ok(path) => PathBuf::from(path.trim()),
            Err(_) => match &server_user {
                Some(user) if !can_traverse(user, &state) => {
                    let hash = state
                        .to_string_lossy()
                        .bytes()
                        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                        });
                    let data = PathBuf::from(format!("/var/tmp/flow-clusters/{hash:016x}"));
                    fs::write(&recorded, data.to_string_lossy().as_bytes())
                        .map_err(DbError::io("cannot record the data directory"))?;
                    data
                }
                _ => state.join("pg"),
            },
        };
        Ok(Self {
            state,
            data,
            bindir,
            server_user,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn status(&self) -> ClusterStatus {
        if !self.data.join("PG_VERSION").exists() {
            return ClusterStatus::NotCreated;
        }
        match self.running_port() {
            Some(port) => ClusterStatus::Running { port },
            None => ClusterStatus::Stopped,
        }
    }

    /// Starts the cluster if needed (creating it on first use) and holds it up
    /// until the lease is dropped.
    pub fn lease(&self) -> Result<Lease, DbError> {
        let users = self.lock_file("pg.users")?;
        users
            .lock_shared()
            .map_err(DbError::io("cannot lock `pg.users`"))?;
        let port = {
            let start = self.lock_file("pg.lock")?;
            start.lock().map_err(DbError::io("cannot lock `pg.lock`"))?;
            self.start()?
        };
        Ok(Lease {
            cluster: self.clone(),
            users: Some(users),
            port,
        })
    }

    /// `flow db up`: starts the cluster and keeps it up after runs end.
    pub fn up(&self) -> Result<u16, DbError> {
        let start = self.lock_file("pg.lock")?;
        start.lock().map_err(DbError::io("cannot lock `pg.lock`"))?;
        let port = self.start()?;
        fs::write(self.state.join("pg.keep"), b"")
            .map_err(DbError::io("cannot write `pg.keep`"))?;
        Ok(port)
    }

    /// `flow db down`: stops the cluster, whoever started it.
    pub fn down(&self) -> Result<(), DbError> {
        let start = self.lock_file("pg.lock")?;
        start.lock().map_err(DbError::io("cannot lock `pg.lock`"))?;
        let _ = fs::remove_file(self.state.join("pg.keep"));
        self.stop()
    }

    /// The password of the superuser, generated at creation.
    pub fn password(&self) -> Result<String, DbError> {
        fs::read_to_string(self.state.join("pg.password"))
            .map(|p| p.trim().to_owned())
            .map_err(DbError::io("cannot read the embedded cluster's password"))
    }

    /// A URL for `database`, without the password (it is in `.flow/pgpass`).
    pub fn url(&self, port: u16, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
    }

    pub fn pgpass(&self) -> PathBuf {
        self.state.join("pgpass")
    }

    pub fn config(&self, port: u16, database: &str) -> Result<tokio_postgres::Config, DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(SUPERUSER)
            .password(self.password()?)
            .dbname(database)
            .application_name("flow")
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .connect_timeout(std::time::Duration::from_secs(10));
        Ok(config)
    }

    fn lock_file(&self, name: &str) -> Result<File, DbError> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.state.join(name))
            .map_err(DbError::io(format!("cannot open `{name}`")))
    }

    fn running_port(&self) -> Option<u16> {
        let status = self
            .pg_ctl(&["status", "-D", &self.data.to_string_lossy()])
            .ok()?;
        if !status.status.success() {
            return None;
        }
        // The fourth line of postmaster.pid is the port.
        let pid = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid.lines().nth(3)?.trim().parse().ok()
    }

    fn start(&self) -> Result<u16, DbError> {
        if let ClusterStatus::Running { port } = self.status() {
            return Ok(port);
        }
        if !self.data.join("PG_VERSION").exists() {
            self.init()?;
        }
        let recorded = fs::read_to_string(self.state.join("pg.port"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let port = recorded
            .filter(|p| port_free(*p))
            .map_or_else(free_port, Ok)?;
        let log = self.data.join("server.log");
        let options = format!("-p {port}");
        let output = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            &self.data.to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
            "-o",
            &options,
        ])?;
        if !output.status.success() {
            return Err(DbError::ClusterStart {
                dir: self.data.display().to_string(),
                reason: last_line(&output),
                log: log.display().to_string(),
            });
        }
        fs::write(self.state.join("pg.port"), port.to_string())
            .map_err(DbError::io("cannot write `pg.port`"))?;
        let pgpass = format!("127.0.0.1:{port}:*:{SUPERUSER}:{}\n", self.password()?);
        write_private(&self.pgpass(), &pgpass)?;
        tracing::info!(port, data = %self.data.display(), "embedded cluster started");
        Ok(port)
    }

    fn stop(&self) -> Result<(), DbError> {
        if !matches!(self.status(), ClusterStatus::Running { .. }) {
            return Ok(());
        }
        let output = self.pg_ctl(&[
            "stop",
            "-w",
            "-m",
            "fast",
            "-D",
            &self.data.to_string_lossy(),
        ])?;
        if output.status.success() {
            tracing::info!("embedded cluster stopped");
            Ok(())
        } else {
            Err(DbError::Command {
                command: "pg_ctl stop".into(),
                reason: last_line(&output),
            })
        }
    }

    fn init(&self) -> Result<(), DbError> {
        let password = generate_password()?;
        write_private(&self.state.join("pg.password"), &password)?;
        let parent = self.data.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(&self.data).map_err(DbError::io(format!(
            "cannot create `{}`",
            self.data.display()
        )))?;
        fs::set_permissions(&self.data, fs::Permissions::from_mode(0o700))
            .map_err(DbError::io("cannot set the data directory's mode"))?;
        let pwfile = parent.join(format!(".flow-initdb-{}", std::process::id()));
        write_private(&pwfile, &password)?;
        if let Some(user) = &self.server_user {
            self.chown(user, &self.data)?;
            self.chown(user, &pwfile)?;
        }
        let output = self.run_as_server(
            &self.bindir.join("initdb"),
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-U",
                SUPERUSER,
                "--pwfile",
                &pwfile.to_string_lossy(),
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        );
        let _ = fs::remove_file(&pwfile);
        let output = output?;
        if !output.status.success() {
            return Err(DbError::ClusterStart {
                dir: self.data.display().to_string(),
                reason: format!("initdb failed: {}", last_line(&output)),
                log: "initdb's output above".into(),
            });
        }
        let settings = "\n# Written by flow: a local working cluster.\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nsynchronous_commit = off\nmax_connections = 200\n";
        let conf = self.data.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(DbError::io("cannot open postgresql.conf"))?;
        file.write_all(settings.as_bytes())
            .map_err(DbError::io("cannot write postgresql.conf"))?;
        Ok(())
    }

    fn chown(&self, user: &str, path: &Path) -> Result<(), DbError> {
        let output = Command::new("chown")
            .args(["-R", &format!("{user}:"), &path.to_string_lossy()])
            .output()
            .map_err(|e| DbError::Command {
                command: "chown".into(),
                reason: e.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(DbError::Command {
                command: "chown".into(),
                reason: last_line(&output),
            })
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, DbError> {
        self.run_as_server(&self.bindir.join("pg_ctl"), args)
    }

    fn run_as_server(&self, program: &Path, args: &[&str]) -> Result<Output, DbError> {
        let mut command = match &self.server_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.args(args).current_dir("/");
        command.output().map_err(|e| DbError::Command {
            command: program.display().to_string(),
            reason: e.to_string(),
        })
    }
}

impl Lease {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.users.take());
        let Ok(start) = self.cluster.lock_file("pg.lock") else {
            return;
        };
        if start.lock().is_err() {
            return;
        }
        let Ok(users) = self.cluster.lock_file("pg.users") else {
            return;
        };
        let last = users.try_lock().is_ok();
        if last
            && !self.cluster.state.join("pg.keep").exists()
            && let Err(error) = self.cluster.stop()
        {
            tracing::warn!(%error, "could not stop the embedded cluster");
        }
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("FLOW_PG_BINDIR").map(PathBuf::from) {
        return has_initdb(&dir).then_some(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has_initdb(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|d| has_initdb(d))
                .collect::<Vec<_>>()
        })
        .and_then(|dirs| dirs.into_iter().next())
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The unprivileged user the server runs as when flow runs as root.
fn server_user() -> Result<String, DbError> {
    for user in ["postgres", "flow"] {
        if user_exists(user) {
            return Ok(user.to_owned());
        }
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "flow",
        ])
        .output()
        .map_err(|e| DbError::Command {
            command: "useradd".into(),
            reason: e.to_string(),
        })?;
    if output.status.success() {
        Ok("flow".into())
    } else {
        Err(DbError::Command {
            command: "useradd flow".into(),
            reason: last_line(&output),
        })
    }
}

fn can_traverse(user: &str, dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "test", "-x"])
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16, DbError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(DbError::io("cannot find a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(DbError::io("cannot find a free port"))
}

fn generate_password() -> Result<String, DbError> {
    let mut bytes = [0u8; 24];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(DbError::io("cannot read /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<(), DbError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(DbError::io(format!("cannot write `{}`", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(DbError::io(format!("cannot write `{}`", path.display())))
}

fn last_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stderr
        .lines()
        .chain(stdout.lines())
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .to_owned()
}
