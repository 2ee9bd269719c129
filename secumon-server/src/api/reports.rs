//! `GET /api/v1/reports`: the caller's tenant's report over a period (a super-admin names
//! another tenant with the `X-Secumon-Tenant` header), computed by [`crate::report`].

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{ErrorCode, Report, ReportQuery};
use secumon_core::now_ms;

use super::access::ApiQuery;
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::report::{self, ReportError};

/// The period a report covers unless asked otherwise.
pub(crate) const DEFAULT_PERIOD: &str = "30d";
/// Shortest and longest periods.
const MIN_PERIOD_MS: i64 = 3_600_000;
const MAX_PERIOD_MS: i64 = 366 * 86_400_000;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/reports", get(report))
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        match error {
            ReportError::Store(store) => store.into(),
            too_much @ ReportError::TooMuchHistory => ApiError::new(ErrorCode::BadRequest, too_much.to_string()),
        }
    }
}

/// A period's length in ms, within bounds; a 400 naming `period` otherwise.
pub(crate) fn period_ms(text: &str) -> Result<i64, ApiError> {
    let ms = i64::try_from(parse_duration("period", text)?.as_millis()).unwrap_or(i64::MAX);
    if !(MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&ms) {
        return Err(ApiError::bad_request(format!("`period` must be 1h to 366d, got {text:?}")));
    }
    Ok(ms)
}

#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportQuery), responses((status = 200, description = "The tenant's report over the period", body = Report)))]
pub(super) async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    let period = query.period.as_deref().map(str::trim).unwrap_or(DEFAULT_PERIOD);
    let length = period_ms(period)?;
    let now = now_ms();
    let end = query.end_ms.unwrap_or(now);
    if !(length..=now + 60_000).contains(&end) {
        return Err(ApiError::bad_request("`end_ms` must be a Unix time in ms, not in the future"));
    }
    Ok(Json(report::build(&*state.store, &caller.tenant, period, length, end, now).await?))
}
