//! `minio:upload`: the files of a local folder to a storage prefix.
//!
//! Keys are the files' paths below the folder. A file whose object is
//! already there with the same size and checksum (the ETag S3 computes: the
//! MD5 of the content, or for a multipart upload the MD5 of its parts' MD5s
//! with the number of parts) is not sent again. Files go in parallel, large
//! ones in 8 MiB parts; S3 shows an object under its key only once all of it
//! arrived, so a failure never leaves a partial object. Every request
//! carries its body's MD5, which the server checks; a multipart object is
//! checked after it arrives (size, number of parts) and removed if it
//! differs. The
//! files named by `last` (`manifest.json` by default) go after every other
//! file arrived, so that a reader who finds the manifest finds the set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::StreamExt as _;
use md5::{Digest as _, Md5};
use tokio::io::AsyncReadExt as _;

use crate::download::{self, Listed, s3_error};
use crate::storage::Storage;
use crate::{FILTER_PARAMS, Filter};

pub struct Upload;

static UPLOAD: OperationSpec = OperationSpec {
    tool: "minio",
    target: Target::None,
    operation: "upload",
    summary: "upload the files of a folder to a storage prefix",
    params: &[
        ParamSpec::required("from", ParamType::Path, "the local folder"),
        ParamSpec::required(
            "to",
            ParamType::Storage,
            "the storage and prefix, like `spaces \"exports/\"`",
        ),
        FILTER_PARAMS[0],
        FILTER_PARAMS[1],
        FILTER_PARAMS[2],
        FILTER_PARAMS[3],
        ParamSpec::optional(
            "delete",
            ParamType::Bool,
            "remove objects under the prefix whose file is gone from the folder (default false: they are reported and kept)",
        ),
        ParamSpec::optional(
            "last",
            ParamType::Strings,
            "file names sent only after every other file arrived (default `[\"manifest.json\"]`)",
        ),
    ],
};

/// The size of a multipart upload's parts: rust-s3's, fixed.
const PART: u64 = s3::bucket::CHUNK_SIZE as u64;

struct Settings {
    from: String,
    storage: String,
    prefix: String,
    filter: Filter,
    delete: bool,
    last: Vec<glob::Pattern>,
}

impl Operation for Upload {
    fn spec(&self) -> &'static OperationSpec {
        &UPLOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let mut problems = Filter::problems(step.params);
        let last: Vec<&str> = if step.params.contains("last") {
            step.params.list("last")
        } else {
            vec!["manifest.json"]
        };
        for glob in &last {
            if let Err(error) = flow_engine::check_glob(glob) {
                problems.push(Problem {
                    param: Some("last"),
                    message: format!("`{glob}` is not a valid glob: {error}"),
                    help: None,
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (storage, prefix) = step.params.path("to").unwrap_or_default();
        let settings = Settings {
            from: step.params.str("from").unwrap_or_default().to_owned(),
            storage: storage.first().copied().unwrap_or_default().to_owned(),
            prefix: prefix.unwrap_or_default().to_owned(),
            filter: Filter::parse(step.params),
            delete: step.params.bool("delete") == Some(true),
            last: last
                .into_iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
        };
        Ok(Prepared::default()
            .reads(Resource::directory(&settings.from))
            .writes(Resource::Objects {
                storage: settings.storage.clone(),
                prefix: settings.prefix.clone(),
            })
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(run(context))
    }
}

inventory::submit!(Registration(&Upload));

/// A file to send: its key below the prefix, where it is, its size.
struct Local {
    key: String,
    path: PathBuf,
    size: u64,
}

async fn run(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let prefix = context.fill(&settings.prefix, &[])?;
    let storage = Arc::new(crate::open_storage(
        context,
        &settings.storage,
        &prefix,
        settings.filter.request_timeout,
    )?);
    let from = context.path(&context.fill(&settings.from, &[])?);
    let files: Vec<Local> = local_files(&from)
        .await?
        .into_iter()
        .filter(|f| settings.filter.wants(&f.key))
        .collect();
    let there: std::collections::HashMap<String, Listed> = download::list(&storage)
        .await
        .or_else(|error| match &*storage {
            // An upload makes its folder.
            Storage::Folder { .. } => Ok(Vec::new()),
            Storage::S3 { .. } => Err(error),
        })?
        .into_iter()
        .filter(|o| settings.filter.wants(&o.key))
        .map(|o| (o.key.clone(), o))
        .collect();
    let is_last = |key: &str| {
        let name = key.rsplit('/').next().unwrap_or(key);
        settings.last.iter().any(|g| g.matches(name))
    };
    let present: std::collections::HashSet<String> = files.iter().map(|f| f.key.clone()).collect();
    let mut gone: Vec<String> = there
        .keys()
        .filter(|key| !present.contains(*key))
        .cloned()
        .collect();
    gone.sort();
    let (last, first): (Vec<Local>, Vec<Local>) = files.into_iter().partition(|f| is_last(&f.key));
    context.progress.units_total.fetch_add(
        (first.len() + last.len()) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let client: Option<Arc<s3::Bucket>> = match &*storage {
        Storage::S3 { .. } => Some(Arc::from(download::bucket(&storage)?)),
        Storage::Folder { .. } => None,
    };
    let jobs = settings.filter.jobs;
    let mut sent = send_all(first, &storage, client.as_deref(), &there, context, jobs).await?;
    if settings.delete {
        remove_gone(&gone, &storage, client.as_deref()).await?;
    }
    let more = send_all(last, &storage, client.as_deref(), &there, context, jobs).await?;
    sent.uploaded += more.uploaded;
    sent.unchanged += more.unchanged;
    sent.bytes += more.bytes;
    let mut note = format!(
        "{} uploaded, {} unchanged, {} bytes to {}",
        sent.uploaded,
        sent.unchanged,
        sent.bytes,
        storage.describe()
    );
    if !gone.is_empty() {
        note.push_str(&crate::gone_note(
            &gone,
            settings.delete,
            "the folder",
            "the storage",
        ));
    }
    Ok(Outcome {
        rows: 0,
        bytes: sent.bytes,
        note: Some(note),
        unchanged: sent.uploaded == 0 && (!settings.delete || gone.is_empty()),
    })
}

/// What a batch of files did.
#[derive(Default)]
struct Sent {
    uploaded: usize,
    unchanged: usize,
    bytes: u64,
}

/// Sends files, `jobs` at a time; the first that fails for good stops the
/// others (S3 drops their unfinished uploads).
async fn send_all(
    files: Vec<Local>,
    storage: &Storage,
    client: Option<&s3::Bucket>,
    there: &std::collections::HashMap<String, Listed>,
    context: &RunContext,
    jobs: usize,
) -> Result<Sent, StepError> {
    let pending: Vec<_> = files
        .iter()
        .map(|file| send(file, storage, client, there.get(&file.key), context))
        .collect();
    let mut results = futures_util::stream::iter(pending).buffer_unordered(jobs);
    let mut sent = Sent::default();
    while let Some(result) = results.next().await {
        match result? {
            Some(bytes) => {
                sent.uploaded += 1;
                sent.bytes += bytes;
            }
            None => sent.unchanged += 1,
        }
        context
            .progress
            .units_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(sent)
}

/// Sends one file unless its object is already there as it is; returns the
/// bytes sent, or `None` when it was there.
async fn send(
    file: &Local,
    storage: &Storage,
    client: Option<&s3::Bucket>,
    there: Option<&Listed>,
    context: &RunContext,
) -> Result<Option<u64>, StepError> {
    match (storage, client) {
        (Storage::S3 { prefix, .. }, Some(bucket)) => {
            // The checksum is worth computing first only when an object of
            // the same size is there to compare with.
            if let Some(object) = there.filter(|o| o.size == file.size)
                && object.etag.eq_ignore_ascii_case(&etag(&file.path).await?)
            {
                return Ok(None);
            }
            let key = format!("{prefix}{}", file.key);
            if file.size < PART {
                put_small(bucket, storage, &key, file).await?;
            } else {
                put_large(bucket, storage, &key, file).await?;
            }
            context.progress.add_bytes(file.size);
            Ok(Some(file.size))
        }
        (Storage::Folder { root, prefix }, _) => {
            let target = root
                .join(prefix)
                .join(crate::storage::local_path(&file.key).unwrap_or_default());
            if there.is_some_and(|o| o.size == file.size)
                && etag(&target).await.ok() == Some(etag(&file.path).await?)
            {
                return Ok(None);
            }
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io_error("create", parent, &e))?;
            }
            let partial = flow_engine::PartialFile::beside(&target);
            let written = tokio::fs::copy(&file.path, partial.path())
                .await
                .map_err(|e| io_error("copy", &file.path, &e))?;
            partial
                .commit()
                .map_err(|e| io_error("write", &target, &e))?;
            context.progress.add_bytes(written);
            Ok(Some(written))
        }
        (Storage::S3 { .. }, None) => Err(StepError::coded(
            "flow::minio::storage",
            "no client for the storage",
            None,
        )),
    }
}

/// A file below one part: read whole and sent in one PUT. rust-s3 sends
/// the body's MD5 (`Content-MD5`), so the server refuses a body that
/// arrives damaged.
async fn put_small(
    bucket: &s3::Bucket,
    storage: &Storage,
    key: &str,
    file: &Local,
) -> Result<(), StepError> {
    let body = tokio::fs::read(&file.path)
        .await
        .map_err(|e| io_error("read", &file.path, &e))?;
    if body.len() as u64 != file.size {
        return Err(changed(&file.path));
    }
    bucket
        .put_object_with_content_type(key, &body, content_type(&file.key))
        .await
        .map_err(|e| s3_error(e, storage, Some(key)))?;
    Ok(())
}

/// A file of one part or more: streamed in 8 MiB parts (each with its
/// `Content-MD5`, checked by the server), then the object's size and number
/// of parts checked.
async fn put_large(
    bucket: &s3::Bucket,
    storage: &Storage,
    key: &str,
    file: &Local,
) -> Result<(), StepError> {
    let mut reader = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| io_error("read", &file.path, &e))?;
    let response = bucket
        .put_object_stream_builder(key)
        .with_content_type(content_type(&file.key))
        .with_max_concurrent_chunks(4)
        .execute_stream(&mut reader)
        .await
        .map_err(|e| s3_error(e, storage, Some(key)))?;
    if response.uploaded_bytes() as u64 != file.size {
        return Err(changed(&file.path));
    }
    let (head, _) = bucket
        .head_object(key)
        .await
        .map_err(|e| s3_error(e, storage, Some(key)))?;
    let arrived = head.content_length.and_then(|n| u64::try_from(n).ok());
    let their = head.e_tag.unwrap_or_default();
    let parts = file.size.div_ceil(PART);
    let counted = their
        .trim_matches('"')
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok());
    if arrived != Some(file.size) || counted.is_some_and(|n| n != parts) {
        let _ = bucket.delete_object(key).await;
        return Err(StepError::coded(
            "flow::minio::damaged",
            format!(
                "`{key}` arrived as {} bytes (ETag {their}); the file has {} bytes in {parts} parts; it was removed",
                arrived.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                file.size
            ),
            None,
        )
        .transient());
    }
    Ok(())
}

/// A file that changed while it was sent.
fn changed(path: &Path) -> StepError {
    StepError::coded(
        "flow::minio::changed",
        format!("`{}` changed while it was uploaded", path.display()),
        Some("run the upload again once what writes the folder is done".into()),
    )
    .transient()
}

/// The ETag S3 gives a file uploaded as `minio:upload` sends it: the MD5 of
/// its content below one part, else the MD5 of its parts' MD5s, `-parts`.
#[derive(Default)]
struct Etag {
    whole: Md5,
    part: Md5,
    in_part: u64,
    parts: Vec<u8>,
    count: u64,
    size: u64,
}

impl Etag {
    fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = usize::try_from((PART - self.in_part).min(bytes.len() as u64))
                .unwrap_or(bytes.len());
            self.part.update(&bytes[..take]);
            self.in_part += take as u64;
            bytes = &bytes[take..];
            if self.in_part == PART {
                self.parts
                    .extend_from_slice(&std::mem::take(&mut self.part).finalize());
                self.count += 1;
                self.in_part = 0;
            }
        }
    }

    fn finish(mut self) -> String {
        let hex = |digest: &[u8]| {
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        if self.size < PART {
            return hex(&self.whole.finalize());
        }
        if self.in_part > 0 {
            self.parts.extend_from_slice(&self.part.finalize());
            self.count += 1;
        }
        format!("{}-{}", hex(&Md5::digest(&self.parts)), self.count)
    }
}

/// A file's ETag, read from disk.
async fn etag(path: &Path) -> Result<String, StepError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error("read", path, &e))?;
    let mut etag = Etag::default();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|e| io_error("read", path, &e))?;
        if read == 0 {
            break;
        }
        etag.update(&buffer[..read]);
    }
    Ok(etag.finish())
}

/// Every file below `from`, keys with `/`, in name order; flow's own
/// bookkeeping (`.flow-manifest.json`, `*.flow-part`) stays home.
async fn local_files(from: &Path) -> Result<Vec<Local>, StepError> {
    if !from.is_dir() {
        return Err(StepError::coded(
            "flow::minio::no_folder",
            format!("folder `{}` does not exist", from.display()),
            Some("paths in a flow are relative to the flow file's folder".into()),
        ));
    }
    let mut found = Vec::new();
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| io_error("list", &dir, &e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("list", &dir, &e))?
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry
                .metadata()
                .await
                .map_err(|e| io_error("read", &path, &e))?;
            if metadata.is_dir() {
                stack.push(path);
            } else if metadata.is_file()
                && name != download::MANIFEST
                && !name.ends_with(".flow-part")
            {
                let key = path
                    .strip_prefix(from)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push(Local {
                    key,
                    path,
                    size: metadata.len(),
                });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Removes the objects whose files are gone (`delete = true`).
async fn remove_gone(
    gone: &[String],
    storage: &Storage,
    client: Option<&s3::Bucket>,
) -> Result<(), StepError> {
    for key in gone {
        match (storage, client) {
            (Storage::S3 { prefix, .. }, Some(bucket)) => {
                let full = format!("{prefix}{key}");
                bucket
                    .delete_object(&full)
                    .await
                    .map_err(|e| s3_error(e, storage, Some(&full)))?;
            }
            (Storage::Folder { root, prefix }, _) => {
                let path = root.join(prefix).join(key);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("remove", &path, &e)),
                }
            }
            (Storage::S3 { .. }, None) => {}
        }
    }
    Ok(())
}

/// The media type an object is served with.
fn content_type(key: &str) -> &'static str {
    match key
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => "text/csv",
        Some("geojson") => "application/geo+json",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

fn io_error(verb: &str, path: &Path, error: &std::io::Error) -> StepError {
    StepError::coded(
        "flow::minio::read",
        format!("cannot {verb} `{}`: {error}", path.display()),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::{PART, etag};

    #[tokio::test]
    async fn etags_follow_s3s_rules() {
        let dir = std::env::temp_dir().join(format!("flow-etag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let small = dir.join("small");
        std::fs::write(&small, b"hello").expect("write");
        assert_eq!(
            etag(&small).await.expect("etag"),
            "5d41402abc4b2a76b9719d911017c592"
        );
        // Two parts and a bit: the MD5 of the three parts' MD5s, `-3`.
        let large = dir.join("large");
        let size = usize::try_from(2 * PART + 10).expect("size");
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&large, &bytes).expect("write");
        let part = usize::try_from(PART).expect("part");
        let mut digests = Vec::new();
        for chunk in bytes.chunks(part) {
            digests.extend_from_slice(&<md5::Md5 as md5::Digest>::digest(chunk));
        }
        let expected: String = <md5::Md5 as md5::Digest>::digest(&digests)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(etag(&large).await.expect("etag"), format!("{expected}-3"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
