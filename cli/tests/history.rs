//! History tables and change notifications of `pg:target:populate`, against
//! PostGIS: versions opened and closed over three runs, nothing written or
//! sent when nothing changed, notifications only after commit (none for a
//! failed check), a bounded payload for a large change set, every mode, and
//! `flow changes` reading the versions back.

mod support;

use std::time::Duration;

use flow_db::testing::TestDatabase;
use support::{Flow, Folder};

struct Project {
    folder: Folder,
    flow: TestDatabase,
    api: TestDatabase,
}

impl Project {
    async fn new(name: &str, mode: &str, check: &str) -> Self {
        Self::with(name, mode, "{ products = [price, availability] }", check).await
    }

    async fn with(name: &str, mode: &str, history: &str, check: &str) -> Self {
        let folder = Folder::new("history", name);
        folder.write(
            "products.flow",
            &format!(
                r#"flow products

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")

groups seed -> populate

step sql:flow:run model {{
  group = seed
  sql = "model.sql"
  writes = ["model.products"]
}}

step pg:target:populate {{
  group = populate
  to = api.public
  tables = [products]
  mode = {mode}
  history = {history}
  notify = product_changes
}}
{check}"#
            ),
        );
        Self {
            folder,
            flow: TestDatabase::create(&format!("{name}f"))
                .await
                .expect("flow db"),
            api: TestDatabase::create(&format!("{name}a"))
                .await
                .expect("api db"),
        }
    }

    /// The model's products: (id, name, price, availability).
    fn model(&self, rows: &str) {
        self.model_with("", rows);
    }

    /// The model's products with `more` columns.
    fn model_with(&self, more: &str, rows: &str) {
        self.folder.write(
            "model.sql",
            &format!(
                "CREATE SCHEMA IF NOT EXISTS model;
                 DROP TABLE IF EXISTS model.products;
                 CREATE TABLE model.products (id integer PRIMARY KEY, name text, price numeric(10,2), availability text{more});
                 INSERT INTO model.products {rows};"
            ),
        );
    }

    fn run(&self) -> support::Output {
        Flow::new(["run", "products.flow", "--plain", "--force"])
            .dir(&self.folder.dir)
            .env("FLOW_DATABASE_URL", self.flow.url())
            .env("API_DATABASE_URL", self.api.url())
            .run()
    }

    fn changes(&self, args: &[&str]) -> support::Output {
        let mut all = vec!["changes", "products.flow", "--table", "products"];
        all.extend(args);
        Flow::new(all)
            .dir(&self.folder.dir)
            .env("FLOW_DATABASE_URL", self.flow.url())
            .env("API_DATABASE_URL", self.api.url())
            .expect(0)
    }

    /// Every version: id, price, availability, open or closed.
    async fn versions(&self) -> Vec<(i32, String, String, bool)> {
        self.api
            .client()
            .await
            .expect("api")
            .query(
                "SELECT id, price::text, availability, valid_to IS NULL
                 FROM history.products_history ORDER BY id, valid_from",
                &[],
            )
            .await
            .expect("history")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }
}

/// Notifications on `product_changes`, from a connection of the test's own.
async fn listener(db: &TestDatabase) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let database = flow_db::Database::connect("api", &flow_db::Location::Url(db.url()), None, 1)
        .await
        .expect("connect");
    let receiver = database
        .listen(&["product_changes".to_owned()])
        .await
        .expect("listen");
    // The pool may go; the listening connection is its own.
    drop(database);
    receiver
}

/// What arrived within `wait`.
async fn received(
    notifications: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    wait: Duration,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    while let Ok(Some((_, payload))) = tokio::time::timeout(wait, notifications.recv()).await {
        all.push(serde_json::from_str(&payload).expect("a JSON payload"));
    }
    all
}

fn v(id: i32, price: &str, availability: &str, open: bool) -> (i32, String, String, bool) {
    (id, price.to_owned(), availability.to_owned(), open)
}

async fn three_runs(mode: &str) {
    let check = r#"
check no_jump {
  table = api.public.products
  sql = "SELECT n.id FROM history.products_history n JOIN history.products_history o ON o.id = n.id AND o.valid_to = n.valid_from WHERE n.valid_from = now() AND n.price > o.price * 1.5"
}
"#;
    let project = Project::new(&format!("hist{mode}"), mode, check).await;
    let mut notifications = listener(&project.api).await;

    project.model("VALUES (1, 'tea', 10, 'in'), (2, 'coffee', 20, 'in'), (3, 'cocoa', 30, 'out')");
    let first = project.run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        project.versions().await,
        [
            v(1, "10.00", "in", true),
            v(2, "20.00", "in", true),
            v(3, "30.00", "out", true)
        ]
    );
    let sent = received(&mut notifications, Duration::from_secs(2)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["table"], "products");
    assert_eq!(sent[0]["inserted"], 3);
    assert_eq!(sent[0]["keys"]["inserted"], serde_json::json!([1, 2, 3]));

    // Coffee's price changes, tea's name (not tracked) too, cocoa goes,
    // milk comes.
    project
        .model("VALUES (1, 'green tea', 10, 'in'), (2, 'coffee', 25, 'in'), (4, 'milk', 5, 'in')");
    let second = project.run();
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert_eq!(
        project.versions().await,
        [
            v(1, "10.00", "in", true),
            v(2, "20.00", "in", false),
            v(2, "25.00", "in", true),
            v(3, "30.00", "out", false),
            v(4, "5.00", "in", true),
        ]
    );
    let sent = received(&mut notifications, Duration::from_secs(2)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (
            sent[0]["inserted"].clone(),
            sent[0]["updated"].clone(),
            sent[0]["deleted"].clone()
        ),
        (1.into(), 1.into(), 1.into())
    );
    assert_eq!(sent[0]["keys"]["deleted"], serde_json::json!([3]));

    // The same again: nothing written, nothing sent.
    let third = project.run();
    assert_eq!(third.code, 0, "{}{}", third.stdout, third.stderr);
    assert_eq!(project.versions().await.len(), 5);
    assert!(
        received(&mut notifications, Duration::from_secs(1))
            .await
            .is_empty()
    );

    // Coffee jumps by more than half: the check fails, nothing is kept or
    // sent.
    project
        .model("VALUES (1, 'green tea', 10, 'in'), (2, 'coffee', 99, 'in'), (4, 'milk', 5, 'in')");
    let refused = project.run();
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(refused.stderr.contains("no_jump"), "{}", refused.stderr);
    assert_eq!(project.versions().await.len(), 5);
    assert!(
        received(&mut notifications, Duration::from_secs(1))
            .await
            .is_empty()
    );

    // Read back: coffee's versions; and what was current since a time.
    let coffee = project.changes(&["--key", "2", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&coffee.stdout).expect("json");
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(2),
        "{}",
        coffee.stdout
    );
    assert_eq!(versions[0]["price"], 20.0);
    assert!(versions[0]["valid_to"].is_string());
    assert!(versions[1]["valid_to"].is_null());
    let text = project.changes(&[]);
    assert!(text.stdout.contains("(current)"), "{}", text.stdout);
    let later = project.changes(&["--since", "2999-01-01", "--json"]);
    let open: serde_json::Value = serde_json::from_str(&later.stdout).expect("json");
    assert_eq!(
        open.as_array().map(Vec::len),
        Some(3),
        "only the current versions"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_keeps_versions_and_notifies_after_commit() {
    three_runs("replace").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swap_keeps_versions_across_releases() {
    three_runs("swap").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_keeps_versions() {
    let project = Project::new("histupsert", "upsert", "").await;
    project.model("VALUES (1, 'tea', 10, 'in'), (2, 'coffee', 20, 'in')");
    assert_eq!(project.run().code, 0);
    // `flow listen` prints the next change as a JSON line.
    let mut listen = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["listen", "products.flow"])
        .current_dir(&project.folder.dir)
        .env("FLOW_DATABASE_URL", project.flow.url())
        .env("API_DATABASE_URL", project.api.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flow listen");
    let stderr = listen.stderr.take().expect("stderr");
    let mut stderr = std::io::BufReader::new(stderr);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut ready).expect("listening");
    assert!(ready.contains("listening on product_changes"), "{ready}");
    project.model("VALUES (2, 'coffee', 21, 'in')");
    assert_eq!(project.run().code, 0);
    let stdout = listen.stdout.take().expect("stdout");
    let line = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        line
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = listen.kill();
    let _ = listen.wait();
    let line: serde_json::Value = serde_json::from_str(&line.join().expect("line")).expect("json");
    assert_eq!(line["channel"], "product_changes");
    assert_eq!(line["change"]["updated"], 1, "{line}");
    assert_eq!(line["change"]["keys"]["updated"], serde_json::json!([2]));
    // Upsert keeps tea: it is still current.
    assert_eq!(
        project.versions().await,
        [
            v(1, "10.00", "in", true),
            v(2, "20.00", "in", false),
            v(2, "21.00", "in", true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_change_set_sends_a_bounded_payload() {
    let project = Project::new("histlarge", "replace", "").await;
    let mut notifications = listener(&project.api).await;
    project.model("SELECT g, 'p' || g, g, 'in' FROM generate_series(1, 100000) g");
    let run = project.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let sent = received(&mut notifications, Duration::from_secs(3)).await;
    assert_eq!(sent.len(), 1);
    let text = sent[0].to_string();
    assert!(text.len() < 8000, "{}", text.len());
    assert_eq!(sent[0]["inserted"], 100_000);
    assert_eq!(sent[0]["keys_complete"], false);
    assert!(
        sent[0]["read"]
            .as_str()
            .unwrap_or_default()
            .contains("products_history"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_adds_a_column_starts_tracking_it() {
    let project = Project::with("histcolumn", "swap", "[products]", "").await;
    project.model("VALUES (1, 'tea', 10, 'in'), (2, 'coffee', 20, 'in')");
    assert_eq!(project.run().code, 0);
    // The release adds `origin`: tracked from now on, no new version for it.
    project.model_with(
        ", origin text",
        "VALUES (1, 'tea', 10, 'in', 'India'), (2, 'coffee', 20, 'in', 'Peru')",
    );
    let run = project.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let client = project.api.client().await.expect("api");
    let rows: Vec<(i32, Option<String>, bool)> = client
        .query(
            "SELECT id, origin, valid_to IS NULL FROM history.products_history ORDER BY id, valid_from",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some("India".into()), true),
            (2, Some("Peru".into()), true)
        ]
    );
    // Then a change of origin is a change.
    project.model_with(
        ", origin text",
        "VALUES (1, 'tea', 10, 'in', 'Kenya'), (2, 'coffee', 20, 'in', 'Peru')",
    );
    assert_eq!(project.run().code, 0);
    let versions: i64 = client
        .query_one(
            "SELECT count(*) FROM history.products_history WHERE id = 1",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(versions, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_its_notification_is_queued_sends_nothing() {
    // The check sleeps: it runs after the history is written and the
    // notification queued, before the commit.
    let check = r#"
check slow {
  table = api.public.products
  sql = "SELECT 1 FROM pg_sleep(3) p WHERE random() < 0"
}
"#;
    let project = Project::new("histkilled", "replace", check).await;
    let mut notifications = listener(&project.api).await;
    project.model("VALUES (1, 'tea', 10, 'in')");
    let started = std::time::Instant::now();
    let first = project.run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the check slept: {}",
        first.stdout
    );
    let sent = received(&mut notifications, Duration::from_secs(2)).await;
    assert_eq!(sent.len(), 1, "{}", first.stdout);

    project.model("VALUES (1, 'tea', 12, 'in')");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "products.flow", "--plain", "--force"])
        .current_dir(&project.folder.dir)
        .env("FLOW_DATABASE_URL", project.flow.url())
        .env("API_DATABASE_URL", project.api.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow starts");
    let api = project.api.client().await.expect("api");
    support::wait_for_statement(&api, "%pg_sleep(3)%", "the check never ran").await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        received(&mut notifications, Duration::from_secs(4))
            .await
            .is_empty()
    );
    assert_eq!(project.versions().await, [v(1, "10.00", "in", true)]);
}
