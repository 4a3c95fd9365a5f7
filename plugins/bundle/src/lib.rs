//! The plugins the `flow` binary ships with. A plugin registers its
//! operations (and any startup hook) when it is linked; naming them here
//! links them, so a binary links them all by calling [`registry`].

use flow_engine::Registry;

use flow_plugin_drizzle as _;
use flow_plugin_minio as _;
use flow_plugin_pg as _;
use flow_plugin_sh as _;
use flow_plugin_shp as _;
use flow_plugin_sql as _;

/// Every operation of the plugins shipped with flow.
pub fn registry() -> Registry {
    Registry::installed()
}

pub use flow_plugin_external::DescribeError;

/// `registry` and the operations of `flow-<tool>` executables (in `plugins/`
/// beside the flow, or on `PATH`) for the `tools` a flow uses that it does
/// not know; what went wrong describing the others.
pub fn with_executables(
    registry: &Registry,
    base: &std::path::Path,
    tools: &std::collections::BTreeSet<String>,
) -> (Registry, Vec<DescribeError>) {
    flow_plugin_external::extend(registry, base, tools)
}

/// The tools of every `flow-<tool>` executable in `plugins/` under `base`
/// and on `PATH`.
pub fn executable_tools(base: &std::path::Path) -> std::collections::BTreeSet<String> {
    flow_plugin_external::tools(base)
}
