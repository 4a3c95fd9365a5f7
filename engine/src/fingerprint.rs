//! Fingerprints for skip-unchanged.
//!
//! A step's input fingerprint covers its operation and parameters, the run's
//! values (`--var`), the run's
//! values (`--var`), the
//! connections it uses (passwords left out), the path, size and modification
//! time of every file it reads, and the output fingerprints of the steps it
//! depends on. A step is skipped when its input fingerprint equals that of its
//! last success, it reads nothing that no step of the flow writes (a table
//! filled elsewhere can change unseen), and the files it writes still exist.
//!
//! Its output fingerprint is what its dependents see: unchanged when it was
//! skipped or reported that it changed nothing, new (tied to the run) when it
//! changed something.

use std::collections::HashMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use petgraph::Direction;

use crate::pipeline::{Node, Pipeline, StepIndex};
use crate::records::Success;
use crate::resource::{Access, Resource};

/// Two FNV-1a passes with different offsets: a stable 128-bit digest. Not
/// cryptographic; fingerprints only need to change when their input does.
#[derive(Clone)]
pub struct Digest(u64, u64);

impl Digest {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4)
    }

    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &byte in bytes.iter().chain(&[0xff]) {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            self.1 = (self.1 ^ u64::from(byte))
                .wrapping_mul(0x0000_0100_0000_01b3_u64.rotate_left(7) | 1);
        }
        self
    }

    pub fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.0, self.1)
    }
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

/// The files a glob matches, relative to the flow's directory, and their
/// sidecars, with size and modification time.
///
/// A file's sidecars are the files beside it named after it with another
/// extension (`x.dbf`, `x.prj`, `x.cpg` for `x.shp`; `x.csv.types` for
/// `x.csv`): formats such as shapefiles spread one dataset over several
/// files, and a change to any of them must make the step run again.
fn file_entries(base: &Path, glob: &str) -> Vec<(String, u64, u128)> {
    // `dir/**` (every file under a folder) matches only folders in `glob`.
    let pattern = if glob.ends_with("**") {
        base.join(glob).join("*")
    } else {
        base.join(glob)
    };
    let Ok(paths) = glob::glob(&pattern.to_string_lossy()) else {
        return Vec::new();
    };
    let matched: Vec<std::path::PathBuf> = paths.flatten().collect();
    let mut all: std::collections::BTreeSet<std::path::PathBuf> = matched.iter().cloned().collect();
    let mut stems: HashMap<std::path::PathBuf, Vec<String>> = HashMap::new();
    for path in &matched {
        if let (Some(parent), Some(stem)) = (path.parent(), path.file_stem()) {
            stems
                .entry(parent.to_path_buf())
                .or_default()
                .push(format!("{}.", stem.to_string_lossy()));
        }
    }
    for (dir, prefixes) in &stems {
        let prefixes: std::collections::HashSet<&str> =
            prefixes.iter().map(String::as_str).collect();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sidecar = name
                .match_indices('.')
                .any(|(at, _)| prefixes.contains(&name[..=at]));
            if sidecar {
                all.insert(entry.path());
            }
        }
    }
    let mut entries: Vec<(String, u64, u128)> = all
        .into_iter()
        .filter_map(|path| {
            let metadata = std::fs::metadata(&path).ok()?;
            if !metadata.is_file() {
                return None;
            }
            let modified = metadata
                .modified()
                .ok()?
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos();
            Some((
                path.to_string_lossy().into_owned(),
                metadata.len(),
                modified,
            ))
        })
        .collect();
    entries.sort();
    entries
}

/// Files of one glob named one by one in a fingerprint, at most; past that
/// they count as one part (`files \`glob\``).
const NAMED_FILES: usize = 100;

/// The input fingerprint of a step: its parts by name (parameters, values,
/// each file read, each connection, each upstream step's output), as JSON,
/// so that a change can be named. `outputs` holds the output fingerprints
/// known in this run; steps not run in it fall back to their last success.
pub fn input(
    pipeline: &Pipeline,
    step: StepIndex,
    base: &Path,
    connections: &HashMap<String, String>,
    outputs: &HashMap<StepIndex, String>,
    history: &HashMap<String, Success>,
    vars: &std::collections::BTreeMap<String, String>,
) -> String {
    let node = &pipeline.steps[step];
    let mut parts: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let mut part = |label: String, digest: &Digest| {
        parts.insert(label, digest.hex());
    };
    part(
        "parameters".into(),
        Digest::new().write(node.signature.as_bytes()),
    );
    // A run's values (a scheduled job's item) can change what a step does.
    if !vars.is_empty() {
        let mut digest = Digest::new();
        for (name, value) in vars {
            digest.write(name.as_bytes()).write(value.as_bytes());
        }
        part("values".into(), &digest);
    }
    for (access, resource) in &node.prepared.accesses {
        match resource {
            Resource::File { glob } if *access == Access::Read => {
                files(base, glob, &mut part);
            }
            Resource::Table { database, .. }
            | Resource::Types { database }
            | Resource::Extensions { database } => {
                part(
                    format!("database `{database}`"),
                    Digest::new()
                        .write(connections.get(database).map_or(&[][..], |c| c.as_bytes())),
                );
            }
            Resource::Objects { storage, .. } => {
                part(
                    format!("storage `{storage}`"),
                    Digest::new().write(connections.get(storage).map_or(&[][..], |c| c.as_bytes())),
                );
            }
            Resource::File { .. } => {}
        }
    }
    let mut upstream: Vec<StepIndex> = pipeline
        .graph
        .neighbors_directed(pipeline.node_of(step), Direction::Incoming)
        .filter_map(|n| match pipeline.graph[n] {
            Node::Step(j) => Some(j),
            Node::GroupDone(_) => None,
        })
        .collect();
    upstream.sort_unstable();
    upstream.dedup();
    for j in upstream {
        let output = outputs
            .get(&j)
            .cloned()
            .or_else(|| {
                history
                    .get(&pipeline.steps[j].key)
                    .map(|s| s.output.clone())
            })
            .unwrap_or_default();
        part(
            format!("the output of `{}`", pipeline.steps[j].id),
            Digest::new().write(output.as_bytes()),
        );
    }
    serde_json::to_string(&parts).unwrap_or_default()
}

/// The part of a fingerprint a glob of files makes: each file by name (its
/// length and time), or, past `NAMED_FILES`, all of them as one part.
fn files(base: &Path, glob: &str, part: &mut impl FnMut(String, &Digest)) {
    let files = file_entries(base, glob);
    if files.len() > NAMED_FILES {
        let mut digest = Digest::new();
        for (path, len, modified) in &files {
            digest
                .write(path.as_bytes())
                .write(&len.to_le_bytes())
                .write(&modified.to_le_bytes());
        }
        part(format!("files `{glob}`"), &digest);
        return;
    }
    part(
        format!("files `{glob}`"),
        Digest::new().write(&files.len().to_le_bytes()),
    );
    for (path, len, modified) in &files {
        let shown = Path::new(path)
            .strip_prefix(base)
            .map_or_else(|_| path.clone(), |p| p.display().to_string());
        part(
            format!("file `{shown}`"),
            Digest::new()
                .write(&len.to_le_bytes())
                .write(&modified.to_le_bytes()),
        );
    }
}

/// What differs between two input fingerprints, by name: the parts added,
/// removed or changed. Empty when either is not a fingerprint of parts.
pub fn changed(previous: &str, current: &str) -> Vec<String> {
    type Parts = std::collections::BTreeMap<String, String>;
    let (Ok(before), Ok(now)) = (
        serde_json::from_str::<Parts>(previous),
        serde_json::from_str::<Parts>(current),
    ) else {
        return Vec::new();
    };
    let mut labels: Vec<String> = now
        .iter()
        .filter(|(label, digest)| before.get(*label) != Some(digest))
        .map(|(label, _)| label.clone())
        .collect();
    labels.extend(
        before
            .keys()
            .filter(|label| !now.contains_key(*label))
            .map(|label| format!("{label} (gone)")),
    );
    // A glob's count changes with any file added or removed: the files say
    // more.
    if labels.iter().any(|l| l.starts_with("file `")) {
        labels.retain(|l| !l.starts_with("files `") || l.ends_with("(gone)"));
    }
    labels
}

/// Whether every file the step writes is still there.
pub fn outputs_exist(pipeline: &Pipeline, step: StepIndex, base: &Path) -> bool {
    pipeline.steps[step]
        .prepared
        .accesses
        .iter()
        .all(|(access, resource)| match resource {
            Resource::File { glob } if *access != Access::Read => {
                !file_entries(base, glob).is_empty()
            }
            _ => true,
        })
}
