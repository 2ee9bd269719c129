//! SecuMon storage. [`Store`] is what the server writes agent batches to and reads series
//! from; [`SqliteStore`] is the embedded backend (one file, WAL mode) that needs no server.
//!
//! Samples are written as one write-ahead record per batch (durable when the batch is
//! acknowledged) and kept in an in-memory head; the background maintenance compacts the
//! head into per-series pco chunks with 5-minute and 1-hour rollups, merges small chunks and
//! expires data past each tier's [`Retention`]. Queries read chunks, rollups and head alike.
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

#![warn(missing_docs)]

mod audit;
pub mod backup;
mod blocks;
mod chunked;
pub mod codec;
mod findings_import;
mod group;
mod head;
mod ingest;
pub mod logs;
mod postgres;
mod query;
mod records;
mod retention;
mod sqlite;
mod writer;

use async_trait::async_trait;
use secumon_core::{CheckResult, Finding, FindingStatus, IngestBatch, Labels, LogRecord, Sample, SeriesKey, Severity};
use serde::{Deserialize, Serialize};

pub use audit::{AuditEntry, AuditFilter};
pub use logs::{LineFilter, LogCursor, LogEntry, LogOrder, LogPage, LogQuery, LogScan};
pub use postgres::PgStore;
pub use query::{Aggregation, Point, RangeQuery, SeriesPoints, SeriesSelector};
pub use retention::{
    MAX_RETENTION_MS, MIN_RAW_RETENTION_MS, RETENTION_ID, RETENTION_KIND, RetentionError, TierRetention,
};
pub use sqlite::SqliteStore;

/// Tenant that owns everything until tenants are managed.
pub const DEFAULT_TENANT: &str = secumon_core::model::DEFAULT_TENANT;

/// Why the store could not do what was asked. [`StoreError::fault`] tells a trouble that may
/// pass (disk full, database locked or unreachable) from a refusal of the data itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database answered with an error, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date when the store was opened.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database (file, directory or server) could not be opened or connected to.
    #[error("cannot open store at {path}: {reason}")]
    Open {
        /// The file or directory, or the server's URL without its password.
        path: String,
        /// Why.
        reason: String,
    },
    /// The SQLite file the store opened is no longer at its path.
    #[error(
        "the database file {path} was moved, deleted or replaced while open; nothing is written until the file that \
         was opened is back there (a deleted one must be restored from a backup, or the server restarted on an \
         empty database)"
    )]
    Moved {
        /// The database file's path.
        path: String,
    },
    /// The transaction this batch was committed in together with other agents' batches
    /// failed (another batch of the group got the original error).
    #[error("{message}")]
    Group {
        /// The original error's fault, if it was one.
        fault: Option<StoreFault>,
        /// The original error's message.
        message: String,
    },
    /// The batch's agent id is already registered under another tenant; nothing was stored.
    #[error("agent {agent_id} belongs to another tenant")]
    TenantMismatch {
        /// The agent id.
        agent_id: String,
    },
    /// A JSON column (labels, details, a filter's severities) could not be read or written.
    #[error("stored labels are corrupt: {0}")]
    CorruptLabels(#[from] serde_json::Error),
    /// The query or filter is invalid (a bad step, range, regex or paging cursor).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A tenant's retention policy was refused; nothing was changed.
    #[error("invalid retention: {0}")]
    InvalidRetention(#[from] RetentionError),
    /// A sample is stamped further ahead of now than [`StoreOptions::max_future_ms`]; the
    /// batch was refused whole.
    #[error("sample of {series} at {timestamp_ms} ms is more than {limit_ms} ms in the future")]
    FutureTimestamp {
        /// The sample's series.
        series: String,
        /// Its timestamp.
        timestamp_ms: i64,
        /// The limit in force.
        limit_ms: i64,
    },
    /// A stored chunk of samples could not be decoded.
    #[error("stored samples are corrupt: {0}")]
    Corrupt(#[from] codec::CodecError),
    /// Series ids (32-bit) are used up.
    #[error("the store holds the maximum number of series ({})", u32::MAX)]
    TooManySeries,
    /// The batch would take its tenant past [`StoreOptions::max_series_per_tenant`].
    #[error(
        "tenant {tenant} would hold more than {limit} series (max_series_per_tenant): this batch names {new} new \
         series; nothing of it was stored"
    )]
    SeriesLimit {
        /// The tenant.
        tenant: String,
        /// The limit in force.
        limit: u64,
        /// The series the batch would have created.
        new: u64,
    },
    /// A blocking task of the store panicked or was cancelled.
    #[error("a background task of the store failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A findings report is larger than [`StoreOptions::max_report_findings`]; nothing was stored.
    #[error("the report holds {findings} findings, more than the limit of {limit} per report (max_report_findings)")]
    ReportTooLarge {
        /// Findings in the report.
        findings: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A findings report would take its tenant past [`StoreOptions::max_open_findings`].
    #[error(
        "tenant {tenant} would hold {open} open findings after this report, more than the limit of {limit} per \
         tenant (max_open_findings); nothing of the report was stored"
    )]
    TooManyOpenFindings {
        /// The tenant.
        tenant: String,
        /// Open findings it would hold.
        open: u64,
        /// The limit in force.
        limit: u64,
    },
}

/// The kind of trouble behind a [`StoreError`] that a retry may get past once an operator
/// (or time) lifts it: the batch is not bad, the store cannot take it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreFault {
    /// The disk (or the database server's) is full.
    DiskFull,
    /// The database or its file system is read-only.
    ReadOnly,
    /// Another writer holds the lock (SQLite busy or locked).
    Busy,
    /// An I/O error reading or writing the database.
    Io,
    /// The database file, or its directory, cannot be opened.
    CannotOpen,
    /// The database server went away, restarted or refused the connection.
    Connection,
}

impl StoreFault {
    /// Every fault, in declaration order.
    pub const ALL: [StoreFault; 6] = [
        StoreFault::DiskFull,
        StoreFault::ReadOnly,
        StoreFault::Busy,
        StoreFault::Io,
        StoreFault::CannotOpen,
        StoreFault::Connection,
    ];

    /// A short snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreFault::DiskFull => "disk_full",
            StoreFault::ReadOnly => "read_only",
            StoreFault::Busy => "busy",
            StoreFault::Io => "io",
            StoreFault::CannotOpen => "cannot_open",
            StoreFault::Connection => "connection",
        }
    }
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreFault::DiskFull => "the disk is full",
            StoreFault::ReadOnly => "the database is read-only",
            StoreFault::Busy => "the database is locked by another writer",
            StoreFault::Io => "an I/O error",
            StoreFault::CannotOpen => "the database file cannot be opened",
            StoreFault::Connection => "the database server is unreachable",
        })
    }
}

impl StoreError {
    /// The fault behind this error, if it is one the store may recover from by itself; `None`
    /// for errors about the data (refused batches, bad queries) and for bugs.
    pub fn fault(&self) -> Option<StoreFault> {
        match self {
            StoreError::Moved { .. } => return Some(StoreFault::CannotOpen),
            StoreError::Group { fault, .. } => return *fault,
            _ => {}
        }
        let StoreError::Database(error) = self else { return None };
        match error {
            sqlx::Error::Database(database) => {
                let code = database.code()?;
                if database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                    return postgres_fault(&code);
                }
                // SQLite's extended result code, as a number.
                sqlite_fault(code.parse::<i32>().ok()? & 0xff)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Some(StoreFault::Connection),
            _ => None,
        }
    }
}

/// SQLite primary result codes (<https://www.sqlite.org/rescode.html>).
fn sqlite_fault(primary: i32) -> Option<StoreFault> {
    match primary {
        13 => Some(StoreFault::DiskFull),        // SQLITE_FULL
        8 => Some(StoreFault::ReadOnly),         // SQLITE_READONLY
        5 | 6 => Some(StoreFault::Busy),         // SQLITE_BUSY, SQLITE_LOCKED
        10 | 15 => Some(StoreFault::Io),         // SQLITE_IOERR, SQLITE_PROTOCOL
        14 | 23 => Some(StoreFault::CannotOpen), // SQLITE_CANTOPEN, SQLITE_AUTH
        _ => None,
    }
}

/// PostgreSQL SQLSTATE classes (appendix A of its manual).
fn postgres_fault(sqlstate: &str) -> Option<StoreFault> {
    match sqlstate {
        "53100" => Some(StoreFault::DiskFull),
        "25006" => Some(StoreFault::ReadOnly),
        "40001" | "40P01" | "55P03" => Some(StoreFault::Busy),
        "58030" => Some(StoreFault::Io),
        _ if sqlstate.starts_with("08") || sqlstate.starts_with("57P") || sqlstate.starts_with("53") => {
            Some(StoreFault::Connection)
        }
        _ => None,
    }
}

const DAY_MS: i64 = 86_400_000;

/// How long each kind of data is kept, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Raw samples (default 30 days).
    pub raw_ms: i64,
    /// 5-minute rollups (default 90 days).
    pub rollup_5m_ms: i64,
    /// 1-hour rollups (default 365 days).
    pub rollup_1h_ms: i64,
    /// Log lines (default 30 days).
    pub logs_ms: i64,
    /// Events and check results (default 180 days).
    pub events_ms: i64,
    /// The alert history (default 365 days).
    pub alerts_ms: i64,
    /// The audit log of administrative actions (default 365 days).
    pub audit_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw_ms: 30 * DAY_MS,
            rollup_5m_ms: 90 * DAY_MS,
            rollup_1h_ms: 365 * DAY_MS,
            logs_ms: 30 * DAY_MS,
            events_ms: 180 * DAY_MS,
            alerts_ms: 365 * DAY_MS,
            audit_ms: 365 * DAY_MS,
        }
    }
}

/// Resolution of the finer rollup tier.
pub const FIVE_MINUTES_MS: i64 = 300_000;
/// Resolution of the coarser rollup tier.
pub const ONE_HOUR_MS: i64 = 3_600_000;

/// The data a range query is answered from: the finest tier whose retention covers its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Every sample.
    Raw,
    /// 5-minute rollups.
    FiveMinutes,
    /// 1-hour rollups.
    OneHour,
}

impl Tier {
    /// The tier `query` reads at `now_ms`: raw for `p95` (rollups keep no percentiles) and
    /// for starts within raw retention, else the finest rollup whose retention covers it.
    pub fn for_query(query: &RangeQuery, now_ms: i64, retention: &Retention) -> Tier {
        if query.aggregation == Aggregation::P95 || query.start_ms >= now_ms - retention.raw_ms {
            Tier::Raw
        } else if query.start_ms >= now_ms - retention.rollup_5m_ms {
            Tier::FiveMinutes
        } else {
            Tier::OneHour
        }
    }
}

/// Tuning of a store; the defaults suit `secumon up`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long each kind of data is kept; a tenant may keep its samples' tiers for
    /// longer or shorter ([`Store::set_tier_retention`]).
    pub retention: Retention,
    /// Samples kept in the head before it is compacted (16 bytes each in memory): the more
    /// series, the more it takes for compaction to write chunks worth the name.
    pub head_max_samples: usize,
    /// Longest time a sample stays in the head.
    pub head_max_age: std::time::Duration,
    /// Samples stamped later than now plus this are refused.
    pub max_future_ms: i64,
    /// Run compaction, chunk merging and retention in the background.
    pub background: bool,
    /// Most findings one report may hold ([`DEFAULT_MAX_REPORT_FINDINGS`]); a larger one is
    /// refused whole before anything is written.
    pub max_report_findings: usize,
    /// Most open findings a tenant may hold ([`DEFAULT_MAX_OPEN_FINDINGS`]); a report that
    /// would pass it is refused whole.
    pub max_open_findings: u64,
    /// Most series a tenant may hold ([`DEFAULT_MAX_SERIES_PER_TENANT`]); a batch that would
    /// create more is refused whole with [`StoreError::SeriesLimit`].
    pub max_series_per_tenant: u64,
    /// Most agents' batches a store commits in one transaction (group commit: batches that
    /// arrive while a commit is under way share the next one and its fsync; the PostgreSQL
    /// store commits a few such groups at once). 1 commits every batch on its own.
    pub max_group_batches: usize,
}

/// Default of [`StoreOptions::max_series_per_tenant`]: a few hundred hosts' worth of
/// series (a host sends 100 to 300), with room for findings' per-asset series.
pub const DEFAULT_MAX_SERIES_PER_TENANT: u64 = 500_000;

/// Default of [`StoreOptions::max_report_findings`]: twice the largest reports seen from a
/// fleet scan, and what an import stages in a few seconds.
pub const DEFAULT_MAX_REPORT_FINDINGS: usize = 100_000;
/// Default of [`StoreOptions::max_group_batches`]: ~100 k samples of agents' 100-sample
/// batches, some tens of milliseconds of the single writer, so no group holds it for long.
pub const DEFAULT_MAX_GROUP_BATCHES: usize = 1_000;
/// Default of [`StoreOptions::max_open_findings`].
pub const DEFAULT_MAX_OPEN_FINDINGS: u64 = 1_000_000;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            head_max_samples: 32_000_000,
            head_max_age: std::time::Duration::from_secs(600),
            max_future_ms: 3_600_000,
            background: true,
            max_report_findings: DEFAULT_MAX_REPORT_FINDINGS,
            max_open_findings: DEFAULT_MAX_OPEN_FINDINGS,
            max_series_per_tenant: DEFAULT_MAX_SERIES_PER_TENANT,
            max_group_batches: DEFAULT_MAX_GROUP_BATCHES,
        }
    }
}

/// What one [`Store::maintain`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    /// Head samples written into chunks.
    pub compacted_samples: u64,
    /// Small chunks merged into bigger ones.
    pub merged_chunks: u64,
    /// Rows removed by retention, all tables together.
    pub expired_rows: u64,
}

/// The parts of maintenance whose failures are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceTask {
    /// Writing the head into chunks and merging them (SQLite), rolling up (PostgreSQL).
    Compaction,
    /// Deleting what the retention windows no longer cover.
    Retention,
}

impl MaintenanceTask {
    /// Every task, in the order of [`MaintenanceHealth`]'s arrays.
    pub const ALL: [MaintenanceTask; 2] = [MaintenanceTask::Compaction, MaintenanceTask::Retention];

    /// A short snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceTask::Compaction => "compaction",
            MaintenanceTask::Retention => "retention",
        }
    }
}

/// How maintenance (background or [`Store::maintain`]) fared since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceHealth {
    /// Failed passes, indexed by [`MaintenanceTask`].
    pub failures: [u64; 2],
    /// Passes failed in a row, 0 once one succeeds, indexed by [`MaintenanceTask`].
    pub consecutive_failures: [u64; 2],
}

impl MaintenanceHealth {
    /// Failed passes of `task`.
    pub fn failures(&self, task: MaintenanceTask) -> u64 {
        self.failures[task as usize]
    }

    /// Passes of `task` failed in a row (0 once one succeeds).
    pub fn consecutive_failures(&self, task: MaintenanceTask) -> u64 {
        self.consecutive_failures[task as usize]
    }
}

/// The counters behind [`MaintenanceHealth`], kept by the backends.
#[derive(Debug, Default)]
pub(crate) struct MaintenanceCounters {
    failures: [std::sync::atomic::AtomicU64; 2],
    consecutive: [std::sync::atomic::AtomicU64; 2],
}

impl MaintenanceCounters {
    /// Counts the outcome of one pass of `task`.
    pub(crate) fn record<T>(&self, task: MaintenanceTask, result: &Result<T, StoreError>) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = task as usize;
        if result.is_ok() {
            self.consecutive[i].store(0, Relaxed);
        } else {
            self.failures[i].fetch_add(1, Relaxed);
            self.consecutive[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> MaintenanceHealth {
        use std::sync::atomic::Ordering::Relaxed;
        MaintenanceHealth {
            failures: [0, 1].map(|i| self.failures[i].load(Relaxed)),
            consecutive_failures: [0, 1].map(|i| self.consecutive[i].load(Relaxed)),
        }
    }

    /// Whether some task's last pass failed.
    pub(crate) fn failing(&self) -> bool {
        self.snapshot().consecutive_failures.iter().any(|n| *n > 0)
    }
}

/// What became of a batch handed to [`Store::write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The batch is durable.
    Committed,
    /// `(agent_id, sequence)` was committed before; nothing was written.
    Duplicate,
}

/// An `agents` row, the same in both backends.
#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    agent_id: String,
    tenant_id: String,
    host: String,
    labels: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    last_sequence: i64,
    batches: i64,
}

impl TryFrom<AgentRow> for AgentRecord {
    type Error = StoreError;

    fn try_from(row: AgentRow) -> Result<Self, StoreError> {
        Ok(AgentRecord {
            agent_id: row.agent_id,
            tenant: row.tenant_id,
            host: row.host,
            labels: serde_json::from_str(&row.labels)?,
            first_seen_ms: row.first_seen_ms,
            last_seen_ms: row.last_seen_ms,
            last_sequence: row.last_sequence as u64,
            batches: row.batches as u64,
        })
    }
}

/// Which agents [`Store::agents`] answers, and which page of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only the agent with this id.
    pub agent_id: Option<String>,
    /// Only agents reporting this host name.
    pub host: Option<String>,
    /// Agents skipped first (ordered by host, then agent id).
    pub offset: u32,
    /// At most this many; all when `None`.
    pub limit: Option<u32>,
}

/// An agent as the server knows it from the batches it pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent's id.
    pub agent_id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The host name of its latest batch.
    pub host: String,
    /// The agent labels of its latest batch.
    pub labels: Labels,
    /// Its first batch's arrival, milliseconds since 1970.
    pub first_seen_ms: i64,
    /// Its latest batch's arrival, milliseconds since 1970.
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
    /// The rule's name.
    pub rule: String,
    /// When it happened, milliseconds since 1970.
    pub at_ms: i64,
    /// The event, as JSON.
    pub record: String,
}

/// A check's latest run, with the probe (agent) that ran it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestCheck {
    /// The probe's agent id.
    pub agent_id: String,
    /// The probe's host name.
    pub host: String,
    /// The run.
    pub result: CheckResult,
}

/// How often one check of one probe ran within a period, and how often it was `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRuns {
    /// The probe's agent id.
    pub agent_id: String,
    /// The probe's host name.
    pub host: String,
    /// The check's id.
    pub check_id: String,
    /// Its kind (of its latest run in the period).
    pub kind: String,
    /// Its target (of its latest run in the period).
    pub target: String,
    /// Runs stamped within the period.
    pub runs: u64,
    /// Of those, runs whose status was `ok`.
    pub ok: u64,
}

/// One scanner report to store, whole or not at all.
#[derive(Debug, Clone)]
pub struct FindingsImport {
    /// The report's format or scanner, kept with each finding.
    pub source: String,
    /// Every finding of the report.
    pub findings: Vec<Finding>,
    /// The report covers its assets completely: their open findings from the same source
    /// that it no longer lists are fixed.
    pub full_scan: bool,
    /// When the report was imported, milliseconds since 1970: the findings' `last_seen_ms`.
    pub at_ms: i64,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    /// Findings never seen before.
    pub new: Vec<Finding>,
    /// Findings that were fixed and are reported again.
    pub reopened: Vec<Finding>,
    /// Findings that a full scan no longer lists.
    pub fixed: Vec<Finding>,
    /// Findings seen again, still open.
    pub unchanged: usize,
    /// `findings_open{host=asset, severity}` written for every asset the report touched.
    pub samples: Vec<Sample>,
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Only findings about this asset.
    pub asset: Option<String>,
    /// At least this severe.
    pub severity: Option<Severity>,
    /// Only open, or only fixed, findings.
    pub status: Option<FindingStatus>,
    /// At most this many.
    pub limit: u32,
    /// Findings skipped first (ordered by severity, most severe first, then last seen).
    pub offset: u32,
}

/// A document of the server's own, as [`Store::list_records`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The document's id within its kind.
    pub id: String,
    /// JSON, as written.
    pub body: String,
    /// When it was last written, milliseconds since 1970.
    pub updated_ms: i64,
}

/// One document's replacement in [`Store::swap_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSwap {
    /// The document's kind.
    pub kind: String,
    /// The document's id within its kind.
    pub id: String,
    /// The body the document must still have.
    pub expected: String,
    /// The new body.
    pub body: String,
}

/// A storage backend. Implementations must make `write_batch` atomic: a batch is stored
/// whole, with its `(agent_id, sequence)` recorded in the same transaction, or not at all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores every part of `batch` for `tenant`, unless its `(agent_id, sequence)` was
    /// committed before. A batch without an agent id is the server's own samples (say, the
    /// clock offset it measured of a sender whose batch it refused): stored without
    /// deduplication and without making or touching an agent. The wire refuses an empty
    /// agent id, so no sender can make one.
    async fn write_batch(&self, tenant: &str, batch: &IngestBatch) -> Result<WriteOutcome, StoreError>;

    /// Agents of `tenant`, by host name.
    async fn list_agents(&self, tenant: &str) -> Result<Vec<AgentRecord>, StoreError> {
        Ok(self.agents(tenant, &AgentFilter::default()).await?.0)
    }

    /// The page of `tenant`'s agents `filter` asks for, by host name, and how many match in
    /// all.
    async fn agents(&self, tenant: &str, filter: &AgentFilter) -> Result<(Vec<AgentRecord>, u64), StoreError>;

    /// The latest `limit` log records of `host`, oldest first.
    async fn recent_logs(&self, tenant: &str, host: &str, limit: u32) -> Result<Vec<LogRecord>, StoreError>;

    /// Up to `scan.limit` of `host`'s log rows strictly between `scan.after` and
    /// `scan.before` in `(timestamp, row id)` order, walked in `scan.order`. The building
    /// block of [`Store::query_logs`]; backends implement this, not the filtering.
    async fn log_rows(&self, tenant: &str, scan: &LogScan<'_>) -> Result<Vec<LogEntry>, StoreError>;

    /// One page of a host's log lines: time range, source, text or regex filter, cursor.
    /// The same answer on every backend (the logic is [`logs`]'s, written once).
    async fn query_logs(&self, tenant: &str, query: &LogQuery) -> Result<LogPage, StoreError> {
        logs::query(self, tenant, query).await
    }

    /// Saves a component's state document under `key`, replacing the previous one.
    async fn put_state(&self, tenant: &str, key: &str, value: &str) -> Result<(), StoreError>;

    /// The state document saved under `key`, if any.
    async fn get_state(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// Stores a scanner report whole or not at all: new findings open, known ones seen
    /// again (fixed ones reopened, first seen kept), and with `full_scan` the ones no longer
    /// reported fixed; writes `findings_open` samples and an event per new critical finding.
    /// A report over [`StoreOptions::max_report_findings`], or one that would leave the
    /// tenant over [`StoreOptions::max_open_findings`], is refused and changes nothing.
    /// Backends must not hold other tenants' writes back for the length of a big report.
    async fn import_findings(&self, tenant: &str, import: &FindingsImport) -> Result<ImportSummary, StoreError>;

    /// The latest result of every check of `tenant`, per probe, by check id.
    async fn latest_checks(&self, tenant: &str) -> Result<Vec<LatestCheck>, StoreError>;

    /// Every check of `tenant` (per probe) that ran from `from_ms` (included) to `to_ms`
    /// (excluded): its runs and `ok` runs, by check id then host. Check results are kept as
    /// long as raw samples.
    async fn check_runs(&self, tenant: &str, from_ms: i64, to_ms: i64) -> Result<Vec<CheckRuns>, StoreError>;

    /// How many open findings `tenant` holds of each severity (severities with none left
    /// out), counted in the database.
    async fn open_finding_counts(&self, tenant: &str) -> Result<Vec<(Severity, u64)>, StoreError>;

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

    /// History entries of `tenant` stamped from `from_ms` to `to_ms` (both included), oldest
    /// first, at most `limit`.
    async fn alert_history_between(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError>;

    /// Gives `tenant` a series limit of its own instead of
    /// [`StoreOptions::max_series_per_tenant`], or (`None`) the default again. Kept in memory:
    /// whoever owns the setting applies it again after a restart.
    fn set_series_limit(&self, tenant: &str, limit: Option<u64>);

    /// Appends one entry to the audit log (its `id` is ignored); returns the id it got.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Audit entries `filter` asks for, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores a document under `(kind, id)` unless one is there already; `false` when it was.
    async fn insert_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<bool, StoreError>;

    /// Stores a document under `(kind, id)`, replacing any.
    async fn put_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<(), StoreError>;

    /// Stores several documents of `kind` (`(id, body)`, replacing any) in one transaction:
    /// all or none, one commit for many (the server's periodic saves of agents' states).
    async fn put_records(&self, tenant: &str, kind: &str, records: &[(String, String)]) -> Result<(), StoreError>;

    /// Replaces the bodies of documents of `tenant` all together or not at all: in one
    /// transaction, each only if it still reads `expected`. `false`, and nothing changed,
    /// when one of them is gone or reads otherwise (someone wrote it meanwhile).
    async fn swap_records(&self, tenant: &str, swaps: &[RecordSwap]) -> Result<bool, StoreError>;

    /// The document under `(kind, id)`, if any.
    async fn get_record(&self, tenant: &str, kind: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// Up to `limit` documents of `kind` by id, those after `after` (a page's last id).
    async fn list_records(
        &self,
        tenant: &str,
        kind: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;

    /// Removes the document under `(kind, id)`; `false` when there was none. Exactly one of
    /// several concurrent callers sees `true`, which makes it a one-time token's consumption.
    async fn delete_record(&self, tenant: &str, kind: &str, id: &str) -> Result<bool, StoreError>;

    /// The retention of samples per tier a tenant without one of its own gets
    /// ([`StoreOptions::retention`]).
    fn retention_defaults(&self) -> TierRetention;

    /// `tenant`'s retention of samples, tier by tier: its own
    /// ([`Store::set_tier_retention`]) or else the store's [`StoreOptions::retention`].
    async fn tier_retention(&self, tenant: &str) -> Result<TierRetention, StoreError>;

    /// Gives `tenant` a retention of samples per tier of its own, or (`None`) the store's
    /// defaults again. Kept durably (a record of the tenant, [`RETENTION_KIND`]), so every
    /// process sharing the database applies it from its next maintenance pass; this one's
    /// queries pick their tier by it at once. A policy that does not
    /// [validate](TierRetention::validate) is refused with [`StoreError::InvalidRetention`].
    async fn set_tier_retention(&self, tenant: &str, tiers: Option<TierRetention>) -> Result<(), StoreError>;

    /// Forgets an agent (its data stays until retention removes it); `false` when unknown.
    async fn delete_agent(&self, tenant: &str, agent_id: &str) -> Result<bool, StoreError>;

    /// Every series of `tenant`, or those named `name`, sorted: what the Prometheus API's
    /// series and label listings (and selectors without an exact name) start from.
    async fn list_series(&self, tenant: &str, name: Option<&str>) -> Result<Vec<SeriesKey>, StoreError>;

    /// Step-aggregated points of every series of `tenant` that the query's selector matches,
    /// from the [`Tier`] the query's start calls for.
    async fn query_range(&self, tenant: &str, query: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError>;

    /// Compacts everything pending and applies retention as of `now_ms`, now rather than on
    /// the background schedule.
    async fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, StoreError>;

    /// How maintenance passes fared so far: a failure is otherwise only a line in the log.
    fn maintenance_health(&self) -> MaintenanceHealth {
        MaintenanceHealth::default()
    }

    /// Where the data lives, for messages to the operator: a file path, or a database server
    /// without credentials.
    fn location(&self) -> String;

    /// Stops background work and closes the connections. What was acknowledged is durable
    /// whether or not this runs.
    async fn close(&self);
}
