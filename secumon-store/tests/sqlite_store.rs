//! The shared store suite against a real SQLite database file.

mod suite;

use std::sync::Arc;

use secumon_store::{SqliteStore, Store, StoreOptions};

struct Sqlite {
    dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl suite::Backend for Sqlite {
    async fn open_with(&self, options: StoreOptions) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_with(&self.dir.path().join("store.db"), options).await.unwrap())
    }

    async fn fail_deletes(&self, table: &str, fail: bool) {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.dir.path().join("store.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let sql = if fail {
            format!(
                "CREATE TRIGGER fail_delete_{table} BEFORE DELETE ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        } else {
            format!("DROP TRIGGER fail_delete_{table}")
        };
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn hold_writes(&self) -> tokio::sync::oneshot::Sender<()> {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.dir.path().join("store.db").display());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (held, is_held) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            // The write lock: the store's writer waits (busy timeout) until the rollback.
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            held.send(()).unwrap();
            let _ = released.await;
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        });
        is_held.await.unwrap();
        release
    }
}

async fn sqlite() -> Option<Sqlite> {
    Some(Sqlite { dir: tempfile::tempdir().unwrap() })
}

store_suite!(sqlite);
