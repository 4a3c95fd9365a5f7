use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "flow",
    version,
    about = "A declarative data-flow engine for PostGIS pipelines",
    max_term_width = 100,
    after_help = "Exit codes:\n  0    success\n  1    a step failed (or `fmt --check` found a file to reformat, or `diff` found a change populate would refuse)\n  2    the flow, its environment or the command line is invalid\n  130  Ctrl-C or SIGTERM stopped the run"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// More detail on stderr: `-v` for info, `-vv` for debug, `-vvv` for trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The level of detail on stderr (`error`, `warn`, `info`, `debug`,
    /// `trace`, or a filter like `flow_engine=debug`); `RUST_LOG` works too.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check flow files without running anything: syntax, operations, parameters, references, cycles.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON object per file: its steps, or its problems.
        #[arg(long)]
        json: bool,
    },
    /// Start a flow in a folder: a starter `.flow` file that runs, its SQL,
    /// and a `.gitignore` for flow's state and data.
    Init {
        /// The folder (default: the current one); the flow is named after it.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print the completion script of a shell: `flow completions bash > /etc/bash_completion.d/flow`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the log a step wrote in a run (`sh:run` output).
    Logs {
        file: PathBuf,
        /// A run number, or `latest`.
        run: String,
        /// The step, like `sh:run/fetch`.
        step: String,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// Show what would run, in what order, what can run at the same time, and why.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        /// The environment whose connections to show [env: FLOW_ENV, or ENV]
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the DAG of the selected steps as DOT or Mermaid.
    Graph {
        file: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        #[arg(long, value_enum, default_value_t = Format::Dot)]
        format: Format,
    },
    /// Rewrite flow files in the canonical layout.
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing; exit with 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the formatted text instead of rewriting the file.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Run the selected steps.
    Run {
        file: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write the flow for another orchestrator.
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },
    /// Start, stop or inspect the embedded PostgreSQL cluster of a flow.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// List the recorded runs of a flow, newest first.
    Runs {
        file: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// The versions of an API table's rows that `pg:target:populate` keeps
    /// (`history = [TABLE]`): each with its values, when it was current and the run.
    Changes {
        file: PathBuf,
        /// The table.
        #[arg(long)]
        table: String,
        /// Only versions current at or after this time (`2026-11-01`, or a timestamp).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only the versions of this key (a composite key as a JSON array: `[1,"a"]`).
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// Print the notifications the flow's populate steps send after each commit
    /// (`notify = CHANNEL`), one JSON line each, until Ctrl-C.
    Listen {
        file: PathBuf,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// Show one recorded run: each step with its status, time, rows, bytes and error.
    Show {
        file: PathBuf,
        /// A run number, or `latest`.
        run: String,
        #[arg(long)]
        json: bool,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// Run the schedules of flow files as a service, or list them.
    #[command(args_conflicts_with_subcommands = true)]
    Schedule {
        #[command(subcommand)]
        list: Option<ScheduleCommand>,
        /// The flow files whose schedules to run.
        files: Vec<PathBuf>,
        /// How often the service looks at the clock, in milliseconds.
        #[arg(long, default_value_t = 1000, hide = true)]
        tick_ms: u64,
        /// The environment whose flow database keeps the fires (a schedule's
        /// own `env` still picks where its runs go).
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// Serve flows over HTTP and a web page: list them, start, watch and cancel runs,
    /// with API keys (`flow keys`). Binds 127.0.0.1 unless told otherwise.
    Serve {
        /// Flow files, or folders whose `*.flow` files to serve.
        #[arg(required = true, value_name = "FOLDER_OR_FILES")]
        files: Vec<PathBuf>,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS:PORT")]
        bind: std::net::SocketAddr,
        /// The environment runs go to; the first flow's flow database keeps the keys.
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// Also run the flows' schedules in this process (as `flow schedule` does,
        /// with the same leader election).
        #[arg(long)]
        schedule: bool,
        /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of `--tls-cert`.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// API keys for `flow serve`, kept hashed in the flow database's `_flow.keys`.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Show what `pg:target:populate` would change in the API database: each schema
    /// difference, safe, data-dependent (with the rows that would break) or destructive,
    /// and the SQL it would run. Loads in a transaction it rolls back: nothing is written.
    Diff {
        file: PathBuf,
        /// Only this populate step.
        #[arg(long)]
        step: Option<String>,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// Print each populate step's report as JSON (for CI).
        #[arg(long)]
        json: bool,
    },
    /// Put back the tables a `mode = swap` populate replaced last.
    Rollback {
        file: PathBuf,
        /// Only this populate step.
        #[arg(long)]
        step: Option<String>,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// List the operations of the installed plugins and of the `flow-<tool>` executables
    /// in `./plugins/` and on PATH, with their parameters.
    Operations,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct RunArgs {
    /// The environment: its `env NAME { ... }` block applies [env: FLOW_ENV, or ENV]
    #[arg(long = "env", short = 'e', value_name = "NAME")]
    pub env: Option<String>,
    /// Steps running at the same time.
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Run every branch that does not depend on a failed step, instead of stopping at the first failure.
    #[arg(long)]
    pub keep_going: bool,
    /// Connections per database.
    #[arg(
        long,
        default_value_t = 8,
        value_name = "N",
        env = "FLOW_DB_CONNECTIONS"
    )]
    pub db_connections: usize,
    /// Run again what failed or did not run in the last run of this flow.
    #[arg(long, conflicts_with_all = ["groups", "steps", "from", "until", "exclude"])]
    pub resume: bool,
    /// Run steps even when nothing they depend on changed.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// A value steps may use: `sh:run` sees `FLOW_NAME`, SQL sees `current_setting('flow.name')` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Record into the run this key names, made by the first process that
    /// attaches (an orchestrator's run id: each Airflow task of one DAG run
    /// runs its step into one flow run).
    #[arg(long, value_name = "KEY", conflicts_with = "resume")]
    pub attach: Option<String>,
    /// With `--attach`: record the selected steps in the run as pending and
    /// run none (an orchestrator's first task, so that the run is going
    /// until every step of it has ended).
    #[arg(long, requires = "attach")]
    pub register: bool,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("write it as NAME=VALUE")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not a name: letters, digits and `_`"));
    }
    Ok((name.to_ascii_lowercase(), value.to_owned()))
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// An Airflow DAG file: a task per selected step (a task group per flow
    /// group), each running `flow run FILE --step ID --attach RUN`.
    Airflow {
        file: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        /// Where to write the DAG (default: standard output).
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// The environment the tasks run in.
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// The `flow` the tasks run (default: this binary's path; `flow` when
        /// workers have it on PATH).
        #[arg(long, value_name = "PATH")]
        binary: Option<String>,
        /// A task per step, or per flow group (its selected steps in one
        /// `flow run`, in parallel as flow runs them: fewer tasks, less of
        /// Airflow's cost per task, retries of the whole group).
        #[arg(long, value_enum, default_value = "step")]
        per: crate::export::Per,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Start the cluster and keep it up after runs end.
    Up { path: Option<PathBuf> },
    /// Stop the cluster.
    Down { path: Option<PathBuf> },
    /// Whether the cluster exists and runs, and where.
    Status { path: Option<PathBuf> },
    /// The URL of a database of the cluster (the password is in `.flow/pgpass`).
    Url {
        path: Option<PathBuf>,
        #[arg(long, default_value = "flow")]
        database: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Each schedule with its last fire and result, and its next fire.
    List {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// Print the jobs as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it, once: it is stored only as a hash.
    Create {
        file: PathBuf,
        /// What the key is for (`ci`, `dashboard`): unique among live keys.
        #[arg(long)]
        name: String,
        /// What it may do: `read` (look), `run` (also start and cancel runs), `admin`.
        #[arg(long, default_value = "read", value_parser = ["read", "run", "admin"])]
        scope: String,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
    /// The keys, with scope, creation and last use (never the keys themselves).
    List {
        file: PathBuf,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
        /// Print the keys as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the live key of that name: a running `flow serve` refuses it within a second.
    Revoke {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "env", short = 'e', value_name = "NAME")]
        env: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

/// Which steps to work on.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct SelectArgs {
    /// Steps of this group (repeatable).
    #[arg(long = "group", short = 'g', value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Steps matching this id or glob; `+S` adds its upstream, `S+` its downstream (repeatable).
    #[arg(
        long = "step",
        short = 's',
        value_name = "STEP",
        allow_hyphen_values = true
    )]
    pub steps: Vec<String>,
    /// Keep only this step and what is downstream of it.
    #[arg(long, value_name = "STEP")]
    pub from: Vec<String>,
    /// Keep only this step and what is upstream of it.
    #[arg(long, value_name = "STEP")]
    pub until: Vec<String>,
    /// Leave out steps matching this id or glob (repeatable).
    #[arg(long, value_name = "STEP")]
    pub exclude: Vec<String>,
}

impl SelectArgs {
    pub fn selection(&self) -> flow_engine::Selection {
        flow_engine::Selection {
            groups: self.groups.clone(),
            steps: self.steps.clone(),
            from: self.from.clone(),
            until: self.until.clone(),
            exclude: self.exclude.clone(),
        }
    }
}
