//! Operations of executables named `flow-<tool>`, in any language, found in
//! a `plugins/` folder beside the flow file or on `PATH` (see `PLUGINS.md`).
//! `flow-<tool> describe` prints the tool's operations as JSON; they join
//! the registry for the flow that uses the tool, so `flow check`, `flow plan`
//! and the DAG treat them like built-in ones. `flow-<tool> run` does one
//! step: a JSON request on stdin, JSON lines on stdout.

mod describe;
mod run;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flow_engine::{Operation, Registry};

pub use describe::{DescribeError, PROTOCOL};

/// Where `flow-<tool>` is: `plugins/` beside the flow first, then `PATH`.
pub fn find(base: &Path, tool: &str) -> Option<PathBuf> {
    let name = format!("flow-{tool}");
    let beside = base.join("plugins").join(&name);
    if is_executable(&beside) {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&name))
            .find(|candidate| is_executable(candidate))
    })
}

/// The tools of every `flow-<tool>` executable in `plugins/` under `base`
/// and on `PATH`.
pub fn tools(base: &Path) -> BTreeSet<String> {
    let mut dirs = vec![base.join("plugins")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| is_executable(&entry.path()))
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("flow-")
                .filter(|tool| !tool.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `registry` with the operations of the `tools` it does not know that have
/// a `flow-<tool>` executable; what went wrong with the others, by tool.
pub fn extend(
    registry: &Registry,
    base: &Path,
    tools: &BTreeSet<String>,
) -> (Registry, Vec<DescribeError>) {
    let mut added: Vec<&'static dyn Operation> = Vec::new();
    let mut errors = Vec::new();
    for tool in tools.iter().filter(|t| !registry.has_tool(t)) {
        let Some(executable) = find(base, tool) else {
            continue;
        };
        match describe::describe(&executable, tool, base) {
            Ok(operations) => added.extend(operations),
            Err(error) => errors.push(error),
        }
    }
    if added.is_empty() {
        return (registry.clone(), errors);
    }
    (registry.with(added), errors)
}
