//! Who holds a data directory: a running server holds `server.lock` beside its database
//! shared (several servers of one installation may), and tools that must not run beside a
//! server (secret-key and CA rotation) take it exclusively, so they refuse while one runs.
//! An OS file lock (`flock`) goes away with its process, so a crashed server holds nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name, in the data directory.
pub const LOCK_FILE: &str = "server.lock";

/// Why a data directory's lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A server holds the directory (a rotation needs it alone).
    #[error("a SecuMon server is running on {0} (it holds server.lock): stop every server of this installation first")]
    ServerRunning(String),
    /// A key or CA rotation holds the directory (a server waits for it).
    #[error("a secret-key or CA rotation is running on {0} (it holds server.lock): start the server once it is done")]
    RotationRunning(String),
    #[error("{path}: {source}")]
    /// The lock file could not be opened or locked.
    Io {
        /// The lock file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// A lock on a data directory, released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// What a server takes on `dir` for as long as it runs; never refused by another server.
    pub fn shared(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, false)
    }

    /// What a rotation takes: refused while any server holds `dir`.
    pub fn exclusive(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, true)
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(dir: &Path, exclusive: bool) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        let taken = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match taken {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) if exclusive => Err(LockError::ServerRunning(dir.display().to_string())),
            Err(TryLockError::WouldBlock) => Err(LockError::RotationRunning(dir.display().to_string())),
            Err(TryLockError::Error(source)) => Err(io(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_share_the_directory_and_a_rotation_waits_for_all_of_them_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::shared(dir.path()).unwrap();
        let second = DataDirLock::shared(dir.path()).unwrap();
        assert!(matches!(DataDirLock::exclusive(dir.path()), Err(LockError::ServerRunning(_))));
        drop(first);
        assert!(matches!(DataDirLock::exclusive(dir.path()), Err(LockError::ServerRunning(_))));
        drop(second);
        let rotation = DataDirLock::exclusive(dir.path()).unwrap();
        let refused = DataDirLock::shared(dir.path()).unwrap_err();
        assert!(matches!(refused, LockError::RotationRunning(_)), "no server starts meanwhile: {refused}");
        drop(rotation);
        DataDirLock::shared(dir.path()).unwrap();
    }
}
