//! flow behind PgBouncer (Debian's, 1.18) in transaction mode: a server is
//! lent for one transaction at a time. The bouncer here also runs
//! `DISCARD ALL` on every server it gets back, so anything flow left in a
//! session (a named prepared statement, a setting, an advisory lock, a
//! temporary table) is gone before its next transaction, whichever server
//! that lands on: what would work by luck fails every time.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::reference::Reference;
use support::{Project, flat};

/// The parts of a test database's URL
/// (`postgres://USER:PASSWORD@127.0.0.1:PORT/NAME?sslmode=disable`).
struct Server {
    user: String,
    password: String,
    port: u16,
}

impl Server {
    fn of(url: &str) -> Self {
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
struct Bouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Bouncer {
    fn start(tag: &str, server: &Server, servers: usize) -> Self {
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
                 pool_mode = transaction\ndefault_pool_size = {servers}\nmax_client_conn = 500\n\
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
        let mut child = command
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
    fn url(&self, url: &str, declared: bool) -> String {
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

    fn log(&self) -> String {
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

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_runs_unchanged_behind_pgbouncer_in_transaction_mode() {
    let reference = Reference::new("pooled").await;
    let server = Server::of(&reference.flow.url());
    let bouncer = Bouncer::start("reference", &server, 2);
    let pooled = |args: &[&str]| {
        reference
            .run(args)
            .env(
                "FLOW_DATABASE_URL",
                bouncer.url(&reference.flow.url(), true),
            )
            .env("API_DATABASE_URL", bouncer.url(&reference.api.url(), true))
    };
    let first = pooled(&[]).run();
    assert_eq!(
        first.code,
        0,
        "{}\n{}\npgbouncer: {}",
        first.stdout,
        first.stderr,
        bouncer.log()
    );
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels")
            .await,
        400
    );
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.zoning")
            .await,
        4
    );
    // Every value equals a run straight to the server's.
    let through_bouncer: String = reference
        .one("SELECT md5(string_agg(p::text, '|' ORDER BY p.id)) FROM public.parcels p")
        .await;
    reference.run(&["--force"]).expect(0);
    let direct: String = reference
        .one("SELECT md5(string_agg(p::text, '|' ORDER BY p.id)) FROM public.parcels p")
        .await;
    assert_eq!(through_bouncer, direct);
    // Again through the bouncer: swap, skip-unchanged and the run's records.
    let second = pooled(&["--force"]).run();
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let third = pooled(&[]).expect(0);
    assert!(
        flat(&third.stdout).contains("pg:target:populate skipped"),
        "{}",
        third.stdout
    );
    // The runs went through the bouncer, which lends a server per
    // transaction and forgets sessions: a named prepared statement (what
    // tokio-postgres does by default) does not survive it.
    assert!(
        bouncer
            .log()
            .contains(&format!("db={}", reference.api.name)),
        "{}",
        bouncer.log()
    );
    let (client, connection) = flow_db::tokio_postgres::connect(
        &bouncer.url(&reference.api.url(), false),
        flow_db::tokio_postgres::NoTls,
    )
    .await
    .expect("through the bouncer");
    tokio::spawn(connection);
    let named = client
        .query(
            "SELECT count(*) FROM public.parcels WHERE id::int > $1::int",
            &[&0_i32],
        )
        .await;
    let error = named.expect_err("a named statement does not outlive its transaction");
    let message = error.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("prepared statement")),
        "{error:?}"
    );
}

const LISTENING: &str = r#"flow products

database api = env("API_DATABASE_URL")

step pg:target:populate {
  to = api.public
  tables = [products]
  history = { products = [price] }
  notify = product_changes
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn what_needs_a_session_says_so_and_uses_the_direct_url() {
    let project = Project::new("pooler", "pooledlisten", "products.flow", LISTENING).await;
    let bouncer = Bouncer::start("listen", &Server::of(&project.db.url()), 2);
    let pooled = bouncer.url(&project.db.url(), true);
    // LISTEN through a pooler in transaction mode would hear nothing: refused,
    // naming the setting.
    let refused = project
        .flow(&["listen"])
        .env("API_DATABASE_URL", &pooled)
        .expect(1);
    let text = flat(&refused.stderr);
    assert!(text.contains("flow::db::session_needed"), "{text}");
    assert!(text.contains("direct"), "{text}");
    assert!(!text.contains(&Server::of(&pooled).password), "{text}");

    // With the server's own URL beside the pooler's, it listens there.
    project.write(
        "products.flow",
        &LISTENING.replace(
            r#"database api = env("API_DATABASE_URL")"#,
            r#"database api = { url = env("API_DATABASE_URL"), pool_mode = "transaction", direct = env("API_DIRECT_URL") }"#,
        ),
    );
    let mut listening = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["listen", "products.flow"])
        .current_dir(&project.dir)
        .env("API_DATABASE_URL", &pooled)
        .env("API_DIRECT_URL", project.db.url())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flow listen");
    let stderr = BufReader::new(listening.stderr.take().expect("stderr"));
    let mut notes = stderr.lines();
    let started = notes
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("listening on") || line.contains("error"));
    assert!(
        started
            .as_deref()
            .is_some_and(|l| l.contains("listening on product_changes")),
        "{started:?}"
    );
    let client = project.db.client().await.expect("client");
    client
        .batch_execute("NOTIFY product_changes, '{\"id\": 7}'")
        .await
        .expect("notify");
    let stdout = BufReader::new(listening.stdout.take().expect("stdout"));
    let line = stdout
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = listening.kill();
    let _ = listening.wait();
    let heard: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(heard["channel"], "product_changes");
    assert_eq!(heard["change"]["id"], 7);
}

/// The run's values reach the SQL of a step behind a pooler, where the
/// server cannot get them at connection start.
#[tokio::test(flavor = "multi_thread")]
async fn the_runs_values_reach_sql_behind_a_pooler() {
    let project = Project::new(
        "pooler",
        "pooledvalues",
        "values.flow",
        r#"flow values

database flow = env("FLOW_DATABASE_URL")

step sql:flow:run seen {
  sql = "seen.sql"
  writes = ["public.seen"]
}
"#,
    )
    .await;
    project.write(
        "seen.sql",
        "DROP TABLE IF EXISTS public.seen;\nCREATE TABLE public.seen AS SELECT current_setting('flow.release') AS release;\n",
    );
    let bouncer = Bouncer::start("values", &Server::of(&project.db.url()), 1);
    // Not declared: the pooler refuses the values at connection start, and
    // the error says what to add.
    let undeclared = project
        .run(&["--var", "release=2026-12 nightly"])
        .env("FLOW_DATABASE_URL", bouncer.url(&project.db.url(), false))
        .run();
    assert_ne!(undeclared.code, 0);
    assert!(
        flat(&undeclared.stderr).contains("add `pool_mode=transaction` to the URL"),
        "{}",
        undeclared.stderr
    );
    let run = project
        .run(&["--var", "release=2026-12 nightly"])
        .env("FLOW_DATABASE_URL", bouncer.url(&project.db.url(), true))
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let client = project.db.client().await.expect("client");
    let release: String = client
        .query_one("SELECT release FROM public.seen", &[])
        .await
        .expect("seen")
        .get(0);
    assert_eq!(release, "2026-12 nightly");
}

const TICKS: &str = r#"flow ticks

database flow = env("FLOW_DATABASE_URL")

groups work

step sh:run stamp {
  group = work
  command = "sh"
  args = ["-c", "rm -f out.txt"]
  writes = ["out.txt"]
}

schedule tick {
  every = 1s
  run = [work]
}
"#;

/// The scheduler's lead and jobs are session advisory locks: behind a
/// pooler in transaction mode they need the server's own URL.
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_takes_its_locks_on_the_direct_url() {
    let project = Project::new("pooler", "pooledticks", "ticks.flow", TICKS).await;
    let bouncer = Bouncer::start("ticks", &Server::of(&project.db.url()), 2);
    let pooled = bouncer.url(&project.db.url(), true);
    let refused = project
        .flow(&["schedule", "--tick-ms", "100"])
        .env("FLOW_DATABASE_URL", &pooled)
        .run();
    let text = flat(&refused.stderr);
    assert!(text.contains("not scheduling"), "{text}");
    assert!(text.contains("direct"), "{text}");

    project.write(
        "ticks.flow",
        &TICKS.replace(
            r#"database flow = env("FLOW_DATABASE_URL")"#,
            r#"database flow = { url = env("FLOW_DATABASE_URL"), pool_mode = "transaction", direct = env("FLOW_DIRECT_URL") }"#,
        ),
    );
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["schedule", "ticks.flow", "--tick-ms", "100"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", &pooled)
        .env("FLOW_DIRECT_URL", project.db.url())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flow schedule");
    let client = project.db.client().await.expect("client");
    let mut succeeded = 0_i64;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Ok(row) = client
            .query_one(
                "SELECT count(*) FROM _flow.fires WHERE status = 'succeeded'",
                &[],
            )
            .await
        {
            succeeded = row.get(0);
            if succeeded >= 2 {
                break;
            }
        }
    }
    let _ = scheduler.kill();
    let _ = scheduler.wait();
    let mut log = String::new();
    if let Some(mut stderr) = scheduler.stderr.take() {
        use std::io::Read as _;
        let _ = stderr.read_to_string(&mut log);
    }
    assert!(succeeded >= 2, "{log}");
    assert!(log.contains("leading the schedules"), "{log}");
}
