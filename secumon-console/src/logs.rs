//! Reading a host's log lines from the server: pages by cursor (`GET /logs/hosts/{id}`) and
//! following new lines over the live stream. `secumon logs` and the console's log panel
//! both use it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), secumon_console::client::ClientError> {
//! use secumon_console::{client::ApiClient, logs::{LogFilter, Position}};
//! let api = ApiClient::new("http://127.0.0.1:8080", None)?;
//! let filter = LogFilter { regex: Some("ERROR".into()), ..LogFilter::default() };
//! let page = api.log_page("web-1", &filter, &Position::Newest, 100).await?;
//! let mut follow = api.follow_logs("web-1", &filter, page.next_cursor.as_deref()).await?;
//! loop { for line in follow.next_lines().await? { println!("{}", line.line); } }
//! # }
//! ```

use secumon_api::{ClientMessage, LogFollow, LogsQuery, StreamMessage, Subscription};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ApiClient, ClientError, Socket};

/// Which lines: a time range, a source, a text or a regex.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Lines stamped at or after this (ms since 1970).
    pub since_ms: Option<i64>,
    /// Lines stamped before this.
    pub until_ms: Option<i64>,
    /// Lines from this source only: a file path, or `journald`.
    pub source: Option<String>,
    /// Lines holding this text.
    pub contains: Option<String>,
    /// Lines matching this regular expression (checked by the server).
    pub regex: Option<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// The first lines of the range (from `since_ms`, or the first stored).
    Oldest,
    /// The newest lines of the range.
    Newest,
    /// The lines after this cursor, oldest first.
    After(String),
    /// The lines just before this cursor.
    Before(String),
}

/// One stored log line as the API returns it.
pub use secumon_api::LogLine;

/// A page of lines, oldest first, with the cursors to page on from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogPage {
    /// The lines, oldest first.
    pub logs: Vec<LogLine>,
    /// After the newest line examined: [`Position::After`] it for the next page, or to follow.
    pub next_cursor: Option<String>,
    /// Before the oldest line examined: [`Position::Before`] it for the page before.
    pub prev_cursor: Option<String>,
    /// More lines lie in the page's direction.
    pub more: bool,
}

impl ApiClient {
    /// One page of `host`'s lines (`limit` at most 5000).
    pub async fn log_page(
        &self,
        host: &str,
        filter: &LogFilter,
        position: &Position,
        limit: u32,
    ) -> Result<LogPage, ClientError> {
        let mut query = LogsQuery {
            limit: Some(limit),
            since_ms: filter.since_ms,
            until_ms: filter.until_ms,
            source: filter.source.clone(),
            contains: filter.contains.clone(),
            regex: filter.regex.clone(),
            ..Default::default()
        };
        match position {
            Position::Oldest => query.order = Some("oldest".into()),
            Position::Newest => query.order = Some("newest".into()),
            Position::After(cursor) => query.after = Some(cursor.clone()),
            Position::Before(cursor) => query.before = Some(cursor.clone()),
        }
        let page = self.rest()?.host_logs(host, &query).await?;
        Ok(LogPage { logs: page.logs, next_cursor: page.next_cursor, prev_cursor: page.prev_cursor, more: page.more })
    }

    /// Follows `host`'s lines that pass `filter` (its time range aside) over the live
    /// stream: every line after `after` (a page's `next_cursor`), else from `since_ms`, else
    /// from the newest line stored, then each new one as it is stored.
    pub async fn follow_logs(
        &self,
        host: &str,
        filter: &LogFilter,
        after: Option<&str>,
    ) -> Result<LogFollower, ClientError> {
        let follow = LogFollow {
            host: host.to_string(),
            after: after.map(str::to_string),
            since_ms: filter.since_ms,
            source: filter.source.clone(),
            contains: filter.contains.clone(),
            regex: filter.regex.clone(),
        };
        // Alerts off: this socket carries log lines only.
        let subscribe =
            ClientMessage { subscribe: Subscription { alerts: false, logs: Some(follow), ..Default::default() } };
        let socket = self.open_stream(&subscribe).await?;
        Ok(LogFollower { socket })
    }
}

/// A host's log lines as they are stored.
pub struct LogFollower {
    socket: Socket,
}

impl LogFollower {
    /// The next lines, in order; an error when the server refuses the follow (a bad regex)
    /// or the stream ends.
    pub async fn next_lines(&mut self) -> Result<Vec<LogLine>, ClientError> {
        use futures::StreamExt;
        while let Some(Ok(message)) = self.socket.next().await {
            let Message::Text(text) = message else { continue };
            // Messages of other types (and of types this build does not know) are not lines.
            match serde_json::from_str::<StreamMessage>(&text) {
                Ok(StreamMessage::Logs { logs, .. }) => return Ok(logs),
                Ok(StreamMessage::Error { message, .. }) => return Err(ClientError::Refused(message)),
                _ => {}
            }
        }
        Err(ClientError::Unreachable("the live stream".into()))
    }
}
