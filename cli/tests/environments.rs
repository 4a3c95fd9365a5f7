//! Environments: `--env`, `FLOW_ENV`, `ENV`, `.env` files and `CONFIG_PATH`,
//! as `flow plan` shows them (passwords hidden).

mod support;

use std::path::PathBuf;

use support::Flow;

const FLOW: &str = r#"flow envs

database api = env("API_DATABASE_URL", "embedded")

env prod {
  database api = "postgres://deploy:hunter2@prod.example.com/api"
}

env staging {
  database api = env("STAGING_API_URL")
}

step pg:api:configure {}
"#;

fn project(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-env-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("envs.flow"), FLOW).expect("flow");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("file");
    }
    dir
}

fn api_line(dir: &PathBuf, flow: Flow) -> String {
    let output = flow.dir(dir).expect(0);
    let _ = std::fs::remove_dir_all(dir);
    output
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_default_environment_uses_the_declarations() {
    let dir = project("default", &[]);
    let header = api_line(
        &dir,
        Flow::new(["plan", "envs.flow"]).env_remove("API_DATABASE_URL"),
    );
    assert_eq!(
        header,
        "environment `default`\n  database api: embedded (api)\n  database flow: embedded (flow)"
    );
}

#[test]
fn env_flag_flow_env_and_env_choose_the_environment() {
    for flow in [
        Flow::new(["plan", "envs.flow", "--env", "prod"]),
        Flow::new(["plan", "envs.flow"]).env("FLOW_ENV", "prod"),
        Flow::new(["plan", "envs.flow"]).env("ENV", "prod"),
    ] {
        let dir = project("prod", &[]);
        let header = api_line(&dir, flow);
        assert!(header.starts_with("environment `prod`"), "{header}");
        assert!(
            header.contains("database api: postgres://deploy:***@prod.example.com/api"),
            "{header}"
        );
        assert!(!header.contains("hunter2"));
    }
}

#[test]
fn dot_env_files_and_config_path_fill_variables() {
    let dir = project(
        "dotenv",
        &[(".env", "API_DATABASE_URL=postgres://from-dotenv/api\n")],
    );
    let header = api_line(
        &dir,
        Flow::new(["plan", "envs.flow"]).env_remove("API_DATABASE_URL"),
    );
    assert!(
        header.contains("database api: postgres://from-dotenv/api"),
        "{header}"
    );

    let dir = project(
        "staging",
        &[(
            ".env.staging",
            "STAGING_API_URL=postgres://staging-db/api\n",
        )],
    );
    let header = api_line(&dir, Flow::new(["plan", "envs.flow", "--env", "staging"]));
    assert!(
        header.contains("database api: postgres://staging-db/api"),
        "{header}"
    );

    let config = std::env::temp_dir().join(format!("flow-config-{}.env", std::process::id()));
    std::fs::write(&config, "STAGING_API_URL=postgres://from-config/api\n").expect("config");
    let dir = project("config", &[]);
    let header = api_line(
        &dir,
        Flow::new(["plan", "envs.flow", "--env", "staging"])
            .env("CONFIG_PATH", config.to_string_lossy()),
    );
    assert!(
        header.contains("database api: postgres://from-config/api"),
        "{header}"
    );
    let _ = std::fs::remove_file(config);
}

#[test]
fn variables_already_set_win_over_files() {
    let dir = project(
        "precedence",
        &[(".env", "API_DATABASE_URL=postgres://from-dotenv/api\n")],
    );
    let header = api_line(
        &dir,
        Flow::new(["plan", "envs.flow"]).env("API_DATABASE_URL", "postgres://from-shell/api"),
    );
    assert!(header.contains("postgres://from-shell/api"), "{header}");
}

#[test]
fn an_unknown_environment_stops_a_run() {
    let dir = project("unknown", &[]);
    let output = Flow::new(["run", "envs.flow", "--env", "prdo"])
        .dir(&dir)
        .expect(2);
    assert!(
        output.stderr.contains("flow::env::unknown"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("did you mean `prod`?"),
        "{}",
        output.stderr
    );
    let output = Flow::new(["run", "envs.flow", "--env", "staging"])
        .dir(&dir)
        .env_remove("STAGING_API_URL")
        .expect(2);
    assert!(
        output.stderr.contains("`STAGING_API_URL` is not set"),
        "{}",
        output.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}
