//! A tenant's settings (`GET|PUT /api/v1/config`): the thresholds the API applies when it
//! answers for that tenant, and how long its samples are kept per tier; absent settings take
//! defaults.

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
    /// How long the tenant's samples are kept, tier by tier. Always in an answer (the
    /// retention in force); a `PUT` without it leaves the retention as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSettings>,
    /// Reports the server e-mails on a schedule, each once per period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportSchedule>,
}

/// A report e-mailed every day, week or month through one of the server's e-mail channels,
/// covering the period that just ended (UTC: a day; a week from Monday; a calendar month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// `daily`, `weekly` or `monthly`.
    pub every: String,
    /// `pdf` (default), `xlsx`, `html` or `json`: the attachment's format.
    #[serde(default = "default_report_format")]
    pub format: String,
    /// The e-mail channel (of the server's rules file, open to the tenant) it goes through.
    pub channel: String,
    /// Recipients; the channel's own when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

fn default_report_format() -> String {
    "pdf".into()
}

/// How long a tenant's samples are kept in each tier, as durations (`12h`, `30d`). In a `PUT`,
/// a tier left out takes the server's default (so `{}` gives the tenant the defaults again);
/// each tier must be kept at least as long as the finer one, and raw samples at least `1h`,
/// at most `3650d` each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Raw samples (every sample as sent; p95 and recent ranges read them). Default `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// 5-minute rollups. Default `90d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_5m: Option<String>,
    /// 1-hour rollups. Default `365d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_1h: Option<String>,
}

fn default_offline_after() -> String {
    "2m".into()
}

fn default_history_period() -> String {
    "1h".into()
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            agent_offline_after: default_offline_after(),
            default_history_period: default_history_period(),
            retention: None,
            reports: Vec::new(),
        }
    }
}
