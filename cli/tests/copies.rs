//! `pg:<db>:copy`: a masked copy of a production-shaped database into
//! another, against real PostgreSQL with PostGIS.

mod support;

use flow_db::testing::TestDatabase;
use support::pooler::{Bouncer, Server};
use support::{Flow, Folder, flat};

const SOURCE: &str = "
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TYPE tier AS ENUM ('free', 'pro');
CREATE TABLE users (
  id serial PRIMARY KEY,
  email text UNIQUE NOT NULL,
  name text,
  phone varchar(20),
  tier tier NOT NULL DEFAULT 'free',
  note text,
  born date,
  home geometry(Point, 4326)
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  user_email text NOT NULL REFERENCES users (email),
  amount numeric(10, 2) NOT NULL,
  comment text
);
CREATE INDEX orders_amount ON orders (amount);
CREATE TABLE events (id int PRIMARY KEY, day date NOT NULL, kind text, tags tier[]);
CREATE TABLE audit (id int, payload text);
CREATE VIEW big_orders AS
  SELECT o.id, u.email FROM orders o JOIN users u ON u.email = o.user_email WHERE o.amount > 50;
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.kind := coalesce(NEW.kind, 'stamped'); RETURN NEW; END $$;
CREATE TRIGGER events_stamp BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION stamp();
INSERT INTO users (email, name, phone, tier, note, born, home)
  SELECT 'person' || i || '@real-mail.example', 'Realname Person' || i, '+41 79 555 ' || lpad(i::text, 4, '0'),
         CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END::tier, 'private note ' || i,
         date '1980-01-01' + i, ST_SetSRID(ST_MakePoint(7 + i / 1000.0, 46), 4326)
  FROM generate_series(1, 100) i;
INSERT INTO orders (user_email, amount, comment)
  SELECT 'person' || (1 + i % 100) || '@real-mail.example', (i % 97) + 0.5, 'call me at home ' || i
  FROM generate_series(1, 1000) i;
INSERT INTO events SELECT i, date '2024-01-01' + i, 'kind' || i, ARRAY['pro']::tier[] FROM generate_series(1, 100) i;
INSERT INTO audit SELECT i, 'secret payload ' || i FROM generate_series(1, 50) i;
-- Large enough (over 4096 pages) to be read by several connections.
CREATE TABLE visits AS
  SELECT i AS id, 'visitor' || i || '@real-mail.example' AS email, repeat('x', 40) AS path
  FROM generate_series(1, 400000) i;
ALTER TABLE visits ADD PRIMARY KEY (id);
ANALYZE visits;
";

const FLOW: &str = r#"flow copies

database flow = env("FLOW_DATABASE_URL")
database production = env("PRODUCTION_URL")
database app = env("APP_URL")

env staging {
  database app = env("STAGING_URL")
}

step pg:app:copy {
  from = production
  mask = {
    users = {
      id = keep
      tier = keep
      home = keep
      email = { fake = email }
      name = { fake = name }
      phone = { fake = phone }
    }
    orders = { user_email = { fake = email }, comment = { fixed = "redacted" } }
    events = { kind = hash }
    visits = { email = { fake = email } }
  }
  sensitive = [users]
  skip = [audit]
  where = { events = "day >= date '2024-03-01'" }
  sample = { users = 20 }
}
"#;

const SALT: &str = "a-secret-salt-for-tests-only-0123";

struct Setup {
    folder: Folder,
    flow: TestDatabase,
    production: TestDatabase,
    app: TestDatabase,
}

impl Setup {
    async fn new(tag: &str) -> Self {
        let production = TestDatabase::create(&format!("copyprod{tag}"))
            .await
            .expect("db");
        production
            .client()
            .await
            .expect("client")
            .batch_execute(SOURCE)
            .await
            .expect("source");
        let app = TestDatabase::create(&format!("copyapp{tag}"))
            .await
            .expect("db");
        app.client()
            .await
            .expect("client")
            .batch_execute(
                "CREATE EXTENSION IF NOT EXISTS postgis;
                 CREATE TABLE public.stale (id int); INSERT INTO public.stale VALUES (1);",
            )
            .await
            .expect("target");
        let folder = Folder::new("copies", tag);
        folder.write("copies.flow", FLOW);
        Setup {
            folder,
            flow: TestDatabase::create(&format!("copyflow{tag}"))
                .await
                .expect("db"),
            production,
            app,
        }
    }

    fn run(&self, args: &[&str]) -> Flow {
        let mut all = vec!["run", "copies.flow", "--plain"];
        all.extend(args);
        Flow::new(all)
            .dir(&self.folder.dir)
            .env("FLOW_DATABASE_URL", self.flow.url())
            .env("PRODUCTION_URL", self.production.url())
            .env("APP_URL", self.app.url())
            .env("STAGING_URL", self.production.url())
            .env("FLOW_MASK_SALT", SALT)
    }

    async fn one<T: for<'a> flow_db::tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.app
            .client()
            .await
            .expect("client")
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// The target's rows, as text, to compare before and after.
    async fn fingerprint(&self) -> String {
        self.one(
            "SELECT coalesce((SELECT string_agg(concat_ws(' ', id, email, name, phone, note), ',' ORDER BY id)
                                FROM users), '') || '|' ||
                    coalesce((SELECT string_agg(user_email, ',' ORDER BY id) FROM orders), '') || '|' ||
                    coalesce((SELECT string_agg(kind, ',' ORDER BY id) FROM events), '') || '|' ||
                    coalesce((SELECT count(*) || md5(string_agg(email, ',' ORDER BY id)) FROM visits), '')",
        )
        .await
    }

    fn dump_target(&self) -> String {
        let output = std::process::Command::new("pg_dump")
            .args(["--data-only", "--inserts", &self.app.url()])
            .output()
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_masked_copy_keeps_no_personal_value_and_the_schema_holds() {
    let setup = Setup::new("m").await;
    let output = setup.run(&[]).expect(0);
    let text = flat(&output.stderr);
    assert!(text.contains("audit: skipped (50 rows)"), "{text}");
    assert!(text.contains("events: 41 of 100 rows"), "{text}");
    assert!(
        text.contains("rows masked (email, name, phone, note, born)"),
        "{text}"
    );
    assert!(text.contains("rows masked (user_email, comment)"), "{text}");
    assert!(
        text.contains("visits: 400000 rows masked (email), read in 4 parts"),
        "{text}"
    );

    // No original value of a masked column is anywhere in the target.
    let dump = setup.dump_target();
    for secret in [
        "real-mail.example",
        "Realname",
        "+41 79",
        "private note",
        "call me",
        "secret payload",
    ] {
        assert!(!dump.contains(secret), "`{secret}` reached the target");
    }
    // Nor in what the run left on disk (logs, records).
    let mut stack = vec![setup.folder.dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(!text.contains("real-mail.example"), "{path:?}");
            }
        }
    }

    // The sample keeps about a fifth of the users, and only their orders:
    // the hashed join key still joins.
    let users: i64 = setup.one("SELECT count(*) FROM users").await;
    assert!((5..=40).contains(&users), "{users} users");
    let orders: i64 = setup.one("SELECT count(*) FROM orders").await;
    assert_eq!(orders, users * 10, "each kept user's ten orders");
    let visits: i64 = setup.one("SELECT count(DISTINCT id) FROM visits").await;
    assert_eq!(visits, 400_000, "every row of a table read in parts, once");
    let orphans: i64 = setup
        .one("SELECT count(*) FROM orders o LEFT JOIN users u ON u.email = o.user_email WHERE u.id IS NULL")
        .await;
    assert_eq!(orphans, 0);
    let joined: i64 = setup.one("SELECT count(*) FROM big_orders").await;
    assert!(joined > 0, "the view joins on the masked key");
    let masked: String = setup.one("SELECT min(email) FROM users").await;
    assert!(
        masked.starts_with("user") && masked.ends_with("@example.com"),
        "{masked}"
    );
    // Columns of a sensitive table that `mask` does not name: text hashed,
    // a nullable date nulled.
    let defaults: i64 = setup
        .one("SELECT count(*) FROM users WHERE note ~ '^[0-9a-f]{32}$' AND born IS NULL")
        .await;
    assert_eq!(
        defaults, users,
        "a sensitive table's other columns are masked"
    );
    let redacted: i64 = setup
        .one("SELECT count(*) FROM orders WHERE comment = 'redacted'")
        .await;
    assert_eq!(redacted, orders);

    // The schema came along: keys, indexes, triggers, sequences at their values.
    let constraints: i64 = setup
        .one("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'f')")
        .await;
    assert_eq!(constraints, 2);
    let index: bool = setup
        .one("SELECT to_regclass('public.orders_amount') IS NOT NULL")
        .await;
    assert!(index);
    let sequence: i64 = setup.one("SELECT last_value FROM orders_id_seq").await;
    assert_eq!(sequence, 1000);
    let stale: bool = setup
        .one("SELECT to_regclass('public.stale') IS NULL")
        .await;
    assert!(stale, "the target's schema is replaced");
    let postgis: String = setup.one("SELECT postgis_lib_version()").await;
    assert!(!postgis.is_empty(), "the target keeps its extensions");
    let client = setup.app.client().await.expect("client");
    client
        .batch_execute("INSERT INTO events (id, day) VALUES (1000, current_date)")
        .await
        .expect("insert");
    let stamped: String = setup.one("SELECT kind FROM events WHERE id = 1000").await;
    assert_eq!(stamped, "stamped", "the trigger was copied");

    // The same salt gives the same values: a second copy equals the first.
    client
        .batch_execute("DELETE FROM events WHERE id = 1000")
        .await
        .expect("delete");
    let first = setup.fingerprint().await;
    setup.run(&[]).expect(0);
    assert_eq!(setup.fingerprint().await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_copy_leaves_the_target_and_bad_rules_are_named() {
    let setup = Setup::new("f").await;
    setup.run(&[]).expect(0);
    let before = setup.fingerprint().await;

    // A condition that fails on the server, after the target was cleared in
    // the copy's transaction: the target is as it was.
    setup.folder.write(
        "copies.flow",
        &FLOW.replace("day >= date '2024-03-01'", "nope > 1"),
    );
    let failed = setup.run(&[]).expect(1);
    assert!(
        flat(&failed.stderr).contains("flow::copy::read"),
        "{}",
        failed.stderr
    );
    assert_eq!(setup.fingerprint().await, before);

    // A column the source lacks: named, with what it may have meant.
    setup
        .folder
        .write("copies.flow", &FLOW.replace("phone = {", "phnoe = {"));
    let text = flat(&setup.run(&[]).expect(1).stderr);
    assert!(text.contains("flow::copy::rules"), "{text}");
    assert!(text.contains("did you mean `phone`?"), "{text}");
    assert_eq!(setup.fingerprint().await, before);

    // `hash` cannot keep a date's type; NOT NULL cannot be nulled.
    setup.folder.write(
        "copies.flow",
        &FLOW.replace("tier = keep", "tier = null\n      born = hash"),
    );
    let text = flat(&setup.run(&[]).expect(1).stderr);
    assert!(
        text.contains("is NOT NULL, so it cannot be nulled"),
        "{text}"
    );
    assert!(
        text.contains("`hash` keeps a column's type for text, integers and uuids"),
        "{text}"
    );

    // A unique column made one value breaks its key after the rows are in:
    // the copy says so, and the target is as it was.
    setup.folder.write(
        "copies.flow",
        &FLOW.replace(
            "email = { fake = email }\n      name",
            "email = { fixed = \"x@example.com\" }\n      name",
        ),
    );
    let text = flat(&setup.run(&[]).expect(1).stderr);
    assert!(text.contains("flow::copy::constraints"), "{text}");
    assert_eq!(setup.fingerprint().await, before);

    // No salt, no masks.
    setup.folder.write("copies.flow", FLOW);
    let text = flat(&setup.run(&[]).env_remove("FLOW_MASK_SALT").expect(1).stderr);
    assert!(text.contains("flow::copy::salt"), "{text}");

    // The staging environment points `app` at production: refused.
    let text = flat(&setup.run(&["--env", "staging"]).expect(1).stderr);
    assert!(text.contains("flow::copy::same_database"), "{text}");
    let users: i64 = setup
        .production
        .client()
        .await
        .expect("client")
        .query_one(
            "SELECT count(*) FROM users WHERE email LIKE '%real-mail.example'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 100, "production is untouched");
    assert_eq!(setup.fingerprint().await, before);
}

/// Behind PgBouncer in transaction mode: the source's `pg_dump` needs a
/// session, so it takes the source's `direct` URL (or the copy stops before
/// anything is written); the rows go through the pooler and arrive as a
/// copy straight to the servers makes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_goes_through_a_pooler_and_dumps_the_schema_on_the_direct_url() {
    let setup = Setup::new("pooled").await;
    let bouncer = Bouncer::start("copies", &Server::of(&setup.app.url()), 2);
    let pooled = |db: &TestDatabase| bouncer.url(&db.url(), true);
    let refused = setup
        .run(&[])
        .env("PRODUCTION_URL", pooled(&setup.production))
        .expect(1);
    let text = flat(&refused.stderr);
    assert!(text.contains("flow::db::session_needed"), "{text}");
    assert!(text.contains("pg_dump"), "{text}");
    let stale: i64 = setup.one("SELECT count(*) FROM public.stale").await;
    assert_eq!(stale, 1, "nothing written");

    setup.folder.write(
        "copies.flow",
        &FLOW.replace(
            r#"database production = env("PRODUCTION_URL")"#,
            r#"database production = { url = env("PRODUCTION_URL"), pool_mode = "transaction", direct = env("PRODUCTION_DIRECT_URL") }"#,
        ),
    );
    let through = setup
        .run(&[])
        .env("PRODUCTION_URL", pooled(&setup.production))
        .env("PRODUCTION_DIRECT_URL", setup.production.url())
        .env("APP_URL", pooled(&setup.app))
        .env("FLOW_DATABASE_URL", pooled(&setup.flow))
        .run();
    assert_eq!(through.code, 0, "{}\n{}", through.stdout, through.stderr);
    let pooled_rows = setup.fingerprint().await;
    let visits: i64 = setup.one("SELECT count(*) FROM visits").await;
    assert_eq!(visits, 400_000);

    setup.folder.write("copies.flow", FLOW);
    setup.run(&["--force"]).expect(0);
    assert_eq!(setup.fingerprint().await, pooled_rows);
}
