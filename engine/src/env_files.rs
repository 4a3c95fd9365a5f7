//! Which environment a run is in, and the files that set its variables.

use std::path::Path;

use crate::EnvironmentError;

/// The environment name a run uses, from the command line or the process's
/// environment.
pub fn environment_name(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("FLOW_ENV").ok().filter(|v| !v.is_empty()))
        .or_else(|| std::env::var("ENV").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "default".to_owned())
}

/// Loads `.env.NAME`, `.env` and `CONFIG_PATH` into the process environment,
/// never overriding what is already set.
pub fn load_env_files(base: &Path, name: &str) -> Result<(), EnvironmentError> {
    for file in [base.join(format!(".env.{name}")), base.join(".env")] {
        if file.is_file() {
            dotenvy::from_path(&file).map_err(|e| EnvironmentError::Config {
                path: file.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    if let Some(path) = std::env::var_os("CONFIG_PATH") {
        dotenvy::from_path(&path).map_err(|e| EnvironmentError::Config {
            path: Path::new(&path).display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
