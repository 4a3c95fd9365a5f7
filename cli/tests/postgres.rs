//! The Postgres foundation against a real PostgreSQL with PostGIS: configure,
//! pull, push, connections and secrets.

mod support;

use std::path::PathBuf;

use flow_db::testing::TestDatabase;
use support::{Flow, Folder, Output, flat};

/// A folder with a flow file in it, removed at the end of the test.
struct Project {
    folder: Folder,
    dir: PathBuf,
}

impl Project {
    fn new(name: &str, flow: &str) -> Self {
        let folder = Folder::new("pg", name);
        folder.write("test.flow", flow);
        let dir = folder.dir.clone();
        Self { folder, dir }
    }

    fn file(&self) -> String {
        self.dir.join("test.flow").to_string_lossy().into_owned()
    }

    fn read(&self, relative: &str) -> String {
        self.folder.read(relative)
    }

    /// `flow ARGS FILE` with the two databases' URLs in the environment.
    fn flow(&self, args: &[&str], flow_db: &TestDatabase, api_db: &TestDatabase) -> Flow {
        let mut all: Vec<String> = vec![args[0].to_owned(), self.file()];
        all.extend(args[1..].iter().map(|a| (*a).to_owned()));
        Flow::new(all)
            .dir(&self.dir)
            .env("FLOW_DATABASE_URL", flow_db.url())
            .env("API_DATABASE_URL", api_db.url())
    }
}

const FLOW: &str = r#"flow types

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")

groups configure

step drizzle:api:pull {
  group = manual
  out = "types.sql"
}

step drizzle:flow:pull {
  group = manual
  out = "flow-types.sql"
}

step pg:flow:configure {
  group = configure
  extensions = [postgis]
}

step pg:flow:push {
  group = configure
  types = "types.sql"
  renames = ["zone.res=residential"]
}
"#;

const API_SCHEMA: &str = "
    CREATE EXTENSION postgis;
    CREATE SCHEMA catalog;
    CREATE TYPE public.zone AS ENUM ('res', 'commercial', 'industrial');
    CREATE TYPE catalog.status AS ENUM ('draft', 'it''s live');
    CREATE DOMAIN public.area AS numeric(12, 2) NOT NULL DEFAULT 0 CHECK (VALUE >= 0);
    CREATE TYPE catalog.address AS (street text, zip varchar(10), status catalog.status);
    CREATE TABLE public.parcels (id int PRIMARY KEY, zone public.zone, geom geometry(Polygon, 4326));
";

fn ok(output: &Output) -> &Output {
    assert_eq!(
        output.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        output.stdout, output.stderr
    );
    output
}

async fn databases(test: &str) -> (TestDatabase, TestDatabase) {
    let flow = TestDatabase::create(&format!("{test}flow"))
        .await
        .expect("flow database");
    let api = TestDatabase::create(&format!("{test}api"))
        .await
        .expect("api database");
    api.client()
        .await
        .expect("connect")
        .batch_execute(API_SCHEMA)
        .await
        .expect("api schema");
    (flow, api)
}

/// The API's types pulled into a types file and pushed to the flow database.
async fn pulled_and_configured(test: &str) -> (TestDatabase, TestDatabase, Project) {
    let (flow_db, api_db) = databases(test).await;
    let project = Project::new(test, FLOW);
    ok(&project
        .flow(&["run", "--step", "drizzle:api:pull"], &flow_db, &api_db)
        .run());
    ok(&project
        .flow(&["run", "--group", "configure"], &flow_db, &api_db)
        .run());
    (flow_db, api_db, project)
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_is_idempotent() {
    let (flow_db, api_db) = databases("configure").await;
    let project = Project::new("configure", FLOW);
    for expected in ["created postgis", "postgis already there"] {
        let output = project
            .flow(
                &["run", "--step", "pg:flow:configure", "--force"],
                &flow_db,
                &api_db,
            )
            .run();
        assert!(ok(&output).stderr.contains(expected), "{}", output.stderr);
    }
    let client = flow_db.client().await.expect("connect");
    let version: String = client
        .query_one("SELECT postgis_version()", &[])
        .await
        .expect("postgis")
        .get(0);
    assert!(!version.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_push_pull_is_byte_identical() {
    let (flow_db, api_db) = databases("pullpush").await;
    let project = Project::new("pullpush", FLOW);
    ok(&project
        .flow(&["run", "--step", "drizzle:api:pull"], &flow_db, &api_db)
        .run());
    let first = project.read("types.sql");
    insta::assert_snapshot!("pulled_types", first);
    assert!(
        !first.contains("geometry_dump"),
        "PostGIS's own types are left out"
    );

    ok(&project
        .flow(&["run", "--group", "configure"], &flow_db, &api_db)
        .run());
    ok(&project
        .flow(&["run", "--step", "drizzle:api:pull"], &flow_db, &api_db)
        .run());
    assert_eq!(
        project.read("types.sql"),
        first,
        "a second pull writes the same bytes"
    );

    // What push made of the file reads back the same from the flow database.
    ok(&project
        .flow(&["run", "--step", "drizzle:flow:pull"], &flow_db, &api_db)
        .run());
    let body = |text: &str| text.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&project.read("flow-types.sql")), body(&first));

    // Pushing again changes nothing.
    let output = project
        .flow(
            &["run", "--step", "pg:flow:push", "--force"],
            &flow_db,
            &api_db,
        )
        .run();
    assert!(
        ok(&output).stderr.contains("types up to date"),
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_labels_arrive_in_place_and_renames_apply() {
    let (flow_db, api_db, project) = pulled_and_configured("labels").await;

    let api = api_db.client().await.expect("connect");
    api.batch_execute("ALTER TYPE public.zone ADD VALUE 'mixed' AFTER 'res'; ALTER TYPE public.zone RENAME VALUE 'res' TO 'residential'")
        .await
        .expect("change the enum");
    ok(&project
        .flow(&["run", "--step", "drizzle:api:pull"], &flow_db, &api_db)
        .run());
    let output = project
        .flow(&["run", "--step", "pg:flow:push"], &flow_db, &api_db)
        .run();
    ok(&output);
    assert!(output.stderr.contains("renamed"), "{}", output.stderr);

    let flow = flow_db.client().await.expect("connect");
    let labels: Vec<String> = flow
        .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = 'public.zone'::regtype ORDER BY enumsortorder", &[])
        .await
        .expect("labels")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, ["residential", "mixed", "commercial", "industrial"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reordered_labels_make_the_type_again_keeping_rows_and_defaults() {
    let (flow_db, api_db, project) = pulled_and_configured("reorder").await;
    let flow = flow_db.client().await.expect("connect");
    flow.batch_execute(
        "CREATE TABLE public.plots (id int, zone public.zone NOT NULL DEFAULT 'commercial');
         INSERT INTO public.plots (id) VALUES (1);
         INSERT INTO public.plots VALUES (2, 'industrial');",
    )
    .await
    .expect("rows and a default using the type");

    let types = project
        .read("types.sql")
        .replace("'commercial', 'industrial'", "'industrial', 'commercial'");
    std::fs::write(project.dir.join("types.sql"), types).expect("write");
    let output = project
        .flow(&["run", "--step", "pg:flow:push"], &flow_db, &api_db)
        .run();
    ok(&output);
    assert!(output.stderr.contains("recreated"), "{}", output.stderr);

    let labels: Vec<String> = flow
        .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = 'public.zone'::regtype ORDER BY enumsortorder", &[])
        .await
        .expect("labels")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, ["res", "industrial", "commercial"]);
    flow.batch_execute("INSERT INTO public.plots (id) VALUES (3)")
        .await
        .expect("the default still works");
    let rows: Vec<(i32, String)> = flow
        .query("SELECT id, zone::text FROM public.plots ORDER BY id", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = [(1, "commercial"), (2, "industrial"), (3, "commercial")];
    assert_eq!(rows, want.map(|(id, zone)| (id, zone.to_owned())));
    let default: String = flow
        .query_one(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
             WHERE d.adrelid = 'public.plots'::regclass",
            &[],
        )
        .await
        .expect("default")
        .get(0);
    assert!(!default.contains("__flow_old"), "{default}");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_label_in_use_is_refused_with_the_row_count() {
    let (flow_db, api_db, project) = pulled_and_configured("removal").await;
    let flow = flow_db.client().await.expect("connect");
    flow.batch_execute(
        "CREATE TABLE public.plots (id int, zone public.zone);
         INSERT INTO public.plots SELECT g, 'industrial' FROM generate_series(1, 3) g;",
    )
    .await
    .expect("rows using the label");

    let types = project.read("types.sql").replace(", 'industrial'", "");
    std::fs::write(project.dir.join("types.sql"), types).expect("write");
    let output = project
        .flow(&["run", "--step", "pg:flow:push"], &flow_db, &api_db)
        .run();
    assert_eq!(output.code, 1, "{}", output.stderr);
    assert!(
        flat(&output.stderr).contains("3 rows of `public.plots` use `industrial` in column `zone`"),
        "{}",
        output.stderr
    );

    // Once nothing uses it, the label goes.
    flow.batch_execute("DELETE FROM public.plots")
        .await
        .expect("delete");
    ok(&project
        .flow(&["run", "--step", "pg:flow:push"], &flow_db, &api_db)
        .run());
    let count: i64 = flow
        .query_one(
            "SELECT count(*) FROM pg_enum WHERE enumtypid = 'public.zone'::regtype",
            &[],
        )
        .await
        .expect("labels")
        .get(0);
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clear_error_without_the_secret() {
    let (flow_db, api_db) = databases("password").await;
    let project = Project::new("password", FLOW);
    // postgres://flow:PASSWORD@host/... becomes postgres://flow:wrongsecret@host/...
    let url = flow_db.url();
    let at = url.find('@').expect("url has a password");
    let user_end = url[..at].rfind(':').expect("user:password");
    let wrong = format!("{}:wrongsecret{}", &url[..user_end], &url[at..]);
    let output = Flow::new(["run", &project.file(), "--step", "pg:flow:configure"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", wrong)
        .env("API_DATABASE_URL", api_db.url())
        .run();
    assert_eq!(output.code, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("flow::db::connect"),
        "{}",
        output.stderr
    );
    assert!(
        flat(&output.stderr).contains("password authentication failed"),
        "{}",
        output.stderr
    );
    assert!(
        flat(&output.stderr).contains("check the user and password of database `flow`"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("wrongsecret") && !output.stdout.contains("wrongsecret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_appear_in_no_output() {
    let (flow_db, api_db) = databases("secrets").await;
    let project = Project::new("secrets", FLOW);
    let password = api_db
        .url()
        .split(':')
        .nth(2)
        .and_then(|p| p.split('@').next())
        .expect("password")
        .to_owned();
    assert!(password.len() > 10);
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["run", "--step", "drizzle:api:pull"],
        &["run", "--group", "configure", "--keep-going"],
    ] {
        let output = project
            .flow(args, &flow_db, &api_db)
            .env("RUST_LOG", "trace")
            .run();
        assert!(
            !output.stdout.contains(&password),
            "{args:?} printed the password:\n{}",
            output.stdout
        );
        assert!(
            !output.stderr.contains(&password),
            "{args:?} printed the password:\n{}",
            output.stderr
        );
    }
    let plan = project.flow(&["plan"], &flow_db, &api_db).run();
    assert!(
        plan.stdout
            .contains("database api: postgres://flow:***@127.0.0.1"),
        "{}",
        plan.stdout
    );
}

#[test]
fn the_embedded_default_starts_and_stops_its_own_cluster() {
    let project = Project::new(
        "embedded",
        "flow embedded\n\ngroups configure\n\nstep pg:flow:configure {\n  group = configure\n}\n",
    );
    let file = project.file();
    let output = Flow::new(["run", &file, "--group", "configure"])
        .dir(&project.dir)
        .env_remove("FLOW_DATABASE_URL")
        .run();
    ok(&output);
    assert!(
        output.stderr.contains("created postgis"),
        "{}",
        output.stderr
    );
    let status = Flow::new(["db", "status", &file]).run();
    assert!(
        status.stdout.starts_with("stopped"),
        "the run stops the cluster it started: {}",
        status.stdout
    );
    // The plan reads the history of a stopped cluster, starting it for the
    // time it takes.
    let plan = Flow::new(["plan", &file])
        .dir(&project.dir)
        .env_remove("FLOW_DATABASE_URL")
        .expect(0);
    assert!(
        plan.stdout.contains("skipped: unchanged since run 1"),
        "{}",
        plan.stdout
    );
    let status = Flow::new(["db", "status", &file]).run();
    assert!(status.stdout.starts_with("stopped"), "{}", status.stdout);

    Flow::new(["db", "up", &file]).expect(0);
    let status = Flow::new(["db", "status", &file]).run();
    assert!(status.stdout.starts_with("running"), "{}", status.stdout);
    let output = Flow::new(["run", &file, "--force"]).dir(&project.dir).run();
    assert!(
        ok(&output).stderr.contains("postgis already there"),
        "{}",
        output.stderr
    );
    let status = Flow::new(["db", "status", &file]).run();
    assert!(
        status.stdout.starts_with("running"),
        "`db up` keeps it up after a run: {}",
        status.stdout
    );
    let url = Flow::new(["db", "url", &file]).expect(0);
    assert!(
        url.stdout.starts_with("postgres://flow@127.0.0.1:"),
        "{}",
        url.stdout
    );
    Flow::new(["db", "down", &file]).expect(0);
    let status = Flow::new(["db", "status", &file]).run();
    assert!(status.stdout.starts_with("stopped"), "{}", status.stdout);
}
