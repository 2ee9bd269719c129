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
use secumon_core::{CheckResult, Finding, FindingStatus, IngestBatch, Labels, LogRecord, Sample, Severity};
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

/// A check's latest run, with the probe (agent) that ran it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestCheck {
    pub agent_id: String,
    pub host: String,
    pub result: CheckResult,
}

/// One scanner report to store, whole or not at all.
#[derive(Debug, Clone)]
pub struct FindingsImport {
    /// The report's format or scanner, kept with each finding.
    pub source: String,
    pub findings: Vec<Finding>,
    /// The report covers its assets completely: their open findings from the same source
    /// that it no longer lists are fixed.
    pub full_scan: bool,
    pub at_ms: i64,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    pub new: Vec<Finding>,
    pub reopened: Vec<Finding>,
    pub fixed: Vec<Finding>,
    /// Findings seen again, still open.
    pub unchanged: usize,
    /// `findings_open{host=asset, severity}` written for every asset the report touched.
    pub samples: Vec<Sample>,
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub asset: Option<String>,
    /// At least this severe.
    pub severity: Option<Severity>,
    pub status: Option<FindingStatus>,
    pub limit: u32,
    pub offset: u32,
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

    /// Stores a scanner report in one transaction: new findings open, known ones seen
    /// again (fixed ones reopened), and with `full_scan` the ones no longer reported fixed;
    /// writes `findings_open` samples and an event per new critical finding.
    async fn import_findings(&self, tenant: &str, import: &FindingsImport) -> Result<ImportSummary, StoreError>;

    /// The latest result of every check of `tenant`, per probe, by check id.
    async fn latest_checks(&self, tenant: &str) -> Result<Vec<LatestCheck>, StoreError>;

    /// Findings of `tenant`, most severe and most recent first.
    async fn list_findings(&self, tenant: &str, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError>;

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
