//! The trail as a JSON-lines file, one record per line, rotated by size: once the file passes
//! its limit it becomes `FILE.1` (`FILE.1` becomes `FILE.2`, ...), the oldest beyond `keep`
//! is removed, and a new file is started. Each batch is written whole and flushed before the
//! writer takes the next, so a crash loses at most the batch being written.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use crate::AuditError;

/// A trail file and its rotated predecessors.
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: tokio::fs::File,
    size: u64,
    max_size: u64,
    keep: usize,
}

impl RotatingFile {
    /// Opens (or creates, readable by its owner and group) `path` for appending.
    pub(crate) fn open(path: &Path, max_size: u64, keep: usize) -> Result<Self, AuditError> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(|e| AuditError::Open(path.to_owned(), e))?
            .len();
        Ok(Self {
            path: path.to_owned(),
            file: tokio::fs::File::from_std(file),
            size,
            max_size: max_size.max(1),
            keep,
        })
    }

    /// Appends `lines` (newline-terminated records), and rotates when the file has grown past
    /// its limit.
    pub(crate) async fn write(&mut self, lines: &[u8]) -> Result<(), AuditError> {
        self.file
            .write_all(lines)
            .await
            .map_err(AuditError::Write)?;
        self.file.flush().await.map_err(AuditError::Write)?;
        self.size += lines.len() as u64;
        if self.size >= self.max_size {
            self.rotate().await?;
        }
        Ok(())
    }

    async fn rotate(&mut self) -> Result<(), AuditError> {
        self.file.sync_data().await.map_err(AuditError::Write)?;
        let numbered = |n: usize| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            tokio::fs::remove_file(&self.path)
                .await
                .map_err(AuditError::Write)?;
        } else {
            let _ = tokio::fs::remove_file(numbered(self.keep)).await;
            for n in (1..self.keep).rev() {
                match tokio::fs::rename(numbered(n), numbered(n + 1)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(AuditError::Write(e)),
                }
            }
            tokio::fs::rename(&self.path, numbered(1))
                .await
                .map_err(AuditError::Write)?;
        }
        let file = open_append(&self.path)?;
        self.file = tokio::fs::File::from_std(file);
        self.size = 0;
        tracing::info!(path = %self.path.display(), "audit trail rotated");
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| AuditError::Open(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly

    use super::*;

    #[tokio::test]
    async fn rotates_by_size_and_keeps_as_many_files_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut file = RotatingFile::open(&path, 100, 2).unwrap();
        let line = format!("{}\n", "x".repeat(59));
        for _ in 0..7 {
            file.write(line.as_bytes()).await.unwrap();
        }
        // 60 bytes a line: every second line passes 100 and rotates.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&path).lines().count(), 1);
        assert_eq!(read(&dir.path().join("audit.jsonl.1")).lines().count(), 2);
        assert_eq!(read(&dir.path().join("audit.jsonl.2")).lines().count(), 2);
        assert!(!dir.path().join("audit.jsonl.3").exists());
    }

    #[tokio::test]
    async fn appends_to_the_file_it_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{}\n").unwrap();
        let mut file = RotatingFile::open(&path, 1 << 20, 1).unwrap();
        file.write(b"{\"a\":1}\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n{\"a\":1}\n");
    }
}
