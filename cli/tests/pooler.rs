//! flow behind PgBouncer (Debian's, 1.18) in transaction mode: a server is
//! lent for one transaction at a time. The bouncer here also runs
//! `DISCARD ALL` on every server it gets back, so anything flow left in a
//! session (a named prepared statement, a setting, an advisory lock, a
//! temporary table) is gone before its next transaction, whichever server
//! that lands on: what would work by luck fails every time.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use support::pooler::{Bouncer, Server};
use support::reference::Reference;
use support::{Flow, Project, flat};

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_runs_unchanged_behind_pgbouncer_in_transaction_mode() {
    let reference = Reference::new("pooled").await;
    let server = Server::of(&reference.flow.url());
    let bouncer = Bouncer::start("reference", &server, 1);
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
    reference.assert_loaded().await;
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

/// In session mode a pooler lends a server for the whole connection: the
/// URL needs nothing more, and the pooler as many servers as flow opens
/// connections (`--db-connections`, 8; with 2, a step waiting for a third
/// connection waited until the pooler gave up).
#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_runs_behind_pgbouncer_in_session_mode() {
    let reference = Reference::new("sessionpooled").await;
    let bouncer = Bouncer::start_in("session", &Server::of(&reference.flow.url()), 8, "session");
    let run = reference
        .run(&[])
        .env(
            "FLOW_DATABASE_URL",
            bouncer.url(&reference.flow.url(), false),
        )
        .env("API_DATABASE_URL", bouncer.url(&reference.api.url(), false))
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    reference.assert_loaded().await;
    assert!(
        bouncer
            .log()
            .contains(&format!("db={}", reference.api.name)),
        "{}",
        bouncer.log()
    );
}

/// A bouncer in transaction mode in front of the project's database, with
/// `servers` servers, and the database's URL through it, declared pooled.
fn behind_bouncer(project: &Project, tag: &str, servers: usize) -> (Bouncer, String) {
    let bouncer = Bouncer::start(tag, &Server::of(&project.db.url()), servers);
    let pooled = bouncer.url(&project.db.url(), true);
    (bouncer, pooled)
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
    let (_bouncer, pooled) = behind_bouncer(&project, "listen", 2);
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
    // An export's queries run in transactions that share a snapshot.
    project.write(
        "export.flow",
        "flow export\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\nstep pg:flow:export {\n  sql = \"queries/*.sql\"\n  to = \"exports/{table}.csv\"\n  jobs = 1\n}\n",
    );
    project.write(
        "queries/release.sql",
        "SELECT current_setting('flow.release') AS release",
    );
    let (bouncer, pooled) = behind_bouncer(&project, "values", 2);
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
        .env("FLOW_DATABASE_URL", &pooled)
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let client = project.db.client().await.expect("client");
    let release: String = client
        .query_one("SELECT release FROM public.seen", &[])
        .await
        .expect("seen")
        .get(0);
    assert_eq!(release, "2026-12 nightly");
    Flow::new([
        "run",
        "export.flow",
        "--plain",
        "--var",
        "release=2026-12 nightly",
    ])
    .dir(&project.dir)
    .env("FLOW_DATABASE_URL", &pooled)
    .expect(0);
    let exported =
        std::fs::read_to_string(project.dir.join("exports/release.csv")).expect("exported");
    assert_eq!(exported, "release\n2026-12 nightly\n");
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
    let (_bouncer, pooled) = behind_bouncer(&project, "ticks", 2);
    let refused = project
        .flow(&["schedule", "--tick-ms", "100"])
        .env("FLOW_DATABASE_URL", &pooled)
        .expect(1);
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

/// tokio-postgres learns a type it does not know (an enum, PostGIS's
/// geometry) with a statement it prepares once and keeps for the
/// connection; behind a pooler that statement stays on the server it was
/// made on. GeoJSON exports of tables with different types, one after the
/// other on one connection, each need a type the connection has not seen.
#[tokio::test(flavor = "multi_thread")]
async fn types_learnt_in_one_transaction_do_not_break_the_next() {
    let project = Project::new(
        "pooler",
        "pooledtypes",
        "shapes.flow",
        r#"flow shapes

database flow = env("FLOW_DATABASE_URL")

step pg:flow:export {
  tables = [points, kinds, moods]
  to = "exports/{table}.geojson"
  jobs = 1
}
"#,
    )
    .await;
    let client = project.db.client().await.expect("client");
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             CREATE TYPE kind AS ENUM ('a', 'b');
             CREATE TYPE mood AS ENUM ('calm', 'busy');
             CREATE TABLE points (id int PRIMARY KEY, g geometry(Point, 4326));
             CREATE TABLE kinds (id int PRIMARY KEY, k kind, g geometry(Point, 4326));
             CREATE TABLE moods (id int PRIMARY KEY, m mood, g geometry(Point, 4326));
             INSERT INTO points VALUES (1, ST_SetSRID(ST_MakePoint(7, 46), 4326));
             INSERT INTO kinds VALUES (1, 'b', ST_SetSRID(ST_MakePoint(7, 46), 4326));
             INSERT INTO moods VALUES (1, 'busy', ST_SetSRID(ST_MakePoint(7, 46), 4326));",
        )
        .await
        .expect("tables");
    let (_bouncer, pooled) = behind_bouncer(&project, "types", 2);
    let run = project
        .run(&["--plain"])
        .env("FLOW_DATABASE_URL", &pooled)
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let moods = std::fs::read_to_string(project.dir.join("exports/moods.geojson")).expect("moods");
    assert!(moods.contains("\"busy\""), "{moods}");
}

/// An export's readers share one snapshot while its holder waits: through
/// a pooler they need a server each, on the direct URL they need none.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_reads_its_snapshot_on_the_direct_url() {
    let project = Project::new(
        "pooler",
        "pooledexport",
        "out.flow",
        r#"flow out

database flow = { url = env("FLOW_DATABASE_URL"), pool_mode = "transaction", direct = env("FLOW_DIRECT_URL") }

step pg:flow:export {
  tables = [a, b, c]
  to = "exports/{table}.csv"
  jobs = 3
}
"#,
    )
    .await;
    project
        .db
        .client()
        .await
        .expect("client")
        .batch_execute(
            "CREATE TABLE a AS SELECT 1 AS id; CREATE TABLE b AS SELECT 2 AS id; CREATE TABLE c AS SELECT 3 AS id;",
        )
        .await
        .expect("tables");
    // One server: the holder and three readers at once would wait for it.
    let (_bouncer, pooled) = behind_bouncer(&project, "export", 1);
    let run = project
        .run(&["--plain"])
        .env("FLOW_DATABASE_URL", &pooled)
        .env("FLOW_DIRECT_URL", project.db.url())
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for (table, id) in [("a", 1), ("b", 2), ("c", 3)] {
        let text = std::fs::read_to_string(project.dir.join(format!("exports/{table}.csv")))
            .expect("exported");
        assert_eq!(text, format!("id\n{id}\n"));
    }
}
