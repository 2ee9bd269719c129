//! SecuMon storage. [`Store`] is what the server writes agent batches to and reads series
//! from; [`SqliteStore`] is the embedded backend (one file, WAL mode) that needs no server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), secumon_store::StoreError> {
//! use secumon_store::{Aggregation, RangeQuery, SeriesSelector, SqliteStore, Store};
//! let store = SqliteStore::open(std::path::Path::new("secumon.db")).await?;
//! let query = RangeQuery { selector: SeriesSelector::new("load1").with("host", "web-1"),
//!     start_ms: 0, end_ms: i64::MAX, step_ms: 60_000, aggregation: Aggregation::Avg };
//! for series in store.query_range("default", &query).await? { println!("{}", series.series); }
//! # Ok(()) }
//! ```

mod query;
mod sqlite;

use async_trait::async_trait;
use secumon_core::{IngestBatch, Labels, LogRecord};
use serde::{Deserialize, Serialize};

pub use query::{Aggregation, Point, RangeQuery, SeriesPoints, SeriesSelector, aggregate};
pub use sqlite::SqliteStore;

/// Tenant that owns everything until tenants are managed.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("agent {agent_id} belongs to another tenant")]
    TenantMismatch { agent_id: String },
    #[error("stored labels are corrupt: {0}")]
    CorruptLabels(#[from] serde_json::Error),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

/// What became of a batch handed to [`Store::write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The batch is durable.
    Committed,
    /// `(agent_id, sequence)` was committed before; nothing was written.
    Duplicate,
}

/// An agent as the server knows it from the batches it pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub tenant: String,
    pub host: String,
    pub labels: Labels,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Highest batch sequence committed.
    pub last_sequence: u64,
    /// Number of distinct batches committed.
    pub batches: u64,
}

/// One line of the alert history: which rule, when, and the event itself as JSON (a
/// transition, an acknowledgement, a rule change, a failed delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertHistoryEntry {
    pub rule: String,
    pub at_ms: i64,
    pub record: String,
}

/// A storage backend. Implementations must make `write_batch` atomic: a batch is stored
/// whole, with its `(agent_id, sequence)` recorded in the same transaction, or not at all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores every part of `batch` for `tenant`, unless its `(agent_id, sequence)` was
    /// committed before.
    async fn write_batch(&self, tenant: &str, batch: &IngestBatch) -> Result<WriteOutcome, StoreError>;

    /// Agents of `tenant`, by host name.
    async fn list_agents(&self, tenant: &str) -> Result<Vec<AgentRecord>, StoreError>;

    /// The latest `limit` log records of `host`, oldest first.
    async fn recent_logs(&self, tenant: &str, host: &str, limit: u32) -> Result<Vec<LogRecord>, StoreError>;

    /// Saves a component's state document under `key`, replacing the previous one.
    async fn put_state(&self, tenant: &str, key: &str, value: &str) -> Result<(), StoreError>;

    /// The state document saved under `key`, if any.
    async fn get_state(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// Appends entries to the alert history.
    async fn append_alert_history(&self, tenant: &str, entries: &[AlertHistoryEntry]) -> Result<(), StoreError>;

    /// The latest `limit` history entries, of one rule or of all, newest first.
    async fn alert_history(
        &self,
        tenant: &str,
        rule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError>;

    /// Step-aggregated points of every series of `tenant` that the query's selector matches.
    async fn query_range(&self, tenant: &str, query: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError>;
}
