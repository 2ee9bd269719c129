//! Write transactions on the embedded store's single writer connection.
//!
//! sqlx's own `Transaction` keeps a depth counter that SQLite can invalidate: an error such
//! as SQLITE_FULL or SQLITE_IOERR may roll the whole transaction back by itself, sqlx's
//! `ROLLBACK` then fails and the counter stays at 1, so the next `begin` issues a
//! `SAVEPOINT` that opens a transaction, and after one more failure every later "commit" only
//! releases a savepoint nested in a transaction nobody commits. Batches were acknowledged
//! and lost that way once the disk had filled. Here a transaction is a plain
//! `BEGIN IMMEDIATE` ... `COMMIT` that sqlx does not track, and a connection that saw any
//! error inside one is closed (SQLite rolls back whatever it held) and never reused: the
//! pool opens a fresh one for the next write, which also drops a connection SQLite opened
//! read-only while its file system was.
//!
//! Every write also checks that the database file is still the one opened: SQLite goes on
//! writing into a file that was moved away or deleted, and acknowledging batches written
//! there would lose them.

use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection};

use crate::StoreError;

/// The single writer connection of a database file.
pub struct Writer {
    pub pool: SqlitePool,
    file: PathBuf,
    /// Device and inode of the file as opened.
    identity: (u64, u64),
}

impl Writer {
    pub fn new(pool: SqlitePool, file: &Path) -> Result<Self, StoreError> {
        let identity = file_identity(file)
            .ok_or_else(|| StoreError::Open { path: file.display().to_string(), reason: "not found".into() })?;
        Ok(Self { pool, file: file.to_path_buf(), identity })
    }

    /// Begins a write transaction, if the database file is still where it was opened.
    pub async fn begin(&self) -> Result<WriteTransaction, StoreError> {
        if file_identity(&self.file) != Some(self.identity) {
            return Err(StoreError::Moved { path: self.file.display().to_string() });
        }
        WriteTransaction::begin(&self.pool).await
    }

    /// Runs one statement in its own write transaction (see the module doc for why even a
    /// single statement does not go to the pool directly).
    pub async fn execute_alone<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let affected = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(affected)
    }
}

fn file_identity(file: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(file).ok().map(|m| (m.dev(), m.ino()))
}

/// An open write transaction; rolled back (and its connection closed) unless committed.
pub struct WriteTransaction {
    /// Taken out by a commit.
    connection: Option<PoolConnection<Sqlite>>,
}

impl WriteTransaction {
    /// Takes the writer connection and begins a transaction that holds SQLite's write lock
    /// from the start, so a busy database fails here rather than half-way through.
    async fn begin(writer: &SqlitePool) -> Result<Self, StoreError> {
        let mut connection = writer.acquire().await?;
        if let Err(error) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *connection).await {
            connection.close_on_drop();
            return Err(error.into());
        }
        Ok(Self { connection: Some(connection) })
    }

    /// Commits; `Ok` means SQLite reported the commit done, nothing less.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.commit_keeping_writer().await.map(drop)
    }

    /// Commits and keeps holding the writer, for work that must happen before the next
    /// write transaction can begin.
    pub async fn commit_keeping_writer(mut self) -> Result<PoolConnection<Sqlite>, StoreError> {
        sqlx::query("COMMIT").execute(&mut *self).await?;
        Ok(self.connection.take().expect("open until committed"))
    }
}

impl Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.connection.as_ref().expect("open until committed")
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection.as_mut().expect("open until committed")
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        if let Some(connection) = &mut self.connection {
            // Closing rolls back whatever the connection still holds, whatever state an
            // error left it in; a rollback statement could fail just like the write did.
            connection.close_on_drop();
        }
    }
}
