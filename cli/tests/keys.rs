//! `flow keys` against a real PostgreSQL: a key is shown once and kept only
//! as a hash; scopes, last use and revocation hold when a key is checked.

mod support;

use flow_db::{Database, Location};
use flow_engine::{KeyCheck, KeyScope, Records};
use support::{Flow, Project};

const FLOW: &str = "flow keys\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n";

/// `flow keys ACTION keys.flow ARGS...` with the project's database.
fn keys(project: &Project, action: &str, args: &[&str]) -> Flow {
    let mut all = vec!["keys", action, "keys.flow"];
    all.extend(args);
    Flow::new(all)
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
}

async fn records(project: &Project) -> Records {
    let database = Database::connect("flow", &Location::Url(project.db.url()), None, 2)
        .await
        .expect("pool");
    Records::open(&database).await.expect("records")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_shown_once_kept_as_a_hash_checked_by_scope_and_revoked() {
    let project = Project::new("keys", "keys", "keys.flow", FLOW).await;
    let made = keys(&project, "create", &["--name", "ci", "--scope", "run"]).expect(0);
    let key = made.stdout.trim().to_owned();
    assert!(
        key.len() == 69
            && key.starts_with("flow_")
            && key[5..].chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(made.stderr.contains("shown this once"), "{}", made.stderr);

    // A second live key of the same name is refused.
    let again = keys(&project, "create", &["--name", "ci"]).expect(2);
    assert!(
        again.stderr.contains("live key named `ci`"),
        "{}",
        again.stderr
    );

    // Nothing shows the key or its hash, and the database holds no key.
    let listed = keys(&project, "list", &[]).expect(0);
    assert!(listed.stdout.contains("ci") && listed.stdout.contains("run"));
    let json = keys(&project, "list", &["--json"]).expect(0);
    for text in [&listed.stdout, &json.stdout] {
        assert!(!text.contains(&key[5..20]), "{text}");
    }
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value[0]["name"], "ci");
    assert_eq!(value[0]["scope"], "run");
    assert!(value[0].get("hash").is_none());
    let stored: i64 = project
        .db
        .client()
        .await
        .expect("connect")
        .query_one(
            "SELECT count(*) FROM _flow.keys WHERE position($1 in encode(hash, 'escape')) > 0",
            &[&key],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(stored, 0);

    let records = records(&project).await;
    assert_eq!(
        records.check_key(&key, KeyScope::Run).await.expect("check"),
        KeyCheck::Allowed("ci".into(), KeyScope::Run)
    );
    assert_eq!(
        records
            .check_key(&key, KeyScope::Admin)
            .await
            .expect("check"),
        KeyCheck::Forbidden("ci".into(), KeyScope::Run)
    );
    let last = if key.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    for presented in [wrong.as_str(), "", "flow_", "not a key"] {
        assert_eq!(
            records
                .check_key(presented, KeyScope::Read)
                .await
                .expect("check"),
            KeyCheck::Unknown,
            "{presented}"
        );
    }
    let listed = keys(&project, "list", &["--json"]).expect(0);
    let value: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert!(value[0]["last_used_at"].is_string(), "{}", listed.stdout);

    // Revoked, the key stops working at once; its name can be used again.
    keys(&project, "revoke", &["--name", "ci"]).expect(0);
    assert_eq!(
        records
            .check_key(&key, KeyScope::Read)
            .await
            .expect("check"),
        KeyCheck::Unknown
    );
    keys(&project, "revoke", &["--name", "ci"]).expect(2);
    let fresh = keys(&project, "create", &["--name", "ci", "--scope", "admin"]).expect(0);
    assert_ne!(fresh.stdout.trim(), key);
    let listed = keys(&project, "list", &[]).expect(0);
    assert_eq!(listed.stdout.matches("ci ").count(), 2, "{}", listed.stdout);
}
