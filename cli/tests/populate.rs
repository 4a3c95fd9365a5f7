//! `pg:model:create`, `pg:model:transform` and `pg:target:populate` against
//! PostGIS: every mode, every class of schema change, checks, swap and
//! rollback, and a populate killed half-way.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use flow_db::testing::TestDatabase;
use support::{Flow, Folder, Output, flat};

/// The API database's tables before the release arrives: release 0.8.
const API_0_8: &str = "
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TYPE public.zoning_class AS ENUM ('residential', 'commercial', 'industrial');
CREATE TABLE public.parcels (
  id integer PRIMARY KEY,
  zoning public.zoning_class,
  code text,
  old_id integer,
  geom geometry(Point, 4326)
);
INSERT INTO public.parcels VALUES
  (1, 'residential', 'A', 10, 'SRID=4326;POINT(1 1)'),
  (2, 'industrial', 'BBBBBB', 20, 'SRID=4326;POINT(2 2)'),
  (3, 'commercial', 'C', 30, 'SRID=4326;POINT(3 3)');
";

/// Release 0.9: `old_id` dropped, `industrial` gone, `agricultural` new,
/// `area` new and NOT NULL, a new `zoning` table.
const RELEASE_0_9: &str = "
CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'agricultural');
CREATE TABLE parcels (
  id integer PRIMARY KEY,
  zoning zoning_class NOT NULL,
  code text,
  area double precision NOT NULL,
  geom geometry(Point, 4326)
);
CREATE TABLE zoning (
  class zoning_class PRIMARY KEY,
  parcels integer NOT NULL CHECK (parcels >= 0)
);
";

const TRANSFORM_0_9: &str = "
INSERT INTO parcels (id, zoning, code, area, geom) VALUES
  (1, 'residential', 'A', 100, 'SRID=4326;POINT(1 1)'),
  (4, 'agricultural', 'D', 400, 'SRID=4326;POINT(4 4)');
";

const ZONING: &str = "
-- flow: after parcels.sql
INSERT INTO zoning (class, parcels) SELECT zoning, count(*) FROM parcels GROUP BY zoning;
";

struct Project {
    folder: Folder,
    dir: PathBuf,
    flow: TestDatabase,
    api: TestDatabase,
}

impl Project {
    async fn new(name: &str) -> Self {
        let folder = Folder::new("populate", name);
        let project = Self {
            dir: folder.dir.clone(),
            folder,
            flow: TestDatabase::create(&format!("{name}f"))
                .await
                .expect("flow db"),
            api: TestDatabase::create(&format!("{name}a"))
                .await
                .expect("api db"),
        };
        project
            .api()
            .await
            .batch_execute(API_0_8)
            .await
            .expect("api 0.8");
        project.write("schemas/release.sql", RELEASE_0_9);
        project.write("transform/parcels.sql", TRANSFORM_0_9);
        project.write("transform/zoning.sql", ZONING);
        project
    }

    /// A release of one table, `parcels`, and the transform that fills it.
    fn release(&self, schema: &str, transform: &str) {
        self.write("schemas/release.sql", schema);
        self.write("transform/parcels.sql", transform);
        self.write("transform/zoning.sql", "");
    }

    fn write(&self, file: &str, text: &str) {
        self.folder.write(file, text);
    }

    /// The flow, with `populate` added to the populate step's parameters
    /// and `checks` after it.
    fn flow_file(&self, tables: &str, populate: &str, checks: &str) {
        self.write(
            "release.flow",
            &format!(
                r#"flow release

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")

groups configure -> seed -> populate

step pg:flow:configure {{
  group = configure
}}

step pg:model:create {{
  group = seed
  release = "schemas/release.sql"
  tables = [{tables}]
}}

step pg:model:transform {{
  group = populate
  sql = "transform/*.sql"
}}

step pg:target:populate {{
  group = populate
  to = api.public
  tables = [{tables}]
{populate}
}}
{checks}
"#
            ),
        );
    }

    fn flow(&self, args: &[&str]) -> Flow {
        Flow::new(args.iter().copied())
            .dir(&self.dir)
            .env("FLOW_DATABASE_URL", self.flow.url())
            .env("API_DATABASE_URL", self.api.url())
    }

    fn run(&self, code: i32) -> Output {
        self.flow(&["run", "release.flow", "--force"]).expect(code)
    }

    async fn api(&self) -> flow_db::tokio_postgres::Client {
        self.api.client().await.expect("api")
    }

    /// The API's parcels as `id:zoning:code`, in id order.
    async fn parcels(&self) -> Vec<String> {
        self.api()
            .await
            .query(
                "SELECT concat_ws(':', id, zoning, code) FROM public.parcels ORDER BY id",
                &[],
            )
            .await
            .expect("parcels")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn columns(&self, table: &str) -> Vec<String> {
        self.api()
            .await
            .query(
                "SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&table],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The API database holds release 0.8 as it was: no row, column or
    /// label changed.
    async fn assert_as_before(&self) {
        assert_eq!(self.parcels().await, BEFORE);
        assert!(
            self.columns("public.parcels")
                .await
                .iter()
                .any(|c| c.starts_with("old_id"))
        );
        assert_eq!(
            self.labels().await,
            ["residential", "commercial", "industrial"]
        );
    }

    async fn labels(&self) -> Vec<String> {
        self.api()
            .await
            .query_one("SELECT enum_range(NULL::public.zoning_class)::text[]", &[])
            .await
            .expect("labels")
            .get(0)
    }
}

const BEFORE: [&str; 3] = ["1:residential:A", "2:industrial:BBBBBB", "3:commercial:C"];

#[tokio::test(flavor = "multi_thread")]
async fn a_destructive_change_is_refused_until_allowed_by_name() {
    let project = Project::new("destroy").await;
    project.flow_file("parcels, zoning", "", "");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    assert!(text.contains("flow::populate::refused"), "{text}");
    assert!(
        text.contains("destructive drop column parcels.old_id"),
        "{text}"
    );
    assert!(
        text.contains("allow = [\"drop column parcels.old_id\"]"),
        "{text}"
    );
    assert_eq!(project.parcels().await, BEFORE, "nothing written");
    assert!(
        project
            .columns("public.parcels")
            .await
            .iter()
            .any(|c| c.starts_with("old_id"))
    );

    // `flow diff` shows every change with its class, and the SQL; it exits
    // with 1 as populate would refuse.
    let json = project.flow(&["diff", "release.flow", "--json"]).expect(1);
    let reports: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(reports[0]["would_fail"], true);
    let refused: Vec<&serde_json::Value> = reports[0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["refused"] == true)
        .collect();
    assert_eq!(refused.len(), 1, "{}", json.stdout);
    assert_eq!(refused[0]["change"], "drop column parcels.old_id");
    assert_eq!(refused[0]["class"], "destructive");
    let diff = project.flow(&["diff", "release.flow"]).expect(1);
    for line in [
        "safe create table zoning",
        "safe add label zoning_class.agricultural",
        "data-dependent remove label zoning_class.industrial: no row breaks",
        "data-dependent add column parcels.area NOT NULL: no row breaks",
        "data-dependent set not null parcels.zoning: no row breaks",
        "destructive drop column parcels.old_id: refused unless allowed by name",
        "ALTER TABLE \"public\".\"parcels\" DROP COLUMN \"old_id\";",
    ] {
        assert!(
            flat(&diff.stdout).contains(line),
            "missing `{line}` in\n{}",
            diff.stdout
        );
    }
    assert_eq!(project.parcels().await, BEFORE, "diff writes nothing");

    project.flow_file(
        "parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    project.run(0);
    assert_eq!(
        project.parcels().await,
        ["1:residential:A", "4:agricultural:D"]
    );
    assert_eq!(
        project.columns("public.parcels").await,
        [
            "id integer not null",
            "zoning zoning_class not null",
            "code text",
            "geom geometry(Point,4326)",
            "area double precision not null"
        ]
    );
    assert_eq!(
        project.labels().await,
        ["residential", "commercial", "agricultural"]
    );
    let zoning: i64 = project
        .api()
        .await
        .query_one("SELECT sum(parcels) FROM public.zoning", &[])
        .await
        .expect("zoning")
        .get(0);
    assert_eq!(zoning, 2, "zoning ran after parcels");
}

#[tokio::test(flavor = "multi_thread")]
async fn append_counts_the_rows_that_would_break_and_writes_nothing() {
    let project = Project::new("append").await;
    project.flow_file(
        "parcels",
        "  mode = append\n  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    // The rows that stay (1, 2, 3) have no area, and 2 is industrial.
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area) VALUES (5, 'agricultural', 'E', 5);",
    );
    project.write("transform/zoning.sql", "");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    assert!(
        text.contains("remove label zoning_class.industrial: 1 row would break"),
        "{text}"
    );
    assert!(
        text.contains("{\"column\":\"parcels.zoning\",\"value\":\"industrial\"}"),
        "{text}"
    );
    assert!(
        text.contains("add column parcels.area NOT NULL: 3 rows would break"),
        "{text}"
    );
    assert_eq!(project.parcels().await, BEFORE);
    assert_eq!(
        project.labels().await,
        ["residential", "commercial", "industrial"]
    );

    // Without those changes, append keeps the old rows and adds the new.
    project.write(
        "schemas/release.sql",
        "CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'industrial', 'agricultural');
         CREATE TABLE parcels (id integer PRIMARY KEY, zoning zoning_class, code text, old_id integer,
                               geom geometry(Point, 4326), area double precision);",
    );
    project.run(0);
    assert_eq!(
        project.parcels().await,
        [BEFORE.as_slice(), &["5:agricultural:E"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_and_type_changes_are_counted_on_the_rows_after_the_load() {
    let project = Project::new("keys").await;
    project.release(
        "CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'industrial');
         CREATE TABLE parcels (id integer, zoning zoning_class, code varchar(3) PRIMARY KEY,
                               old_id integer, geom geometry(Point, 4326));",
        "INSERT INTO parcels (id, zoning, code) VALUES (7, 'commercial', 'C');",
    );
    project.flow_file("parcels", "  mode = append", "");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    // `BBBBBB` does not fit varchar(3): counted before the column changes.
    assert!(
        text.contains(
            "change type parcels.code from text to character varying(3): 1 row would break"
        ),
        "{text}"
    );
    assert_eq!(project.parcels().await, BEFORE);

    // With short codes, the type fits, but code `C` is now there twice.
    project
        .api()
        .await
        .batch_execute("UPDATE public.parcels SET code = 'B' WHERE id = 2")
        .await
        .expect("shorten");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    assert!(
        text.contains(
            "change primary key parcels from (id) to (code): 1 key value shared by 2 rows would break"
        ),
        "{text}"
    );
    assert!(text.contains("{\"code\":\"C\",\"rows\":2}"), "{text}");
    // Under `append` the API's rows stay: the help says where to look.
    assert!(
        text.contains("with `mode = append` the API table keeps its rows"),
        "{text}"
    );
    assert_eq!(
        project.parcels().await,
        ["1:residential:A", "2:industrial:B", "3:commercial:C"]
    );

    // `replace` loads only the model's rows: nothing breaks, both apply.
    project.flow_file("parcels", "  mode = replace", "");
    project.run(0);
    assert_eq!(project.parcels().await, ["7:commercial:C"]);
    assert!(
        project
            .columns("public.parcels")
            .await
            .contains(&"code character varying(3) not null".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_replaces_rows_by_key_and_keeps_the_others() {
    let project = Project::new("upsert").await;
    project.release("CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'industrial');
         CREATE TABLE parcels (id integer PRIMARY KEY, zoning zoning_class, code text,
                               old_id integer, geom geometry(Point, 4326));", "INSERT INTO parcels (id, zoning, code) VALUES (2, 'commercial', 'new'), (9, 'residential', 'Z');");
    project.flow_file("parcels", "  mode = upsert", "");
    project.run(0);
    assert_eq!(
        project.parcels().await,
        [
            "1:residential:A",
            "2:commercial:new",
            "3:commercial:C",
            "9:residential:Z"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_leaves_the_api_database_as_it_was() {
    let project = Project::new("check").await;
    project.flow_file(
        "parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        r#"
check parcels_complete {
  table = api.public.parcels
  min_rows = 3
  not_null = [geom]
  unique = [id]
  valid_geometry = [geom]
}

check no_tiny_parcels {
  table = api.public.parcels
  sql = "SELECT id, area FROM public.parcels WHERE area < 200"
}
"#,
    );
    let failed = project.run(1);
    let text = flat(&failed.stderr);
    assert!(text.contains("flow::check::failed"), "{text}");
    assert!(
        text.contains("check `parcels_complete` on public.parcels: 2 rows, at least 3 expected"),
        "{text}"
    );
    assert!(
        text.contains(
            "check `no_tiny_parcels` on public.parcels: its query returned 1 failing rows"
        ),
        "{text}"
    );
    assert!(text.contains("{\"id\":1,\"area\":100}"), "{text}");
    project.assert_as_before().await;
    // `flow diff` reports the checks that would fail, and exits with 1.
    let diff = project.flow(&["diff", "release.flow"]).expect(1);
    assert!(
        flat(&diff.stdout).contains(
            "checks that would fail: check `parcels_complete` on public.parcels: 2 rows, at least 3 expected"
        ),
        "{}",
        diff.stdout
    );
    project.assert_as_before().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swap_switches_whole_releases_and_rollback_puts_the_last_back() {
    let project = Project::new("swap").await;
    project.flow_file(
        "parcels, zoning",
        "  mode = swap\n  allow = [\"drop column parcels.old_id\"]",
        "check parcels_there {\n  table = api.public.parcels\n  min_rows = 1\n}\n",
    );
    let api = project.api().await;
    project.run(0);
    let diff = project.flow(&["diff", "release.flow"]).expect(0);
    let text = flat(&diff.stdout);
    assert!(
        text.contains("api.public (swap) no schema change"),
        "{text}"
    );
    assert!(
        text.contains("ALTER TABLE \"public__flow_next\".\"parcels\" SET SCHEMA \"public\";"),
        "{text}"
    );
    assert_eq!(
        project.parcels().await,
        ["1:residential:A", "4:agricultural:D"]
    );
    assert_eq!(
        project.labels().await,
        ["residential", "commercial", "agricultural"]
    );
    let previous: Vec<String> = api
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public__flow_prev_%'",
            &[],
        )
        .await
        .expect("schemas")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(previous.len(), 1, "{previous:?}");
    let kept: i64 = api
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".parcels", previous[0]),
            &[],
        )
        .await
        .expect("kept")
        .get(0);
    assert_eq!(kept, 3, "the previous release is kept");

    let rolled = project.flow(&["rollback", "release.flow"]).expect(0);
    let said = flat(&rolled.stdout);
    assert!(
        said.contains("parcels back from the previous release")
            && said.contains("zoning was new with the release, removed"),
        "{said}"
    );
    assert_eq!(project.parcels().await, BEFORE);
    assert_eq!(
        project.labels().await,
        ["residential", "commercial", "industrial"]
    );
    assert!(
        project
            .columns("public.parcels")
            .await
            .iter()
            .any(|c| c.starts_with("old_id"))
    );
    let exists: bool = api
        .query_one("SELECT to_regclass('public.zoning') IS NOT NULL", &[])
        .await
        .expect("zoning")
        .get(0);
    assert!(!exists, "zoning was new in the release, so it went with it");
    project.flow(&["rollback", "release.flow"]).expect(1);

    // The rollback is a run of its own, and the next run loads the release
    // again instead of taking the API for up to date.
    let runs = project.flow(&["runs", "release.flow", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    assert_eq!(runs[0]["selection"], "rollback", "{runs}");
    let again = project.flow(&["run", "release.flow"]).expect(0);
    assert!(
        flat(&again.stderr).contains("done pg:target:populate"),
        "{}",
        again.stderr
    );
    assert_eq!(
        project.parcels().await,
        ["1:residential:A", "4:agricultural:D"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_back_a_first_swap_says_there_was_no_previous_release() {
    let project = Project::new("firstswap").await;
    project
        .api()
        .await
        .batch_execute("DROP TABLE public.parcels; DROP TYPE zoning_class")
        .await
        .expect("empty api");
    project.flow_file("parcels, zoning", "  mode = swap", "");
    project.run(0);
    let rolled = project.flow(&["rollback", "release.flow"]).expect(0);
    let said = flat(&rolled.stdout);
    assert!(
        said.contains(
            "there was no previous release; parcels, zoning were new with the release, removed"
        ),
        "{said}"
    );
    let exists: bool = project
        .api()
        .await
        .query_one("SELECT to_regclass('public.parcels') IS NOT NULL", &[])
        .await
        .expect("parcels")
        .get(0);
    assert!(!exists);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_populate_killed_half_way_leaves_the_api_database_as_it_was() {
    let project = Project::new("killed").await;
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area)
         SELECT g, 'residential', repeat('x', 100), g FROM generate_series(1, 1000000) g;",
    );
    project.write("transform/zoning.sql", "");
    project.flow_file("parcels", "  allow = [\"drop column parcels.old_id\"]", "");
    project
        .flow(&["run", "release.flow", "--until", "pg:model:transform"])
        .expect(0);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "release.flow", "--step", "pg:target:populate"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.flow.url())
        .env("API_DATABASE_URL", project.api.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow starts");
    let api = project.api().await;
    support::wait_for_statement(&api, "COPY%FROM STDIN%", "populate never started copying").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    project.assert_as_before().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_mirrors_the_api_and_transform_errors_point_at_the_file() {
    let project = Project::new("mirror").await;
    project.write(
        "mirror.flow",
        r#"flow mirror

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")

step pg:flow:configure {}

step pg:model:create {
  like = api.public
  tables = [parcels]
}

step pg:model:transform {
  sql = "transform/*.sql"
}
"#,
    );
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning) VALUES (1, 'residential');\nINSERT INTO parcels (id, zoning) VALUES (2, 'nowhere');\n",
    );
    project.write("transform/zoning.sql", "");
    let failed = project.flow(&["run", "mirror.flow"]).expect(1);
    let text = flat(&failed.stderr);
    assert!(
        text.contains("invalid input value for enum zoning_class: \"nowhere\""),
        "{text}"
    );
    assert!(text.contains("transform/parcels.sql:2:"), "{text}");
    assert!(text.contains("SQLSTATE 22P02"), "{text}");
    let flow = project.flow.client().await.expect("flow");
    let columns: Vec<String> = flow
        .query(
            "SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
             FROM pg_attribute a WHERE a.attrelid = 'model.parcels'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        columns,
        [
            "id integer not null",
            "zoning model.zoning_class",
            "code text",
            "old_id integer",
            "geom geometry(Point,4326)"
        ]
    );
    let second = project
        .flow(&["run", "mirror.flow", "--step", "pg:model:create", "--force"])
        .expect(0);
    assert!(
        second.stdout.contains("unchanged") || second.stderr.contains("unchanged"),
        "{}{}",
        second.stdout,
        second.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_renamed_by_the_flow_keeps_its_rows() {
    let project = Project::new("rename").await;
    project.release("CREATE TYPE zoning_class AS ENUM ('commercial', 'residential', 'industry');
         CREATE TABLE parcels (id integer PRIMARY KEY, zoning zoning_class, code text, old_id integer,
                               geom geometry(Point, 4326));", "INSERT INTO parcels (id, zoning, code) VALUES (5, 'industry', 'E');");
    project.flow_file("parcels", "  mode = append", "");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    assert!(
        text.contains("remove label zoning_class.industrial: 1 row would break"),
        "{text}"
    );
    project.assert_as_before().await;

    project.flow_file(
        "parcels",
        "  mode = append\n  renames = [\"zoning_class.industrial=industry\"]",
        "",
    );
    let diff = project.flow(&["diff", "release.flow"]).expect(0);
    assert!(
        flat(&diff.stdout).contains("safe rename label zoning_class.industrial to industry"),
        "{}",
        diff.stdout
    );
    project.run(0);
    assert_eq!(
        project.parcels().await,
        [
            "1:residential:A",
            "2:industry:BBBBBB",
            "3:commercial:C",
            "5:industry:E"
        ]
    );
    assert_eq!(
        project.labels().await,
        ["commercial", "residential", "industry"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_with_foreign_keys_are_emptied_children_first_and_loaded_parents_first() {
    let project = Project::new("foreign").await;
    project
        .api()
        .await
        .batch_execute(
            "CREATE TABLE public.zones (class text PRIMARY KEY);
             CREATE TABLE public.lots (id integer PRIMARY KEY, zone text REFERENCES public.zones (class));
             INSERT INTO public.zones VALUES ('a'), ('b');
             INSERT INTO public.lots VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .expect("api");
    project.write(
        "schemas/release.sql",
        "CREATE TABLE zones (class text PRIMARY KEY);
         CREATE TABLE lots (id integer PRIMARY KEY, zone text REFERENCES zones (class));",
    );
    project.write("transform/parcels.sql", "");
    project.write("transform/zoning.sql", "");
    project.write(
        "transform/zones.sql",
        "INSERT INTO zones VALUES ('a'), ('c');",
    );
    project.write(
        "transform/lots.sql",
        "-- flow: after zones.sql\nINSERT INTO lots VALUES (1, 'a'), (3, 'c');",
    );
    // The child is listed first: populate orders them itself.
    project.flow_file("lots, zones", "", "");
    project.run(0);
    let rows: Vec<String> = project
        .api()
        .await
        .query(
            "SELECT 'lot ' || id || ':' || zone FROM public.lots
             UNION ALL SELECT 'zone ' || class FROM public.zones ORDER BY 1",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["lot 1:a", "lot 3:c", "zone a", "zone c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_values_reach_transforms_and_checks() {
    let project = Project::new("vars").await;
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area, geom) VALUES
           (1, 'residential', current_setting('flow.vendor'), 100, 'SRID=4326;POINT(1 1)');",
    );
    project.flow_file(
        "parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        r#"
check vendor_only {
  table = api.public.parcels
  sql = "SELECT id FROM public.parcels WHERE code <> current_setting('flow.vendor')"
}
"#,
    );
    project
        .flow(&["run", "release.flow", "--force", "--var", "vendor=hallmark"])
        .expect(0);
    assert_eq!(project.parcels().await, ["1:residential:hallmark"]);
    // The check sees the run's value: a transform writing another fails it.
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area, geom) VALUES
           (1, 'residential', 'someone else', 100, 'SRID=4326;POINT(1 1)');",
    );
    let failed = project
        .flow(&["run", "release.flow", "--force", "--var", "vendor=hallmark"])
        .expect(1);
    assert!(
        flat(&failed.stderr).contains("check `vendor_only`"),
        "{}",
        failed.stderr
    );
    assert_eq!(project.parcels().await, ["1:residential:hallmark"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_error_in_a_transform_points_at_its_statement() {
    let project = Project::new("transformplace").await;
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area, geom) VALUES
           (1, 'residential', 'A', 100, 'SRID=4326;POINT(1 1)');
-- the area of the second parcel
INSERT INTO parcels (id, zoning, code, area, geom)
  SELECT 2, 'commercial', 'B', 100 / (id - 1), geom FROM parcels;
",
    );
    project.flow_file(
        "parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    let failed = project.run(1);
    let text = flat(&failed.stderr);
    assert!(text.contains("division by zero (SQLSTATE 22012)"), "{text}");
    assert!(text.contains("transform/parcels.sql:4:1"), "{text}");
    assert!(text.contains("the statement at line 4 failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_diff_compares_the_release_as_it_is_on_disk() {
    let project = Project::new("diffdisk").await;
    project.flow_file(
        "parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    project.run(0);
    project.flow(&["diff", "release.flow"]).expect(0);
    // The next release drops `code`: nothing has run since the edit.
    project.write(
        "schemas/release.sql",
        &RELEASE_0_9.replace("  code text,\n", ""),
    );
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, area, geom) VALUES
           (1, 'residential', 100, 'SRID=4326;POINT(1 1)');",
    );
    let diff = project.flow(&["diff", "release.flow"]).expect(1);
    let text = flat(&diff.stdout);
    assert!(
        text.contains("destructive drop column parcels.code: refused unless allowed by name"),
        "{text}\n{}",
        diff.stderr
    );
    // Nothing was written: the API keeps `code`, the model its old shape,
    // and no scratch schema is left.
    assert!(
        project
            .columns("public.parcels")
            .await
            .iter()
            .any(|c| c.starts_with("code"))
    );
    let scratch: i64 = project
        .flow
        .client()
        .await
        .expect("flow")
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%flow_diff%'",
            &[],
        )
        .await
        .expect("schemas")
        .get(0);
    assert_eq!(scratch, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_keeps_what_the_apis_readers_depend_on() {
    let project = Project::new("dependents").await;
    let reader = format!("flow_reader_{}", std::process::id());
    product_api(&project, &reader).await;
    project.flow_file(
        "parcels, zoning",
        "  mode = swap\n  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    project.run(0);
    assert_eq!(
        project.parcels().await,
        ["1:residential:A", "4:agricultural:D"]
    );
    let api = project.api().await;
    // The reader role reads the new rows, through the view and the table.
    api.batch_execute(&format!("SET ROLE {reader}"))
        .await
        .expect("role");
    assert_eq!(
        text(
            &api,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM public.parcel_codes"
        )
        .await,
        Some("1,4".into())
    );
    assert_eq!(
        text(
            &api,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM public.parcels"
        )
        .await,
        Some("1,4".into())
    );
    assert_eq!(
        text(&api, "SELECT n::text FROM public.parcel_count").await,
        Some("2".into()),
        "the materialized view was made again on the new rows"
    );
    api.batch_execute("RESET ROLE").await.expect("role");
    for (what, sql, expected) in [
        (
            "comment",
            "SELECT obj_description('public.parcels'::regclass, 'pg_class')",
            "the parcels",
        ),
        (
            "column comment",
            "SELECT col_description('public.parcels'::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = 'public.parcels'::regclass AND attname = 'code'))",
            "the cadastral code",
        ),
        (
            "indexes",
            "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'public.parcels'::regclass",
            "parcels_code,parcels_geom,parcels_pkey",
        ),
        (
            "trigger",
            "SELECT string_agg(tgname::text, ',') FROM pg_trigger WHERE tgrelid = 'public.parcels'::regclass AND NOT tgisinternal",
            "parcels_touch",
        ),
        (
            "row-level security",
            "SELECT relrowsecurity::text FROM pg_class WHERE oid = 'public.parcels'::regclass",
            "true",
        ),
        (
            "policy",
            "SELECT string_agg(policyname::text, ',') FROM pg_policies WHERE schemaname = 'public' AND tablename = 'parcels'",
            "readers",
        ),
        (
            "foreign key",
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'public.visits'::regclass AND contype = 'f'",
            "parcels",
        ),
    ] {
        assert_eq!(text(&api, sql).await.as_deref(), Some(expected), "{what}");
    }
    assert_eq!(
        text(
            &api,
            &format!("SELECT has_table_privilege('{reader}', 'public.parcels', 'SELECT')::text")
        )
        .await,
        Some("true".into())
    );
}

/// The API 0.8 release as the model: the in-place modes change no schema.
const RELEASE_0_8: &str = "
CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'industrial');
CREATE TABLE parcels (
  id integer PRIMARY KEY,
  zoning zoning_class,
  code text,
  old_id integer,
  geom geometry(Point, 4326)
);
";

/// Makes the API of `project` look like a product's: a reader role with
/// grants, a view and a materialized view, two indexes, comments, a
/// trigger, row-level security, and a table whose foreign key points at
/// `parcels`.
async fn product_api(project: &Project, reader: &str) {
    project
        .api()
        .await
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {reader}; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT USAGE ON SCHEMA public TO {reader};
             GRANT SELECT ON public.parcels TO {reader};
             COMMENT ON TABLE public.parcels IS 'the parcels';
             COMMENT ON COLUMN public.parcels.code IS 'the cadastral code';
             CREATE INDEX parcels_geom ON public.parcels USING gist (geom);
             CREATE INDEX parcels_code ON public.parcels (code);
             CREATE VIEW public.parcel_codes AS SELECT id, code FROM public.parcels;
             GRANT SELECT ON public.parcel_codes TO {reader};
             CREATE MATERIALIZED VIEW public.parcel_count AS SELECT count(*) AS n FROM public.parcels;
             GRANT SELECT ON public.parcel_count TO {reader};
             CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS
               'BEGIN NEW.code := coalesce(NEW.code, ''?''); RETURN NEW; END';
             CREATE TRIGGER parcels_touch BEFORE INSERT ON public.parcels
               FOR EACH ROW EXECUTE FUNCTION public.touch();
             ALTER TABLE public.parcels ENABLE ROW LEVEL SECURITY;
             CREATE POLICY readers ON public.parcels FOR SELECT TO {reader} USING (id < 100);
             CREATE TABLE public.visits (parcel_id integer REFERENCES public.parcels (id));
             INSERT INTO public.visits VALUES (1);"
        ))
        .await
        .expect("a product's API");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_in_place_mode_keeps_what_the_apis_readers_depend_on() {
    for (mode, ids, expected) in [
        ("replace", "1, 4", "1,4"),
        ("upsert", "1, 4", "1,2,3,4"),
        ("append", "4, 5", "1,2,3,4,5"),
    ] {
        let project = Project::new(&format!("inplace{mode}")).await;
        let reader = format!("flow_reader_{mode}_{}", std::process::id());
        product_api(&project, &reader).await;
        project.release(
            RELEASE_0_8,
            &format!(
                "INSERT INTO parcels (id, zoning, code, geom)
                 SELECT i, 'commercial', 'N' || i, 'SRID=4326;POINT(4 4)' FROM unnest(ARRAY[{ids}]) i;"
            ),
        );
        project.flow_file("parcels", &format!("  mode = {mode}"), "");
        project.run(0);
        let api = project.api().await;
        api.batch_execute(&format!("SET ROLE {reader}"))
            .await
            .expect("role");
        assert_eq!(
            text(
                &api,
                "SELECT string_agg(id::text, ',' ORDER BY id) FROM public.parcel_codes"
            )
            .await,
            Some(expected.to_owned()),
            "{mode}: the view reads the new rows"
        );
        assert_eq!(
            text(&api, "SELECT n::text FROM public.parcel_count").await,
            Some(expected.split(',').count().to_string()),
            "{mode}: the materialized view is refreshed"
        );
        api.batch_execute("RESET ROLE").await.expect("role");
        assert_eq!(
            text(&api, "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'public.parcels'::regclass").await,
            Some("parcels_code,parcels_geom,parcels_pkey".to_owned()),
            "{mode}"
        );
        assert_eq!(
            text(
                &api,
                "SELECT obj_description('public.parcels'::regclass, 'pg_class')"
            )
            .await,
            Some("the parcels".to_owned()),
            "{mode}"
        );
        assert_eq!(
            text(
                &api,
                "SELECT relrowsecurity::text FROM pg_class WHERE oid = 'public.parcels'::regclass"
            )
            .await,
            Some("true".to_owned()),
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replace_that_would_orphan_rows_of_another_table_writes_nothing() {
    let project = Project::new("orphans").await;
    product_api(
        &project,
        &format!("flow_reader_orphans_{}", std::process::id()),
    )
    .await;
    project.release(
        RELEASE_0_8,
        "INSERT INTO parcels (id, zoning, code) VALUES (4, 'commercial', 'D');",
    );
    project.flow_file("parcels", "  mode = replace", "");
    let failed = project.run(1);
    let text = flat(&failed.stderr);
    assert!(
        text.contains("does not fit the new tables or rows"),
        "{text}"
    );
    assert!(text.contains("visits_parcel_id_fkey"), "{text}");
    assert_eq!(project.parcels().await, BEFORE);
}

/// Release 0.9 with `owners`, and a foreign key from `parcels` to it.
const RELEASE_0_9_KEYED: &str = "
CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'agricultural');
CREATE TABLE owners (id integer PRIMARY KEY, name text);
CREATE TABLE parcels (
  id integer PRIMARY KEY,
  zoning zoning_class NOT NULL,
  code text,
  area double precision NOT NULL,
  geom geometry(Point, 4326),
  owner_id integer REFERENCES owners (id)
);
CREATE TABLE zoning (
  class zoning_class PRIMARY KEY,
  parcels integer NOT NULL CHECK (parcels >= 0)
);
";

/// The transforms of the keyed release: `people.sql` fills `owners`, and
/// must run before `parcels.sql` (parcels point at owners), though its name
/// sorts after.
fn keyed_release(project: &Project) {
    project.write("schemas/release.sql", RELEASE_0_9_KEYED);
    project.write(
        "transform/people.sql",
        "INSERT INTO owners VALUES (1, 'Ada');",
    );
    project.write(
        "transform/parcels.sql",
        "INSERT INTO parcels (id, zoning, code, area, geom, owner_id) VALUES
           (1, 'residential', 'A', 100, 'SRID=4326;POINT(1 1)', 1),
           (4, 'agricultural', 'D', 400, 'SRID=4326;POINT(4 4)', 1);",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_keys_are_schema_compared_counted_and_made_in_every_mode() {
    for mode in ["replace", "swap"] {
        let project = Project::new(&format!("fk{mode}")).await;
        keyed_release(&project);
        project.flow_file(
            "owners, parcels, zoning",
            &format!("  mode = {mode}\n  allow = [\"drop column parcels.old_id\"]"),
            "",
        );
        let diff = flat(&project.flow(&["diff", "release.flow"]).run().stdout);
        if mode == "replace" {
            assert!(
                diff.contains("add constraint parcels.parcels_owner_id_fkey: no row breaks"),
                "{diff}"
            );
        }
        project.run(0);
        let key: Option<String> = project
            .api()
            .await
            .query_one(
                "SELECT confrelid::regclass::text FROM pg_constraint
                 WHERE conrelid = 'public.parcels'::regclass AND contype = 'f'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .ok();
        assert_eq!(key.as_deref(), Some("owners"), "{mode}: the key was made");
    }

    // Under upsert, an API row that stays and points at no owner breaks
    // the key: counted, with a sample, and refused.
    let project = Project::new("fkorphans").await;
    keyed_release(&project);
    project.flow_file(
        "owners, parcels, zoning",
        "  allow = [\"drop column parcels.old_id\"]",
        "",
    );
    project.run(0);
    project
        .api()
        .await
        .batch_execute(
            "ALTER TABLE public.parcels DROP CONSTRAINT parcels_owner_id_fkey;
             INSERT INTO public.parcels (id, zoning, code, area, owner_id) VALUES (7, 'residential', 'G', 7, 99);",
        )
        .await
        .expect("an orphan");
    project.flow_file("owners, parcels, zoning", "  mode = upsert", "");
    let refused = project.run(1);
    let text = flat(&refused.stderr);
    assert!(
        text.contains("add constraint parcels.parcels_owner_id_fkey: 1 row would break"),
        "{text}"
    );
    assert!(text.contains("\"owner_id\":99"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swapped_identity_goes_on_from_where_the_api_was() {
    let project = Project::new("identity").await;
    project
        .api()
        .await
        .batch_execute(
            "CREATE TABLE public.events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text);
             INSERT INTO public.events (note) SELECT 'old ' || g FROM generate_series(1, 100) g;",
        )
        .await
        .expect("events");
    project.release(
        "CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text);",
        "INSERT INTO events (note) VALUES ('new 1'), ('new 2'), ('new 3');",
    );
    project.flow_file("events", "  mode = swap", "");
    project.run(0);
    let next: i64 = project
        .api()
        .await
        .query_one(
            "INSERT INTO public.events (note) VALUES ('from the product') RETURNING id",
            &[],
        )
        .await
        .expect("the product inserts")
        .get(0);
    assert_eq!(next, 101, "the identity goes on after the API's last key");

    // In place, loaded keys beyond the API's sequence move it on.
    project.release(
        "CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text);",
        "INSERT INTO events (id, note) VALUES (500, 'far'), (501, 'further');",
    );
    project.flow_file("events", "  mode = replace", "");
    project.run(0);
    let next: i64 = project
        .api()
        .await
        .query_one(
            "INSERT INTO public.events (note) VALUES ('from the product') RETURNING id",
            &[],
        )
        .await
        .expect("the product inserts")
        .get(0);
    assert_eq!(next, 502, "the identity goes on after the keys loaded");
}

/// The one text value `sql` reads on `api`.
async fn text(api: &flow_db::tokio_postgres::Client, sql: &str) -> Option<String> {
    api.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get::<_, Option<String>>(0)
}
