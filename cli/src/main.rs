//! The `flow` command. It assembles the plugins, parses the command line, and
//! owns what reaches the terminal: diagnostics, plans and exit codes.

// The plugins register their operations when linked; naming them links them.
use flow_plugin_drizzle as _;
use flow_plugin_minio as _;
use flow_plugin_pg as _;
use flow_plugin_sh as _;
use flow_plugin_shp as _;
use flow_plugin_sql as _;

mod args;
mod cli_error;
mod commands;
mod db;
mod display;
mod exit;
mod history;
mod load;
mod output;
mod populate;
mod run;
mod schedule;
mod session;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    if let Some(code) = flow_plugin_sh::supervisor::install() {
        return code;
    }
    output::install_report_handler();
    let args = args::Args::parse();
    let code = commands::run(args);
    ExitCode::from(code as u8)
}
