//! A tenant's settings (`GET|PUT /api/v1/config`): the thresholds the API applies when it
//! answers for that tenant; absent settings take defaults.

use serde::{Deserialize, Serialize};

/// A tenant's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// An agent silent for this long is shown offline: `30s` to `1d`.
    #[serde(default = "default_offline_after")]
    pub agent_offline_after: String,
    /// The period a host history covers when the request names none: `5m` to `31d`.
    #[serde(default = "default_history_period")]
    pub default_history_period: String,
}

fn default_offline_after() -> String {
    "2m".into()
}

fn default_history_period() -> String {
    "1h".into()
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self { agent_offline_after: default_offline_after(), default_history_period: default_history_period() }
    }
}
