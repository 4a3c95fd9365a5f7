//! Where objects come from: `s3://bucket/prefix?endpoint=...&region=...` or a
//! local folder `file://path`.
//!
//! Credentials for S3 come from the URL's user and password, else from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else from the names
//! DigitalOcean Spaces users set (`SPACES_KEY`/`SPACES_SECRET`, or
//! `SPACES_ACCESS_KEY_ID`/`SPACES_SECRET_ACCESS_KEY`). With a custom endpoint,
//! addressing is path-style (`endpoint/bucket/key`, what MinIO and SeaweedFS
//! serve) unless `path_style=false`; without one it is AWS's virtual-host style.

use std::path::{Path, PathBuf};

use flow_engine::StepError;

#[derive(Debug, Clone)]
pub enum Storage {
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
        access_key: Option<String>,
        secret_key: Option<String>,
        /// How long one request may take, connecting included.
        timeout: std::time::Duration,
    },
    Folder {
        root: PathBuf,
        prefix: String,
    },
}

impl Storage {
    /// Reads a storage URL; `base` resolves relative folders; `extra` is the
    /// step's path inside the storage.
    pub fn parse(text: &str, base: &Path, extra: &str) -> Result<Self, StepError> {
        let join = |prefix: &str| {
            let mut joined = prefix.trim_start_matches('/').to_owned();
            if !joined.is_empty() && !joined.ends_with('/') && !extra.is_empty() {
                joined.push('/');
            }
            joined.push_str(extra.trim_start_matches('/'));
            joined
        };
        if let Some(path) = text.strip_prefix("file://") {
            let root = lexical(&base.join(path));
            return Ok(Storage::Folder {
                root,
                prefix: join(""),
            });
        }
        let invalid = |reason: &str| {
            StepError::coded(
"flow::minio::storage",
                format!("`{}` is not a storage: {reason}", flow_engine::flow_db::redact(text)),
                Some("a storage is `s3://bucket/prefix?endpoint=https://host&region=name` or `file://folder`".into()),
            )
        };
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(invalid("the scheme is neither s3 nor file"));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("it names no bucket"))?
            .to_owned();
        let mut endpoint = None;
        let mut region = None;
        let mut path_style = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "endpoint" => endpoint = Some(value.trim_end_matches('/').to_owned()),
                "region" => region = Some(value.into_owned()),
                "path_style" => path_style = Some(value != "false"),
                other => return Err(invalid(&format!("unknown option `{other}`"))),
            }
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let user = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        let access_key = user
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .or_else(|| env("SPACES_KEY"))
            .or_else(|| env("SPACES_ACCESS_KEY_ID"));
        let secret_key = password
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
            .or_else(|| env("SPACES_SECRET"))
            .or_else(|| env("SPACES_SECRET_ACCESS_KEY"));
        // A prefix names a folder: `shapefiles` lists `shapefiles/...`, never
        // `shapefiles-old/...`, and no key below it starts with `/`.
        let mut prefix = join(url.path());
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Storage::S3 {
            bucket,
            prefix,
            path_style: path_style.unwrap_or(endpoint.is_some()),
            region: region
                .or_else(|| env("AWS_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            access_key,
            secret_key,
            timeout: std::time::Duration::from_secs(30),
        })
    }

    /// Where it is, for messages; never with credentials.
    pub fn describe(&self) -> String {
        match self {
            Storage::S3 {
                bucket, endpoint, ..
            } => match endpoint {
                Some(endpoint) => format!("bucket `{bucket}` at {endpoint}"),
                None => format!("bucket `{bucket}`"),
            },
            Storage::Folder { root, .. } => format!("folder `{}`", root.display()),
        }
    }
}

/// `path` with `.` and `name/..` taken out, without looking at the disk:
/// `flows/../fixtures/spaces` is `fixtures/spaces`.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The local path of an object's key below the download folder, or why the
/// key has none: a key that is empty, absolute, has `.` or `..` or empty
/// segments, backslashes, NUL or a drive letter could land outside the
/// folder or on another key's file, so it is refused, never cleaned up.
pub fn local_path(key: &str) -> Result<PathBuf, &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.starts_with('/') {
        return Err("it is an absolute path");
    }
    if key.contains('\\') {
        return Err("it holds a backslash");
    }
    if key.contains('\0') {
        return Err("it holds a NUL character");
    }
    let mut path = PathBuf::new();
    for (index, segment) in key.split('/').enumerate() {
        match segment {
            "" => return Err("it has an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return Err("it has a `.` or `..` segment"),
            _ if index == 0 && segment.len() == 2 && segment.ends_with(':') => {
                return Err("it starts with a drive letter");
            }
            _ => path.push(segment),
        }
    }
    Ok(path)
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths_inside_the_folder_or_are_refused() {
        assert_eq!(local_path("a/b.shp"), Ok(PathBuf::from("a/b.shp")));
        assert_eq!(
            local_path("dots...in.name"),
            Ok(PathBuf::from("dots...in.name"))
        );
        for bad in [
            "",
            "/etc/x",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "C:/x",
            "x\0y",
        ] {
            assert!(local_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folder_paths_are_shown_without_dot_dot() {
        assert_eq!(
            lexical(Path::new("flows/../fixtures/./spaces")),
            PathBuf::from("fixtures/spaces")
        );
        assert_eq!(lexical(Path::new("../up")), PathBuf::from("../up"));
    }

    #[test]
    fn a_prefix_is_a_folder() {
        let storage = Storage::parse("s3://data/shapefiles?endpoint=http://h", Path::new("/"), "")
            .expect("storage");
        let Storage::S3 { prefix, .. } = storage else {
            panic!("s3");
        };
        assert_eq!(prefix, "shapefiles/");
        let storage = Storage::parse("s3://data?endpoint=http://h", Path::new("/"), "shapefiles")
            .expect("storage");
        let Storage::S3 { prefix, .. } = storage else {
            panic!("s3");
        };
        assert_eq!(prefix, "shapefiles/");
    }

    #[test]
    fn s3_urls_carry_endpoint_region_and_addressing() {
        let storage = Storage::parse(
            "s3://data/shp?endpoint=http://127.0.0.1:9000/&region=fra1",
            Path::new("/"),
            "parcels/",
        )
        .expect("valid");
        let Storage::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            ..
        } = storage
        else {
            panic!("s3")
        };
        assert_eq!((bucket.as_str(), prefix.as_str()), ("data", "shp/parcels/"));
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(region, "fra1");
        assert!(path_style);
        let Storage::S3 {
            path_style,
            access_key,
            secret_key,
            ..
        } = Storage::parse(
            "s3://KEY:se%2Fcret@data?endpoint=https://x&path_style=false",
            Path::new("/"),
            "",
        )
        .expect("valid")
        else {
            panic!("s3")
        };
        assert!(!path_style);
        assert_eq!(
            (access_key.as_deref(), secret_key.as_deref()),
            (Some("KEY"), Some("se/cret"))
        );
    }

    #[test]
    fn folders_are_relative_to_the_flow() {
        let Storage::Folder { root, prefix } =
            Storage::parse("file://../fixtures", Path::new("/flows"), "shp/").expect("valid")
        else {
            panic!("folder")
        };
        assert_eq!(root, Path::new("/fixtures"));
        assert_eq!(prefix, "shp/");
    }

    #[test]
    fn errors_hide_secrets() {
        let error = Storage::parse("s3://KEY:topsecret@data?colour=blue", Path::new("/"), "")
            .expect_err("invalid");
        assert!(!error.report.to_string().contains("topsecret"));
    }
}
