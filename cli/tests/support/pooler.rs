//! PgBouncer (Debian's) in front of the test cluster, in transaction mode,
//! running `DISCARD ALL` on every server it gets back: anything a client
//! left in a session is gone before its next transaction.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The parts of a test database's URL
/// (`postgres://USER:PASSWORD@127.0.0.1:PORT/NAME?sslmode=disable`).
pub struct Server {
    pub user: String,
    pub password: String,
    pub port: u16,
}

impl Server {
    pub fn of(url: &str) -> Self {
        let rest = url.strip_prefix("postgres://").expect("a test URL");
        let (credentials, rest) = rest.split_once('@').expect("credentials");
        let (user, password) = credentials.split_once(':').expect("password");
        let port = rest
            .split_once(':')
            .and_then(|(_, r)| r.split_once('/'))
            .and_then(|(p, _)| p.parse().ok())
            .expect("port");
        Server {
            user: user.to_owned(),
            password: password.to_owned(),
            port,
        }
    }
}

/// PgBouncer in front of the test cluster, in transaction mode, with at
/// most `servers` connections to PostgreSQL per database.
pub struct Bouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Bouncer {
    pub fn start(tag: &str, server: &Server, servers: usize) -> Self {
        Self::start_in(tag, server, servers, "transaction")
    }

    /// The same, in `mode` (`session` or `transaction`).
    pub fn start_in(tag: &str, server: &Server, servers: usize, mode: &str) -> Self {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("pgbouncer is installed (scripts/prerequisites installs Debian's)");
        let dir = std::env::temp_dir().join(format!("flow-bouncer{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let (user, password) = (&server.user, &server.password);
        std::fs::write(
            dir.join("users.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .expect("users");
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = plain\nauth_file = {dir}/users.txt\n\
                 pool_mode = {mode}\ndefault_pool_size = {servers}\nmax_client_conn = 500\n\
                 server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                server_port = server.port,
                dir = dir.display(),
            ),
        )
        .expect("ini");
        let mut command = Command::new(binary);
        // PgBouncer refuses to run as root.
        if nix_is_root() {
            let _ = Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(&dir)
                .status();
            command.args(["-u", "postgres"]);
        }
        // Quiet: its log is in the folder (`log`).
        let mut child = command
            .arg("-q")
            .arg(dir.join("pgbouncer.ini"))
            .spawn()
            .expect("pgbouncer starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { dir, port, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pgbouncer did not listen: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }

    /// `url` with the bouncer's host and port, and `pool_mode=transaction`
    /// when `declared`.
    pub fn url(&self, url: &str, declared: bool) -> String {
        let server = Server::of(url);
        let url = url.replace(
            &format!("127.0.0.1:{}/", server.port),
            &format!("127.0.0.1:{}/", self.port),
        );
        if declared {
            format!("{url}&pool_mode=transaction")
        } else {
            url
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|u| u.split_whitespace().next() == Some("0"))
            })
        })
        .unwrap_or(false)
}
