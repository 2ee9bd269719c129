//! Dashboards (`/api/v1/dashboards*`): named layouts the console saves and reloads, one set
//! per tenant. The layout is the console's own JSON object, kept whole by the server.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /dashboards` and `PUT /dashboards/{id}`: a dashboard to save.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DashboardRequest {
    /// Its name: 1 to 100 bytes, not blank.
    pub name: String,
    /// The console's layout, kept as given.
    pub layout: Map<String, Value>,
}

/// A saved dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Dashboard {
    /// The dashboard's id, given by the server.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The console's layout, as saved.
    pub layout: Map<String, Value>,
    /// Who created it.
    pub created_by: String,
    /// When it was last saved (Unix ms).
    pub updated_ms: i64,
}

/// One dashboard of `GET /dashboards`, without its layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct DashboardSummary {
    /// The dashboard's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was last saved (Unix ms).
    pub updated_ms: i64,
}

/// `GET /dashboards`: a page of the tenant's dashboards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct DashboardList {
    /// The dashboards on this page.
    pub dashboards: Vec<DashboardSummary>,
    /// Dashboards in the list, on every page.
    pub total: usize,
    /// The `offset` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}
