//! `flow fmt`: canonical, idempotent, and faithful to the flow and its comments.

mod support;

use support::{Flow, Folder};

/// `name.flow` holding `text` in a folder removed when the test ends.
fn scratch(name: &str, text: &str) -> (Folder, std::path::PathBuf) {
    let folder = Folder::new("fmt", name);
    folder.write(&format!("{name}.flow"), text);
    let path = folder.dir.join(format!("{name}.flow"));
    (folder, path)
}

const MESSY: &str = r#"# leading comment
flow   messy
database flow=env("FLOW_DATABASE_URL","embedded")   # trailing
storage spaces = "file://fixtures/spaces"
groups download->seed
step minio:download { group = download from = spaces "shp/" to = "data/raw" }
step sh:run named {
    command = "echo"   args = ["a","b"]
  # inside, before the closing brace
}
step sql:flow:run { sql = "x.sql" timeout = 10m retries = 3 after = [minio:download, "sh:*"] }
# the end
"#;

#[test]
fn formats_into_the_canonical_layout() {
    let (_folder, path) = scratch("messy", MESSY);
    let output = Flow::new(["fmt", "--stdout", path.to_str().expect("path")]).expect(0);
    insta::assert_snapshot!("fmt_messy", output.stdout);
}

#[test]
fn check_reports_unformatted_files_and_fmt_rewrites_them() {
    let (_folder, path) = scratch("rewrite", MESSY);
    let file = path.to_str().expect("path");
    let output = Flow::new(["fmt", "--check", file]).expect(1);
    assert!(output.stderr.contains("not formatted"), "{}", output.stderr);
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        MESSY,
        "--check changes nothing"
    );
    Flow::new(["fmt", file]).expect(0);
    let once = std::fs::read_to_string(&path).expect("read");
    Flow::new(["fmt", "--check", file]).expect(0);
    Flow::new(["fmt", file]).expect(0);
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        once,
        "idempotent"
    );
    Flow::new(["check", file]).expect(0);
}

#[test]
fn a_flow_with_syntax_errors_is_left_alone() {
    let (_folder, path) = scratch("broken", "step pg:source:load {\n  from = \n}\n");
    let file = path.to_str().expect("path");
    let output = Flow::new(["fmt", file]).expect(2);
    assert!(
        output.stderr.contains("flow::syntax::unexpected"),
        "{}",
        output.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "step pg:source:load {\n  from = \n}\n"
    );
}
