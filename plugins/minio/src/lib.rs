//! `minio:download`: every object under a storage prefix into a local folder.

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

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
            "downloads at the same time (default 8)",
        ),
    ],
};

impl Operation for Download {
    fn spec(&self) -> &'static OperationSpec {
        &DOWNLOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let mut problems = Vec::new();
        for key in ["include", "exclude"] {
            for glob in step.params.list(key) {
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
        if step.params.count("jobs") == Some(0) {
            problems.push(Problem {
                param: Some("jobs"),
                message: "`jobs` must be at least 1".into(),
                help: None,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (storage, prefix) = step.params.path("from").unwrap_or_default();
        let to = step.params.str("to").unwrap_or_default();
        Ok(Prepared::default()
            .reads(Resource::Objects {
                storage: storage.first().copied().unwrap_or_default().to_owned(),
                prefix: prefix.unwrap_or_default().to_owned(),
            })
            .writes(Resource::directory(to)))
    }
}

inventory::submit!(Registration(&Download));
