//! A small builder for running the `flow` binary in tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Flow {
    args: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, Option<String>)>,
}

/// Diagnostic text with miette's line wrapping undone, for `contains` checks.
pub fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Loads a shapefile into `table` of a PostGIS database with `ogr2ogr`, the
/// reference the shapefile tests compare with: multi-geometries, names as
/// written, the geometry in `geom`, the feature id in `ogr_fid`; `options`
/// go on the command line too. The error is what ogr2ogr printed.
#[allow(dead_code)]
pub fn ogr2ogr(gdal: &str, shp: &Path, table: &str, options: &[&str]) -> Result<(), String> {
    let output = Command::new("ogr2ogr")
        .args([
            "-f",
            "PostgreSQL",
            gdal,
            &shp.display().to_string(),
            "-nln",
            table,
            "-nlt",
            "PROMOTE_TO_MULTI",
            "-lco",
            "LAUNDER=NO",
            "-lco",
            "GEOMETRY_NAME=geom",
            "-lco",
            "FID=ogr_fid",
            "-lco",
            "SPATIAL_INDEX=NONE",
        ])
        .args(options)
        .output()
        .expect("ogr2ogr runs (gdal-bin is installed by scripts/prerequisites)");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The repository's root, where `flows/` lives.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Flow {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            dir: root(),
            env: Vec::new(),
        }
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, name: &str) -> Self {
        self.env.push((name.to_owned(), None));
        self
    }

    pub fn run(self) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flow"));
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("FLOW_ENV")
            .env_remove("ENV")
            .env_remove("CONFIG_PATH")
            .env_remove("FLOW_DATABASE_URL")
            .env_remove("API_DATABASE_URL")
            .env_remove("SPACES_URL");
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let output = command.output().expect("the flow binary runs");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs and asserts the exit code.
    pub fn expect(self, code: i32) -> Output {
        let description = self.args.join(" ");
        let output = self.run();
        assert_eq!(
            output.code, code,
            "`flow {description}` exited with {}\nstdout:\n{}\nstderr:\n{}",
            output.code, output.stdout, output.stderr
        );
        output
    }
}

pub mod pooler;
pub mod reference;
pub mod s3;
pub mod server;

/// A fresh temporary folder for a test's flow and its files, removed when
/// the test is done: what every test project is built on.
pub struct Folder {
    pub dir: PathBuf,
}

impl Folder {
    /// `flow-<prefix>-<name>-<pid>` under the temporary folder, empty.
    pub fn new(prefix: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flow-{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Self { dir }
    }

    /// Writes a file of the folder, making its folder.
    pub fn write(&self, file: &str, text: &str) {
        let path = self.dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(path, text).expect("write");
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A flow in a temporary folder with a database of its own in the test
/// cluster; the folder goes when the project does.
pub struct Project {
    pub folder: Folder,
    pub dir: PathBuf,
    pub db: flow_db::testing::TestDatabase,
    file: &'static str,
}

impl Project {
    /// `file` (holding `text`) in a fresh folder named after `prefix` and
    /// `name`, and a database named after `name`.
    pub async fn new(prefix: &str, name: &str, file: &'static str, text: &str) -> Self {
        let folder = Folder::new(prefix, name);
        folder.write(file, text);
        let db = flow_db::testing::TestDatabase::create(name)
            .await
            .expect("database");
        let dir = folder.dir.clone();
        Self {
            folder,
            dir,
            db,
            file,
        }
    }

    /// Writes a file of the project, making its folder.
    pub fn write(&self, file: &str, text: &str) {
        self.folder.write(file, text);
    }

    /// `flow COMMAND FILE ARGS...`: `args[0]` is the command.
    pub fn flow(&self, args: &[&str]) -> Flow {
        let mut all: Vec<String> = vec![args[0].to_owned(), self.file.to_owned()];
        all.extend(args[1..].iter().map(|a| (*a).to_owned()));
        Flow::new(all)
            .dir(&self.dir)
            .env("FLOW_DATABASE_URL", self.db.url())
    }

    /// `flow run FILE ARGS...`.
    pub fn run(&self, args: &[&str]) -> Flow {
        let mut all = vec!["run"];
        all.extend(args);
        self.flow(&all)
    }
}

/// Waits until another connection to `client`'s server runs a statement
/// whose text is `like` (a `LIKE` pattern): a step that reached that point.
pub async fn wait_for_statement(client: &flow_db::tokio_postgres::Client, like: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let running: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                &[&like],
            )
            .await
            .expect("activity")
            .get(0);
        if running > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `flow run FILE` in `dir` as a child process, with the storage URL in
/// `url_var`, this server's credentials and the flow database: for tests
/// that stop the server while the run goes. Its output is piped.
#[allow(dead_code)]
pub fn spawn_flow(
    dir: &Path,
    file: &str,
    url_var: &str,
    url: &str,
    flow_db: &str,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", file])
        .current_dir(dir)
        .env(url_var, url)
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .env("FLOW_DATABASE_URL", flow_db)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flow starts")
}
