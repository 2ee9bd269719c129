//! Backups of the embedded store: a consistent copy of a live SQLite database, taken from a
//! separate read-only connection (`VACUUM INTO`, one read transaction: every batch the
//! server acknowledged before it began is in the copy, none half), and the check a restore
//! runs before it puts a copy in place. PostgreSQL stores are backed up with `pg_dump`.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::StoreError;

/// Writes a consistent copy of the SQLite database at `database` to `destination`, which
/// must not exist, while the server may keep writing; then checks the copy.
pub async fn backup_sqlite(database: &Path, destination: &Path) -> Result<(), StoreError> {
    if !database.is_file() {
        return Err(open_error(database, "no database file there"));
    }
    if destination.exists() {
        return Err(open_error(destination, "already exists; a backup never overwrites"));
    }
    let source = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        // The server's writer may hold the lock for a commit: wait, do not fail.
        .busy_timeout(Duration::from_secs(30));
    let mut connection =
        SqliteConnection::connect_with(&source).await.map_err(|e| open_error(database, &e.to_string()))?;
    let target = destination.to_str().ok_or_else(|| open_error(destination, "the path is not UTF-8"))?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut connection).await?;
    connection.close().await?;
    check_sqlite(destination).await
}

/// Checks that the file at `path` is a whole SQLite database (`PRAGMA integrity_check`)
/// that holds a SecuMon store (its migrations table), without changing it.
pub async fn check_sqlite(path: &Path) -> Result<(), StoreError> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut connection =
        SqliteConnection::connect_with(&options).await.map_err(|e| open_error(path, &e.to_string()))?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await?;
    if verdict != "ok" {
        return Err(open_error(path, &format!("damaged: {verdict}")));
    }
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;
    if migrations == 0 {
        return Err(open_error(path, "not a SecuMon store"));
    }
    Ok(())
}

fn open_error(path: &Path, reason: &str) -> StoreError {
    StoreError::Open { path: path.display().to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IngestBatch, SqliteStore, Store};
    use secumon_core::{Labels, Sample};

    #[tokio::test]
    async fn a_backup_of_a_live_store_holds_every_committed_batch_and_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let store = SqliteStore::open(&live).await.unwrap();
        for sequence in 1..=50u64 {
            let batch = IngestBatch {
                agent_id: "a1".into(),
                sequence,
                host: "h".into(),
                samples: vec![Sample::new("load1", Labels::new(), sequence as i64 * 1_000, sequence as f64)],
                ..Default::default()
            };
            store.write_batch("default", &batch).await.unwrap();
        }
        let copy = dir.path().join("copy.db");
        backup_sqlite(&live, &copy).await.unwrap();
        assert!(backup_sqlite(&live, &copy).await.is_err(), "never overwrites");

        let restored = SqliteStore::open(&copy).await.unwrap();
        let agents = restored.list_agents("default").await.unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!((agents[0].batches, agents[0].last_sequence), (50, 50));

        std::fs::write(dir.path().join("junk.db"), b"not a database at all, just bytes").unwrap();
        assert!(check_sqlite(&dir.path().join("junk.db")).await.is_err());
        assert!(backup_sqlite(&dir.path().join("missing.db"), &dir.path().join("x.db")).await.is_err());
    }
}
