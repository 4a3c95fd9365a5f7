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
