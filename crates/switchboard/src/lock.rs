//! The lock a process holds on an embedded (SQLite) database for as long as it may write to
//! it: `serve` and `migrate` for their whole lives, `restore` while it puts a copy in the
//! database's place. It is an exclusive `flock` on a file beside the database
//! (`switchboard.db.lock`), which holds the process id of its holder; the kernel releases it
//! when the process ends, however it ends, so a crashed server never leaves it held. A second
//! server on the same database, or a restore under a running one, is refused with the holder's
//! process id. `backup` and `keys rotate` only read the database and take no lock. PostgreSQL
//! databases are not locked: several nodes share one.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file of the database at `database`: its name with `.lock` added.
pub fn lock_file(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    database.with_file_name(name)
}

/// Why a database could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock.
    InUse {
        /// The database.
        database: PathBuf,
        /// The holder's process id, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// The lock file could not be made or locked (a file system without `flock`, say).
    Io {
        /// The database.
        database: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// A held lock on a database; released when dropped, or when the process ends.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

impl DatabaseLock {
    /// Takes the lock of the database at `database` without waiting, and writes this
    /// process's id in the lock file; refuses if another process holds it.
    pub fn take(database: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io { database: database.to_owned(), source };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(lock_file(database)).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(LockError::InUse { database: database.to_owned(), pid });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::InUse { database, pid } => {
                write!(f, "the database {} is in use by another switchboard process", database.display())?;
                match pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => Ok(()),
                }
            }
            LockError::Io { database, source } => {
                write!(f, "cannot lock the database {}: {source}", database.display())
            }
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::InUse { .. } => None,
            LockError::Io { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_when_dropped() {
        let dir = std::env::temp_dir().join(format!("switchboard-lock-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("switchboard.db");
        assert_eq!(lock_file(&db), dir.join("switchboard.db.lock"));
        let held = DatabaseLock::take(&db).unwrap();
        // A second open of the file is refused too, in this process as in another.
        match DatabaseLock::take(&db) {
            Err(LockError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        let said = DatabaseLock::take(&db).unwrap_err().to_string();
        assert_eq!(
            said,
            format!(
                "the database {} is in use by another switchboard process (pid {})",
                db.display(),
                std::process::id()
            )
        );
        drop(held);
        let again = DatabaseLock::take(&db).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(lock_file(&db)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
