use std::path::{Path, PathBuf};

/// A file written under a temporary name beside its target
/// (`.name.flow-part`), renamed into place by [`PartialFile::commit`] and
/// removed if dropped before: readers never see half a file, and a failure or
/// a cancellation leaves nothing behind.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PartialFile {
    pub fn beside(target: &Path) -> Self {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            path: target.with_file_name(format!(".{name}.flow-part")),
            target: target.to_path_buf(),
            committed: false,
        }
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file goes when committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the finished file into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
