//! Listing and downloading, from S3 or a folder, into a local folder.

use std::collections::BTreeMap;
use std::path::Path;

use flow_engine::{RunContext, StepError};
use futures_util::StreamExt as _;
use md5::{Digest as _, Md5};
use s3::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::storage::Storage;

/// An object as listed: its key below the prefix, size and ETag (for a
/// folder, size and modification time stand in for the ETag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// What was downloaded before, by key: kept in `<to>/.flow-manifest.json`.
pub type Manifest = BTreeMap<String, Listed>;

pub const MANIFEST: &str = ".flow-manifest.json";

pub fn bucket(storage: &Storage) -> Result<Box<Bucket>, StepError> {
    let Storage::S3 {
        bucket,
        endpoint,
        region,
        path_style,
        access_key,
        secret_key,
        timeout,
        ..
    } = storage
    else {
        return Err(StepError::coded(
            "flow::minio::storage",
            "not an S3 storage",
            None,
        ));
    };
    let region = match endpoint {
        Some(endpoint) => s3::Region::Custom {
            region: region.clone(),
            endpoint: endpoint.clone(),
        },
        None => region.parse().map_err(|e| {
            StepError::coded(
                "flow::minio::storage",
                format!("unknown region `{region}`: {e}"),
                None,
            )
        })?,
    };
    let credentials = match (access_key, secret_key) {
        (Some(access), Some(secret)) => {
            Credentials::new(Some(access), Some(secret), None, None, None)
        }
        _ => Credentials::anonymous(),
    }
    .map_err(|e| {
        StepError::coded(
            "flow::minio::storage",
            format!("cannot use the storage's credentials: {e}"),
            None,
        )
    })?;
    let bucket = Bucket::new(bucket, region, credentials)
        .map_err(|e| StepError::coded("flow::minio::download", e.to_string(), None))?;
    let bucket = if *path_style {
        bucket.with_path_style()
    } else {
        bucket
    };
    // One retry layer: the step's (printed, with backoff); none in the
    // S3 client.
    s3::set_retries(0);
    bucket
        .with_request_timeout(*timeout)
        .map_err(|e| StepError::coded("flow::minio::download", e.to_string(), None))
}

/// Every object under the storage's prefix, keys relative to it.
pub async fn list(storage: &Storage) -> Result<Vec<Listed>, StepError> {
    match storage {
        Storage::S3 { prefix, .. } => {
            let bucket = bucket(storage)?;
            // `list` follows continuation tokens until the listing ends.
            let pages = bucket
                .list(prefix.clone(), None)
                .await
                .map_err(|e| s3_error(e, storage, None))?;
            Ok(pages
                .into_iter()
                .flat_map(|page| page.contents)
                .filter(|object| !object.key.ends_with('/'))
                .map(|object| Listed {
                    key: object
                        .key
                        .strip_prefix(prefix.as_str())
                        .unwrap_or(&object.key)
                        .to_owned(),
                    size: object.size,
                    etag: object
                        .e_tag
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                })
                .collect())
        }
        Storage::Folder { root, prefix } => {
            let start = root.join(prefix);
            if !start.exists() {
                return Err(StepError::coded(
                    "flow::minio::no_folder",
                    format!("folder `{}` does not exist", start.display()),
                    Some("paths in a flow are relative to the flow file's folder".into()),
                ));
            }
            let mut found = Vec::new();
            let mut stack = vec![start.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| {
                    StepError::coded(
                        "flow::minio::list",
                        format!("cannot list `{}`: {e}", dir.display()),
                        None,
                    )
                })?;
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let path = entry.path();
                    let Ok(metadata) = entry.metadata().await else {
                        continue;
                    };
                    if metadata.is_dir() {
                        stack.push(path);
                    } else if metadata.is_file() {
                        let modified = metadata
                            .modified()
                            .ok()
                            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos());
                        let key = path
                            .strip_prefix(&start)
                            .unwrap_or(&path)
                            .to_string_lossy()
                            .into_owned();
                        found.push(Listed {
                            key,
                            size: metadata.len(),
                            etag: format!("{}-{modified}", metadata.len()),
                        });
                    }
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(found)
        }
    }
}

/// Downloads one object to `target`, verified, under a temporary name first.
/// `client` is the storage's S3 client, made once for the step so that its
/// connections are kept and reused from object to object.
pub async fn fetch(
    storage: &Storage,
    client: Option<&Bucket>,
    object: &Listed,
    target: &Path,
    context: &RunContext,
) -> Result<u64, StepError> {
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error("create", parent, &e))?;
    }
    let partial = flow_engine::PartialFile::beside(target);
    let written = match storage {
        Storage::Folder { root, prefix } => {
            let source = root.join(prefix).join(&object.key);
            tokio::fs::copy(&source, partial.path())
                .await
                .map_err(|e| io_error("copy", &source, &e))?
        }
        Storage::S3 { prefix, .. } => {
            let key = format!("{prefix}{}", object.key);
            let made;
            let bucket = match client {
                Some(client) => client,
                None => {
                    made = bucket(storage)?;
                    &made
                }
            };
            let mut response = bucket
                .get_object_stream(&key)
                .await
                .map_err(|e| s3_error(e, storage, Some(&key)))?;
            let mut file = tokio::fs::File::create(partial.path())
                .await
                .map_err(|e| io_error("write", partial.path(), &e))?;
            let mut md5 = Md5::new();
            let mut written = 0u64;
            while let Some(chunk) = response.bytes().next().await {
                let chunk = chunk.map_err(|e| s3_error(e, storage, Some(&key)))?;
                md5.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("write", partial.path(), &e))?;
                written += chunk.len() as u64;
                context.progress.add_bytes(chunk.len() as u64);
            }
            file.sync_all()
                .await
                .map_err(|e| io_error("write", partial.path(), &e))?;
            // A single-part upload's ETag is the MD5 of its content.
            let etag = object.etag.to_ascii_lowercase();
            if etag.len() == 32 && etag.chars().all(|c| c.is_ascii_hexdigit()) {
                let digest: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
                if digest != etag {
                    return Err(StepError::coded(
                        "flow::minio::damaged",
                        format!(
                            "`{key}` arrived damaged: its MD5 is {digest}, its ETag says {etag}"
                        ),
                        None,
                    )
                    .transient());
                }
            }
            written
        }
    };
    if written != object.size {
        return Err(StepError::coded(
            "flow::minio::truncated",
            format!(
                "`{}` arrived with {written} bytes of {}",
                object.key, object.size
            ),
            None,
        )
        .transient());
    }
    partial
        .commit()
        .map_err(|e| io_error("write", target, &e))?;
    Ok(written)
}

/// A file that cannot be made or written.
fn io_error(verb: &str, path: &Path, error: &std::io::Error) -> StepError {
    StepError::coded(
        "flow::minio::write",
        format!("cannot {verb} `{}`: {error}", path.display()),
        None,
    )
}

/// A storage error as a diagnostic: transient when retrying may help, and
/// naming the bucket, key and endpoint, never the credentials.
pub fn s3_error(error: S3Error, storage: &Storage, key: Option<&str>) -> StepError {
    let place = match key {
        Some(key) => format!("`{key}` in {}", storage.describe()),
        None => storage.describe(),
    };
    match error {
        S3Error::HttpFailWithBody(status, body) => {
            let code = body
                .split("<Code>")
                .nth(1)
                .and_then(|rest| rest.split("</Code>").next())
                .unwrap_or("")
                .to_owned();
            let (kind, message, help) = match status {
                403 => (
                    "flow::minio::access_denied",
                    format!("access denied to {place} (HTTP 403 {code})"),
                    Some("check the storage's credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or SPACES_KEY and SPACES_SECRET) and the bucket's policy".to_owned()),
                ),
                404 if code == "NoSuchBucket" || key.is_none() => (
                    "flow::minio::no_bucket",
                    format!("{} does not exist (HTTP 404 {code})", storage.describe()),
                    Some("check the bucket's name and the endpoint".to_owned()),
                ),
                404 => (
                    "flow::minio::not_found",
                    format!("{place} does not exist (HTTP 404 {code})"),
                    None,
                ),
                status => (
                    "flow::minio::http",
                    format!("{place} failed with HTTP {status} {code}"),
                    None,
                ),
            };
            let error = StepError::coded(kind, message, help);
            if status >= 500 || status == 429 {
                error.transient()
            } else {
                error
            }
        }
        S3Error::Reqwest(error) if error.is_timeout() => {
            let limit = match storage {
                Storage::S3 { timeout, .. } => format!("{}s", timeout.as_secs_f64()),
                Storage::Folder { .. } => "its time".into(),
            };
            StepError::coded(
                "flow::minio::timeout",
                format!("{place} did not answer within {limit}"),
                Some("`request_timeout` on the step sets how long one request may take".into()),
            )
            .transient()
        }
        S3Error::Reqwest(error) => StepError::coded(
            "flow::minio::unreachable",
            format!("cannot reach {place}: {error}"),
            None,
        )
        .transient(),
        S3Error::Io(error) => StepError::coded(
            "flow::minio::download",
            format!("reading {place} failed: {error}"),
            None,
        )
        .transient(),
        other => StepError::coded("flow::minio::download", format!("{place}: {other}"), None),
    }
}
