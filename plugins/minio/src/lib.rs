//! The `minio` tool: S3-compatible storage (or a local folder standing in
//! for one). `minio:upload` is described in its module.
//!
//! `minio:download`: every object under a storage prefix into a local folder.
//!
//! Keys keep their path below the prefix. Objects download in parallel (at
//! most `jobs`), stream to a temporary name, and are renamed once their size
//! and, for single-part objects, their MD5 match what the listing said. A
//! manifest in the target folder remembers each object's ETag and size, so
//! that an unchanged object is not downloaded again. Transient failures
//! (timeouts, 5xx, dropped connections) are retried with backoff; a 403 or
//! 404 fails at once.

mod download;
mod storage;
mod upload;

use std::path::Path;
use std::sync::Arc;

use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
    write_atomically,
};
use futures_util::StreamExt as _;
use tokio::sync::Semaphore;

use crate::download::{Listed, MANIFEST, Manifest};
use crate::storage::Storage;

pub struct Download;

static DOWNLOAD: OperationSpec = OperationSpec {
    tool: "minio",
    target: Target::None,
    operation: "download",
    summary: "download the objects under a storage prefix into a folder",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Storage,
            "the storage and prefix, like `spaces \"shapefiles/\"`",
        ),
        ParamSpec::required("to", ParamType::Path, "the local folder"),
        FILTER_PARAMS[0],
        FILTER_PARAMS[1],
        FILTER_PARAMS[2],
        FILTER_PARAMS[3],
        ParamSpec::optional(
            "delete",
            ParamType::Bool,
            "remove the files of objects deleted from the storage since they were downloaded (default false: they are reported and kept)",
        ),
    ],
};

impl Operation for Download {
    fn spec(&self) -> &'static OperationSpec {
        &DOWNLOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let problems = Filter::problems(step.params);
        if !problems.is_empty() {
            return Err(problems);
        }
        let settings = Settings::parse(step.params);
        Ok(Prepared::default()
            .reads(Resource::Objects {
                storage: settings.storage.clone(),
                prefix: settings.prefix.clone(),
            })
            .writes(Resource::directory(&settings.to))
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(run(context))
    }
}

/// A download's parameters, with their defaults.
struct Settings {
    /// The storage and the prefix under it (`from = bucket "shp/"`).
    storage: String,
    prefix: String,
    to: String,
    filter: Filter,
    /// Remove the files of objects the storage no longer holds.
    delete: bool,
}

impl Settings {
    fn parse(params: &flow_engine::Params) -> Self {
        let (storage, prefix) = params.path("from").unwrap_or_default();
        Self {
            storage: storage.first().copied().unwrap_or_default().to_owned(),
            prefix: prefix.unwrap_or_default().to_owned(),
            to: params.str("to").unwrap_or_default().to_owned(),
            filter: Filter::parse(params),
            delete: params.bool("delete") == Some(true),
        }
    }
}

/// The parameters downloads and uploads share: which keys, how many at a
/// time, how long a request may take.
const FILTER_PARAMS: [ParamSpec; 4] = [
    ParamSpec::optional(
        "include",
        ParamType::Strings,
        "only keys matching one of these globs",
    ),
    ParamSpec::optional(
        "exclude",
        ParamType::Strings,
        "no keys matching one of these globs",
    ),
    ParamSpec::optional(
        "jobs",
        ParamType::Count,
        "objects sent or fetched at the same time (default 8)",
    ),
    ParamSpec::optional(
        "request_timeout",
        ParamType::Duration,
        "how long one request to the storage may take, connecting included (default 30s)",
    ),
];

/// [`FILTER_PARAMS`] as read.
struct Filter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    jobs: usize,
    request_timeout: Option<std::time::Duration>,
}

impl Filter {
    fn parse(params: &flow_engine::Params) -> Self {
        let globs = |key: &str| -> Vec<glob::Pattern> {
            params
                .list(key)
                .into_iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect()
        };
        Self {
            include: globs("include"),
            exclude: globs("exclude"),
            jobs: usize::try_from(params.count("jobs").unwrap_or(8).max(1)).unwrap_or(8),
            request_timeout: params.duration("request_timeout"),
        }
    }

    /// Globs that do not parse, and a `jobs` of 0.
    fn problems(params: &flow_engine::Params) -> Vec<Problem> {
        let mut problems = Vec::new();
        for key in ["include", "exclude"] {
            for glob in params.list(key) {
                if let Err(error) = flow_engine::check_glob(glob) {
                    problems.push(Problem {
                        param: Some(if key == "include" {
                            "include"
                        } else {
                            "exclude"
                        }),
                        message: format!("`{glob}` is not a valid glob: {error}"),
                        help: None,
                    });
                }
            }
        }
        if params.count("jobs") == Some(0) {
            problems.push(Problem {
                param: Some("jobs"),
                message: "`jobs` must be at least 1".into(),
                help: None,
            });
        }
        problems
    }

    /// Whether a key (below the prefix) is one the step works on.
    fn wants(&self, key: &str) -> bool {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        (self.include.is_empty() || self.include.iter().any(|g| g.matches_with(key, options)))
            && !self.exclude.iter().any(|g| g.matches_with(key, options))
    }
}

/// The storage a step names, with the step's prefix and request timeout.
fn open_storage(
    context: &RunContext,
    name: &str,
    prefix: &str,
    timeout: Option<std::time::Duration>,
) -> Result<Storage, StepError> {
    let url = context.storages.get(name).ok_or_else(|| {
        StepError::coded(
            "flow::minio::storage",
            format!("storage `{name}` is not configured"),
            None,
        )
    })?;
    let mut storage = Storage::parse(url, context.base_dir(), prefix)?;
    if let (Storage::S3 { timeout, .. }, Some(limit)) = (&mut storage, timeout) {
        *timeout = limit;
    }
    Ok(storage)
}

async fn run(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let prefix = context.fill(&settings.prefix, &[])?;
    let storage = Arc::new(open_storage(
        context,
        &settings.storage,
        &prefix,
        settings.filter.request_timeout,
    )?);
    let to = context.path(&context.fill(&settings.to, &[])?);
    let wanted = |key: &str| settings.filter.wants(key);
    let listed: Vec<Listed> = download::list(&storage)
        .await?
        .into_iter()
        .filter(|o| wanted(&o.key))
        .collect();

    let manifest_path = to.join(MANIFEST);
    let mut manifest: Manifest = tokio::fs::read(&manifest_path)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    check_keys(&listed, context, &to)?;
    // Objects downloaded before that the storage no longer holds (among the
    // keys this step selects): reported, and removed with `delete = true`,
    // as `rclone sync` would.
    let present: std::collections::HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    let gone: Vec<String> = manifest
        .keys()
        .filter(|key| wanted(key) && !present.contains(key.as_str()))
        .cloned()
        .collect();
    let delete = settings.delete;
    if delete {
        remove_gone(&gone, &mut manifest, context, &to).await?;
    }
    let mut pending = Vec::new();
    let mut skipped = 0usize;
    for object in listed {
        let target = to.join(storage::local_path(&object.key).unwrap_or_default());
        let on_disk = tokio::fs::metadata(&target)
            .await
            .is_ok_and(|m| m.len() == object.size);
        if on_disk && manifest.get(&object.key) == Some(&object) {
            skipped += 1;
        } else {
            pending.push((object, target));
        }
    }
    context
        .progress
        .units_total
        .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let (downloaded, bytes, failure) = fetch_all(pending, &storage, &mut manifest, context).await?;
    // What did arrive is remembered even when something failed, so a rerun
    // fetches only the rest.
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_atomically(&manifest_path, &text).await?;
    if let Some(error) = failure {
        return Err(error);
    }
    let mut note = format!(
        "{downloaded} downloaded, {skipped} unchanged, {bytes} bytes from {}",
        storage.describe()
    );
    if !gone.is_empty() {
        note.push_str(&gone_note(
            &gone,
            delete,
            "the storage",
            &format!("`{}`", context.relative(&to)),
        ));
    }
    Ok(Outcome {
        rows: 0,
        bytes,
        note: Some(note),
        unchanged: downloaded == 0 && (!delete || gone.is_empty()),
    })
}

inventory::submit!(Registration(&Download));

/// Every key must be a file below the target folder.
fn check_keys(listed: &[Listed], context: &RunContext, to: &Path) -> Result<(), StepError> {
    let refused: Vec<String> = listed
        .iter()
        .filter_map(|o| {
            storage::local_path(&o.key)
                .err()
                .map(|why| format!("`{}` ({why})", o.key))
        })
        .collect();
    if !refused.is_empty() {
        return Err(StepError::coded(
            "flow::minio::download",
            format!(
                "{} key(s) cannot be files below `{}`: {}",
                refused.len(),
                context.relative(to),
                refused.join(", ")
            ),
            Some("rename the objects in the storage, or leave them out with `exclude`".into()),
        ));
    }
    Ok(())
}

/// Removes the files of objects the storage no longer holds (`delete = true`).
async fn remove_gone(
    gone: &[String],
    manifest: &mut Manifest,
    context: &RunContext,
    to: &Path,
) -> Result<(), StepError> {
    for key in gone {
        if let Ok(path) = storage::local_path(key) {
            match tokio::fs::remove_file(to.join(path)).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StepError::coded(
                        "flow::minio::download",
                        format!(
                            "cannot remove `{key}` from `{}`: {error}",
                            context.relative(to)
                        ),
                        None,
                    ));
                }
            }
        }
        manifest.remove(key);
    }
    Ok(())
}

/// Downloads the pending objects, `jobs` at a time; the first that fails for
/// good stops the others (their partial files go with them). Returns how
/// many arrived, their bytes, and the failure; each arrival is in `manifest`.
async fn fetch_all(
    pending: Vec<(Listed, std::path::PathBuf)>,
    storage: &Arc<Storage>,
    manifest: &mut Manifest,
    context: &RunContext,
) -> Result<(usize, u64, Option<StepError>), StepError> {
    let jobs = context.settings::<Settings>()?.filter.jobs;
    let permits = Arc::new(Semaphore::new(jobs));
    let client: Option<Arc<s3::Bucket>> = match &**storage {
        Storage::S3 { .. } => Some(Arc::from(download::bucket(storage)?)),
        Storage::Folder { .. } => None,
    };
    let mut tasks = Vec::new();
    for (object, target) in pending {
        let permits = Arc::clone(&permits);
        let storage = Arc::clone(storage);
        let client = client.clone();
        tasks.push(async move {
            let _permit = permits.acquire_owned().await;
            let result =
                download::fetch(&storage, client.as_deref(), &object, &target, context).await;
            (object, result)
        });
    }
    let mut downloaded = 0usize;
    let mut bytes = 0u64;
    let mut failure = None;
    let mut results = futures_util::stream::iter(tasks).buffer_unordered(usize::MAX);
    while let Some((object, result)) = results.next().await {
        match result {
            Ok(written) => {
                downloaded += 1;
                bytes += written;
                context
                    .progress
                    .units_done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                manifest.insert(object.key.clone(), object);
            }
            Err(error) => {
                // The first object that fails for good stops the others;
                // their partial files go with them.
                failure = Some(error);
                break;
            }
        }
    }
    drop(results);
    Ok((downloaded, bytes, failure))
}

/// What the note says of things deleted from `source` but still in `copy`:
/// removed with `delete = true`, else a warning.
fn gone_note(gone: &[String], delete: bool, source: &str, copy: &str) -> String {
    let shown: Vec<String> = gone.iter().take(5).map(|k| format!("`{k}`")).collect();
    let more = if gone.len() > 5 {
        format!(" and {} more", gone.len() - 5)
    } else {
        String::new()
    };
    if delete {
        format!(
            "; {} deleted from {source}, removed from {copy}: {}{more}",
            gone.len(),
            shown.join(", ")
        )
    } else {
        format!(
            "; warning: {} deleted from {source} but still in {copy}: {}{more} (`delete = true` removes them)",
            gone.len(),
            shown.join(", ")
        )
    }
}
