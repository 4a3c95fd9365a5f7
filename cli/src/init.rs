//! `flow init`: a starter flow that checks and runs as it is, named after
//! its folder, with the SQL it runs and a `.gitignore` for flow's state
//! (`.flow/`) and data. It writes only files that are not there yet.

use std::path::Path;

use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::output;

const SQL: &str = "-- A first transform: replace it with your own.
CREATE TABLE IF NOT EXISTS hello (greeting text);
TRUNCATE hello;
INSERT INTO hello VALUES ('hello from ' || current_database());
";

const GITIGNORE: &str = "# flow's state: the embedded PostgreSQL, logs, run locks
.flow/
# data the flow downloads and converts
data/
";

fn starter(name: &str) -> String {
    format!(
        r#"flow {name}

# `embedded` runs a PostgreSQL of its own under .flow/; set FLOW_DATABASE_URL
# to use a server instead.
database flow = env("FLOW_DATABASE_URL", "embedded")

groups seed

step sql:flow:run hello {{
  group = seed
  sql = "sql/*.sql"
  writes = ["public.hello"]
}}
"#
    )
}

/// The flow's name from its folder: letters, digits and `_`, starting with a
/// letter.
fn name_of(dir: &Path) -> String {
    let folder = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "flow_");
    }
    name
}

pub fn init(dir: &Path) -> Exit {
    if let Err(error) = std::fs::create_dir_all(dir.join("sql")) {
        output::error(CliError::Write {
            path: dir.display().to_string(),
            reason: error.to_string(),
        });
        return Exit::Failure;
    }
    let name = name_of(dir);
    let files = [
        (format!("{name}.flow"), starter(&name)),
        ("sql/hello.sql".to_owned(), SQL.to_owned()),
        (".gitignore".to_owned(), GITIGNORE.to_owned()),
    ];
    for (file, _) in &files {
        let path = dir.join(file);
        if path.exists() {
            output::error(CliError::Exists {
                path: path.display().to_string(),
            });
            return Exit::Invalid;
        }
    }
    for (file, text) in &files {
        let path = dir.join(file);
        if let Err(error) = std::fs::write(&path, text) {
            output::error(CliError::Write {
                path: path.display().to_string(),
                reason: error.to_string(),
            });
            return Exit::Failure;
        }
    }
    let flow_file = dir.join(format!("{name}.flow"));
    output::note(&format!(
        "wrote {}, {} and {}\nnext: `flow run {}`",
        flow_file.display(),
        dir.join("sql/hello.sql").display(),
        dir.join(".gitignore").display(),
        flow_file.display()
    ));
    Exit::Success
}
