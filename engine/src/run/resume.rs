//! `--resume`: the steps of a flow's last run that did not succeed.

use std::collections::BTreeMap;

use crate::pipeline::Pipeline;
use crate::records::Records;

/// The steps of the last run that did not succeed; `None` when there is no
/// run, none selected when every step of it succeeded or was skipped.
pub(super) async fn selection(
    pipeline: &Pipeline,
    records: &Records,
) -> Result<Option<Vec<bool>>, flow_db::DbError> {
    let Some((run, steps)) = records.last_run(&pipeline.name).await? else {
        return Ok(None);
    };
    let done: BTreeMap<&str, &str> = steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    let again: Vec<&String> = run
        .selected
        .iter()
        .filter(|id| !matches!(done.get(id.as_str()), Some(&"succeeded" | &"skipped")))
        .collect();
    Ok(Some(
        pipeline
            .steps
            .iter()
            .map(|step| again.iter().any(|id| **id == step.id.to_string()))
            .collect(),
    ))
}
