//! A flow file as the engine runs it: its compiled pipeline and the folder
//! its relative paths start from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env_files::{environment_name, load_env_files};
use crate::environment::{Environment, EnvironmentError};
use crate::pipeline::Pipeline;

/// A compiled flow and where it lives.
pub struct FlowFile {
    /// The path it was read from, as given.
    pub file: PathBuf,
    /// The flow file's folder: the flow's relative paths start here, and its
    /// state (`.flow/`) lives here.
    pub base: PathBuf,
    pub pipeline: Arc<Pipeline>,
}

impl FlowFile {
    pub fn new(file: &Path, pipeline: Pipeline) -> Self {
        Self {
            file: file.to_path_buf(),
            base: base_dir(file),
            pipeline: Arc::new(pipeline),
        }
    }

    /// Loads the files of the environment `flag` names (`.env.NAME`, `.env`,
    /// `CONFIG_PATH`) into the process environment, without overriding what
    /// is set. Call it before any thread starts: nothing writes to the
    /// process environment once a run or a service is going.
    pub fn load_env_files(&self, flag: Option<&str>) -> Result<(), EnvironmentError> {
        load_env_files(&self.base, &environment_name(flag))
    }

    /// The connections of the environment `flag` names, read from the
    /// process environment as it is (see [`FlowFile::load_env_files`]).
    pub fn environment(&self, flag: Option<&str>) -> Result<Environment, EnvironmentError> {
        Environment::resolve(&self.pipeline, &environment_name(flag))
    }

    /// The environment `flag` names and its connections, passwords hidden,
    /// to show (`flow plan`, `flow serve`); a variable that is not set shows
    /// as an `error` entry instead of failing.
    pub fn connections(&self, flag: Option<&str>) -> Connections {
        match self.environment(flag) {
            Ok(environment) => Connections {
                environment: environment.name,
                databases: environment
                    .databases
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
                storages: environment
                    .storages
                    .iter()
                    .map(|(k, v)| (k.clone(), flow_db::redact(v)))
                    .collect(),
            },
            Err(error) => Connections {
                environment: environment_name(flag),
                databases: BTreeMap::from([("error".to_owned(), error.to_string())]),
                storages: BTreeMap::new(),
            },
        }
    }
}

/// An environment's connections as shown: passwords hidden.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connections {
    pub environment: String,
    pub databases: BTreeMap<String, String>,
    pub storages: BTreeMap<String, String>,
}

/// The directory a flow's relative paths start from: the flow file's.
pub fn base_dir(file: &Path) -> PathBuf {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf())
}
