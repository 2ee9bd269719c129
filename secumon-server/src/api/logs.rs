//! `GET /api/v1/logs/hosts/{id}`: a host's stored log lines, and the query and line shapes
//! the live stream's log follow shares with it.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use secumon_store::StoreError;

use super::access::ApiQuery;
use super::{ApiError, ApiState, LogLine, LogsQuery};
use crate::auth::Caller;
use secumon_api::LogsPage;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/logs/hosts/{id}", get(host_logs))
}

/// The store query a `GET /logs/hosts/{id}` asks for.
pub(crate) trait LogsQueryExt {
    /// The store query this asks for, or why it cannot be asked.
    fn to_store(&self, host: &str) -> Result<secumon_store::LogQuery, StoreError>;
}

impl LogsQueryExt for LogsQuery {
    fn to_store(&self, host: &str) -> Result<secumon_store::LogQuery, StoreError> {
        use secumon_store::{LineFilter, LogOrder};
        let cursor = |text: &Option<String>| text.as_deref().map(str::parse).transpose();
        let (after, before) = (cursor(&self.after)?, cursor(&self.before)?);
        if after.is_some() && before.is_some() {
            return Err(StoreError::InvalidQuery("give `after` or `before`, not both".into()));
        }
        let filter = match (&self.contains, &self.regex) {
            (Some(_), Some(_)) => {
                return Err(StoreError::InvalidQuery("give `contains` or `regex`, not both".into()));
            }
            (Some(text), None) => Some(LineFilter::Contains(text.clone())),
            (None, Some(pattern)) => Some(LineFilter::regex(pattern)?),
            (None, None) => None,
        };
        let forward = match self.order.as_deref() {
            _ if after.is_some() => true,
            _ if before.is_some() => false,
            Some("oldest") => true,
            Some("newest") => false,
            None => self.since_ms.is_some(),
            Some(other) => {
                return Err(StoreError::InvalidQuery(format!("order is `oldest` or `newest`, not {other:?}")));
            }
        };
        Ok(secumon_store::LogQuery {
            host: host.to_string(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            after,
            before,
            source: self.source.clone(),
            filter,
            order: if forward { LogOrder::Forward } else { LogOrder::Backward },
            limit: self.limit.unwrap_or(100).clamp(1, secumon_store::logs::MAX_PAGE),
        })
    }
}

/// A stored line as the API shows it.
pub(crate) fn log_line(entry: secumon_store::LogEntry) -> LogLine {
    let record = entry.record;
    LogLine {
        cursor: entry.cursor.to_string(),
        timestamp_ms: record.timestamp_ms,
        source: record.source,
        labels: record.labels,
        line: record.line,
    }
}

/// A host's log lines: a time range, a source, a text or regex filter, paged by cursor.
/// Without `since_ms`, `after` or `before`: the latest `limit` lines, oldest first.
#[utoipa::path(get, path = "/api/v1/logs/hosts/{id}", tag = "data", params(("id" = String, Path, description = "Host name"), LogsQuery), responses((status = 200, description = "A page of log lines", body = LogsPage)))]
pub(super) async fn host_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<LogsPage>, ApiError> {
    let page = state.store.query_logs(&caller.tenant, &query.to_store(&host)?).await?;
    Ok(Json(LogsPage {
        host,
        logs: page.entries.into_iter().map(log_line).collect(),
        next_cursor: page.last.map(|c| c.to_string()),
        prev_cursor: page.first.map(|c| c.to_string()),
        more: page.more,
    }))
}
