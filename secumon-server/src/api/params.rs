//! What handlers read from query strings the same way everywhere: a page's bounds, a
//! duration, a lower-case enum name.

use std::time::Duration;

use super::{ApiError, Page, PageParams};

/// Paging a list the server holds whole.
pub(crate) trait Paging {
    /// The page's `(offset, limit)`, checked.
    fn bounds(&self) -> Result<(u32, u32), ApiError>;
    fn apply<T>(&self, all: Vec<T>) -> Result<(Vec<T>, Page), ApiError>;
}

impl Paging for PageParams {
    fn bounds(&self) -> Result<(u32, u32), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("`limit` must be 1 to 1000"));
        }
        Ok((self.offset.unwrap_or(0), limit))
    }

    fn apply<T>(&self, all: Vec<T>) -> Result<(Vec<T>, Page), ApiError> {
        let (offset, limit) = self.bounds()?;
        let (offset, limit) = (offset as usize, limit as usize);
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
        let next_offset = (offset + items.len() < total).then_some(offset + items.len());
        Ok((items, Page { total, offset, limit, next_offset }))
    }
}

/// The longest duration any parameter takes: beyond it, timestamps computed from it would
/// overflow or mean nothing.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

pub(super) fn parse_duration(name: &str, text: &str) -> Result<Duration, ApiError> {
    let duration = humantime::parse_duration(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        ApiError::bad_request(format!("`{name}` must be a duration such as 15m, 1h or 7d, got {text:?}"))
    })?;
    if duration > MAX_DURATION {
        return Err(ApiError::bad_request(format!("`{name}` is at most 10 years, got {text:?}")));
    }
    Ok(duration)
}

/// A lower-case enum name from a query parameter.
pub(super) fn named<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_lowercase()))
        .map_err(|_| ApiError::bad_request(format!("`{field}` {value:?} is not recognised")))
}
