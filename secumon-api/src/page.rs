//! Paged lists (`limit`, `offset`, and where a page sits) and the tenants' list.

use serde::{Deserialize, Serialize};

/// `limit` (default 100, at most 1000) and `offset` of a list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// At most this many items: 1 to 1000, default 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Skip this many items first (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

impl PageQuery {
    /// The first `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { limit: Some(limit), offset: None }
    }
}

/// Where a page sits in its list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Page {
    /// Items in the list, on every page.
    pub total: usize,
    /// Items skipped before this page.
    pub offset: usize,
    /// The most items a page holds.
    pub limit: usize,
    /// The offset of the next page, absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// `GET /tenants` (super-admins only): a page of tenant names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TenantList {
    /// The tenants' names on this page.
    pub tenants: Vec<String>,
    /// Where this page sits: `total`, `offset`, `limit`, `next_offset`.
    #[serde(flatten)]
    pub page: Page,
}
