//! Dashboards (`/api/v1/dashboards*`): named layouts the console saves and reloads, one set
//! per tenant. The layout is the console's own JSON object, kept whole by the server.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// `POST /dashboards` and `PUT /dashboards/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DashboardRequest {
    pub name: String,
    pub layout: Map<String, Value>,
}

/// A saved dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Dashboard {
    pub id: String,
    pub name: String,
    pub layout: Map<String, Value>,
    pub created_by: String,
    pub updated_ms: i64,
}

// One dashboard of `GET /dashboards`, without its layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct DashboardSummary {
    pub id: String,
    pub name: String,
    pub updated_ms: i64,
}

// `GET /dashboards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct DashboardList {
    pub dashboards: Vec<DashboardSummary>,
    pub total: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}
