//! The `flow` command. It assembles the plugins, parses the command line, and
//! owns what reaches the terminal: diagnostics, plans and exit codes.

mod args;
mod changes;
mod check;
mod cli_error;
mod commands;
mod db;
mod diff;
mod display;
mod exit;
mod export;
mod fmt;
mod history;
mod init;
mod keys;
mod load;
mod output;
mod plan;
mod rollback;
mod run;
mod schedule;
mod serve;

use std::process::ExitCode;

/// mimalloc: compiling and planning a large flow allocates many small
/// values, and the system allocator made that twice as slow
/// (`cargo bench -p flow-benches --bench compile`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;

fn main() -> ExitCode {
    // The plugins are linked (and their operations registered) through
    // `flow_plugins`; a plugin's startup hook may take the process over.
    let registry = flow_plugins::registry();
    if let Some(code) = flow_engine::startup() {
        return code;
    }
    output::install_report_handler();
    let args = args::Args::parse();
    install_tracing(args.verbose, args.log_level.as_deref());
    let code = commands::run(args, &registry);
    ExitCode::from(code as u8)
}

/// Prints the events of every crate at the level asked for (`-v`,
/// `--log-level`, else `RUST_LOG`, else flow's warnings) on stderr.
fn install_tracing(verbose: u8, level: Option<&str>) {
    let filter = match (level, verbose) {
        (Some(level), _) => level.to_owned(),
        // Without a flag, flow's own warnings; other crates' only errors
        // (the pool warns about every connection a stopping cluster drops).
        (None, 0) => std::env::var("RUST_LOG").unwrap_or_else(|_| "error,flow=warn".into()),
        (None, 1) => "info".into(),
        (None, 2) => "debug".into(),
        (None, _) => "trace".into(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .without_time()
        .try_init();
}
