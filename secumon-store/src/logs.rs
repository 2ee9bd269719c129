//! Reading a host's log lines back: a time range, a source, a substring or regex filter,
//! and pages joined by an opaque cursor.
//!
//! Lines are ordered by `(timestamp, row id)`. A cursor names one row in that order, so a
//! client that pages with it sees every line of the range exactly once even while new lines
//! arrive (they sort after the rows already passed, as long as their timestamps do not go
//! back in time). Backends only fetch rows between two cursors ([`Store::log_rows`]);
//! filtering and paging are written once here, so both backends give the same answers.
//!
//! Filters run in Rust with the `regex` crate, whose matching is linear in the line's
//! length; a pattern is refused when it is too long or compiles to too large a program, and
//! one request examines at most [`MAX_SCAN_ROWS`] rows, so no filter can stall the server.

use std::fmt;
use std::str::FromStr;

use secumon_core::LogRecord;
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// The most lines one page returns.
pub const MAX_PAGE: u32 = 5_000;
/// The most rows one query examines; past it the page ends early with `more` set.
pub const MAX_SCAN_ROWS: usize = 100_000;
/// The longest regex pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1_024;
/// The most memory a compiled pattern may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Rows fetched from the backend at a time while filtering.
const FETCH_ROWS: u32 = 2_000;

/// One row in the `(timestamp, row id)` order of a host's log lines; as text it is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogCursor {
    /// The line's timestamp, milliseconds since 1970.
    pub timestamp_ms: i64,
    /// The line's row id, which orders lines of equal timestamps.
    pub id: i64,
}

impl LogCursor {
    /// A cursor just before every line stamped at or after `timestamp_ms`.
    pub fn at(timestamp_ms: i64) -> Self {
        Self { timestamp_ms, id: i64::MIN }
    }
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex keeps it short and makes no promise that it is a timestamp.
        write!(f, "{:x}.{:x}", self.timestamp_ms as u64, self.id as u64)
    }
}

impl FromStr for LogCursor {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::InvalidQuery(format!(
                "malformed log cursor {text:?}: pass back a next_cursor or prev_cursor as given"
            ))
        };
        let (ts, id) = text.split_once('.').ok_or_else(bad)?;
        let ts = u64::from_str_radix(ts, 16).map_err(|_| bad())?;
        let id = u64::from_str_radix(id, 16).map_err(|_| bad())?;
        Ok(Self { timestamp_ms: ts as i64, id: id as i64 })
    }
}

impl Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a line's text must hold.
#[derive(Debug, Clone)]
pub enum LineFilter {
    /// This text, exactly (case-sensitive).
    Contains(String),
    /// A match of this regex; build it with [`LineFilter::regex`] to get its limits.
    Regex(regex::Regex),
}

impl LineFilter {
    /// Compiles `pattern`, refusing one that is too long or too large compiled, with a
    /// message that says why.
    pub fn regex(pattern: &str) -> Result<Self, StoreError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(StoreError::InvalidQuery(format!(
                "regex is {} bytes long, more than the limit of {MAX_PATTERN_BYTES}",
                pattern.len()
            )));
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(LineFilter::Regex)
            .map_err(|error| StoreError::InvalidQuery(format!("invalid regex {pattern:?}: {error}")))
    }

    /// Whether `line` passes the filter.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(text) => line.contains(text.as_str()),
            LineFilter::Regex(regex) => regex.is_match(line),
        }
    }
}

/// Which way a query pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogOrder {
    /// Oldest first, from the lower bound.
    #[default]
    Forward,
    /// Newest first from the upper bound (the page itself is still returned oldest first).
    Backward,
}

/// A question about one host's log lines.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// The host whose lines are read.
    pub host: String,
    /// Lines stamped at or after this.
    pub since_ms: Option<i64>,
    /// Lines stamped before this.
    pub until_ms: Option<i64>,
    /// Only lines after this row (forward paging).
    pub after: Option<LogCursor>,
    /// Only lines before this row (backward paging).
    pub before: Option<LogCursor>,
    /// Only lines from this source, exactly.
    pub source: Option<String>,
    /// Only lines whose text passes this filter.
    pub filter: Option<LineFilter>,
    /// Which way to page.
    pub order: LogOrder,
    /// Lines per page, at most [`MAX_PAGE`]; 0 is read as 1.
    pub limit: u32,
}

/// The rows a backend is asked for: strictly between two cursors, one source or all.
#[derive(Debug, Clone)]
pub struct LogScan<'a> {
    /// The host whose lines are read.
    pub host: &'a str,
    /// Rows after this one (exclusive).
    pub after: LogCursor,
    /// Rows before this one (exclusive).
    pub before: LogCursor,
    /// Only this source, exactly; every source when `None`.
    pub source: Option<&'a str>,
    /// Forward: the oldest rows first; backward: the newest first.
    pub order: LogOrder,
    /// At most this many rows.
    pub limit: u32,
}

/// A log line and where it sits in the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Where the line sits, to page from.
    pub cursor: LogCursor,
    /// The line itself.
    #[serde(flatten)]
    pub record: LogRecord,
}

/// One page of lines, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogPage {
    /// The matching lines, oldest first.
    pub entries: Vec<LogEntry>,
    /// The oldest row examined (matching or not): page back with `before` it.
    pub first: Option<LogCursor>,
    /// The newest row examined: page on, or follow, with `after` it.
    pub last: Option<LogCursor>,
    /// The page ended before the rows in its direction ran out: ask again from its end.
    pub more: bool,
}

/// Answers `query` from `store`'s rows: the one implementation behind
/// [`Store::query_logs`].
pub(crate) async fn query<S: Store + ?Sized>(store: &S, tenant: &str, query: &LogQuery) -> Result<LogPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_PAGE) as usize;
    let mut after = query.since_ms.map_or(LogCursor::at(i64::MIN), LogCursor::at);
    if let Some(cursor) = query.after {
        after = after.max(cursor);
    }
    let mut before = query.until_ms.map_or(LogCursor { timestamp_ms: i64::MAX, id: i64::MAX }, LogCursor::at);
    if let Some(cursor) = query.before {
        before = before.min(cursor);
    }
    let mut page = LogPage::default();
    let (mut oldest, mut newest) = (None, None);
    let mut scanned = 0usize;
    // Without a filter every row is a line, so no more rows than the page are fetched.
    let fetch = if query.filter.is_some() { FETCH_ROWS.max(limit as u32) } else { limit as u32 };
    while after < before {
        let want = fetch.min((MAX_SCAN_ROWS - scanned) as u32);
        if want == 0 {
            page.more = true;
            break;
        }
        let scan = LogScan {
            host: &query.host,
            after,
            before,
            source: query.source.as_deref(),
            order: query.order,
            limit: want,
        };
        let rows = store.log_rows(tenant, &scan).await?;
        let exhausted = rows.len() < want as usize;
        let count = rows.len();
        for (index, row) in rows.into_iter().enumerate() {
            scanned += 1;
            match query.order {
                LogOrder::Forward => {
                    after = row.cursor;
                    oldest = oldest.or(Some(row.cursor));
                    newest = Some(row.cursor);
                }
                LogOrder::Backward => {
                    before = row.cursor;
                    newest = newest.or(Some(row.cursor));
                    oldest = Some(row.cursor);
                }
            }
            if query.filter.as_ref().is_none_or(|filter| filter.matches(&row.record.line)) {
                page.entries.push(row);
                if page.entries.len() == limit {
                    // Whether more follows is only known by asking, unless this was the end.
                    page.more = !(exhausted && index + 1 == count);
                    break;
                }
            }
        }
        if page.entries.len() == limit || exhausted {
            break;
        }
    }
    if query.order == LogOrder::Backward {
        page.entries.reverse();
    }
    // Nothing examined: the cursor the client came with still marks its place.
    page.first = oldest.or(match query.order {
        LogOrder::Forward => None,
        LogOrder::Backward => query.before,
    });
    page.last = newest.or(match query.order {
        LogOrder::Forward => query.after,
        LogOrder::Backward => None,
    });
    Ok(page)
}
