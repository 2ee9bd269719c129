//! `GET /api/v1/logs/hosts/{id}`: a host's log lines, filtered and paged by cursor.

use secumon_core::Labels;
use serde::{Deserialize, Serialize};

/// What `GET /logs/hosts/{id}` takes. With neither cursor nor `since_ms` it answers the
/// latest `limit` lines (the behaviour from before paging); `since_ms` or `after` page
/// forward, `before` pages back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct LogsQuery {
    /// Lines per page: 100 unless given, at most 5000.
    #[cfg_attr(feature = "schema", param(minimum = 1, maximum = 5000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Lines stamped at or after this (ms since 1970); pages forward from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Lines stamped before this (ms since 1970).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Only lines of this source (a file path, or `journald`), exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only lines holding this text (case-sensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Only lines matching this regular expression (Rust `regex` syntax, at most 1024 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The lines after this cursor (a `next_cursor`), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The lines before this cursor (a `prev_cursor`), the newest of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Without a cursor: `oldest` pages forward from `since_ms` (the default when it is
    /// given), `newest` answers the newest lines of the range (the default otherwise).
    #[cfg_attr(feature = "schema", param(value_type = Option<String>, pattern = "^(oldest|newest)$"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Where this line sits: page or follow from it with `after`/`before`.
    pub cursor: String,
    /// When the line was written (Unix ms).
    pub timestamp_ms: i64,
    /// A file path, or `journald`.
    pub source: String,
    /// The line's labels (`host` and the agent's labels).
    pub labels: Labels,
    /// The line's text.
    pub line: String,
}

/// A page of a host's log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LogsPage {
    /// The host's name.
    pub host: String,
    /// The lines, oldest first.
    pub logs: Vec<LogLine>,
    /// After the newest row this page examined (matching or not): pass as `after` for the
    /// next page, or to follow. Null when nothing was examined and no cursor was given.
    pub next_cursor: Option<String>,
    /// Before the oldest row this page examined: pass as `before` for the page before.
    pub prev_cursor: Option<String>,
    /// The page stopped before the lines in its direction ran out (page full, or the
    /// 100 000 rows one request may examine were examined): ask again from its cursor.
    pub more: bool,
}
