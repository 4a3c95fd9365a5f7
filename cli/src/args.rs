use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "flow",
    version,
    about = "A declarative data-flow engine for PostGIS pipelines",
    max_term_width = 100
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check flow files without running anything: syntax, operations, parameters, references, cycles.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what would run, in what order, what can run at the same time, and why.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
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
    /// List the operations of the installed plugins and their parameters.
    Operations,
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
