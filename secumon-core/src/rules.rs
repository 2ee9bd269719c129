//! Alert rules as operators write them (a rules file's `rules:` entries, or the body of a
//! rule sent to the API): the definition every part shares. The alert engine
//! (`secumon-alert`) validates and compiles them; the API carries them as they are.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Labels;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Worth knowing; nobody need act now.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl AlertSeverity {
    /// The name rules files and the API use: `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Series, in the PromQL subset.
    #[default]
    Metric,
    /// Probe check results: `status != ok`, `duration > 2s`, `tls_cert_days_to_expiry < 14`.
    Check,
    /// Agents that stopped sending: `no_data: 2m`.
    Agent,
    /// Log lines matching `pattern`, counted over `window`: `count > 10`.
    Log,
    /// Open vulnerability findings: `severity >= critical` (`secuscan` is the seed's name).
    #[serde(alias = "secuscan")]
    Finding,
}

impl SourceKind {
    /// The name rules files and the API use: `metric`, `check`, `agent`, `log`, `finding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Check => "check",
            Self::Agent => "agent",
            Self::Log => "log",
            Self::Finding => "finding",
        }
    }
}

/// A rule as written in a rules file or sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The rule's name: it identifies the rule and is the `alertname` label of its alerts.
    pub name: String,
    /// What the rule watches (metrics when unset).
    #[serde(default)]
    pub source: SourceKind,
    /// The condition, in the language of the source (see [`SourceKind`]); `condition` is
    /// accepted too, as the seed writes it.
    #[serde(default, alias = "condition", skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// Check rules: which checks, by `check`, `kind` or `target` (all when empty).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub check: Labels,
    /// Agent rules: silence this long means the agent is down. Metric and check rules: an
    /// alert whose data stopped (stale) resolves after this long without data; unset, it
    /// stays stale until data returns or an operator resolves it.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub no_data: Option<Duration>,
    /// Agent rules: also watch sources pushing through `POST /ingest` (agent ids
    /// `api:<tenant>:<source>`), which are scripts rather than agents and, by default, never
    /// "down".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_sources: bool,
    /// Log rules: a regular expression lines must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Log rules: only lines from sources containing this text (a path, `journald`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_source: Option<String>,
    /// Log rules: how far back matching lines are counted (default 5m).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long the condition must stay false before a firing alert resolves (flap guard).
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Duration,
    /// How urgent the rule's alerts are.
    pub severity: AlertSeverity,
    /// Labels added to every alert of the rule (`team: ops`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Texts with `{{ $labels.NAME }}`, `{{ $value }}` and Prometheus' template functions
    /// (`{{ $value | humanizePercentage }}`) filled in per alert; `summary` is the one line
    /// lists show.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Notification channels, by name: the first level.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Further levels, notified in turn while a firing alert stays unacknowledged.
    #[serde(default)]
    pub escalation: Vec<EscalationLevel>,
    /// Alerts sharing these labels are notified together; unset, each alert alone.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long a group gathers alerts before it is sent (0: only those changing together).
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Duration,
}

/// One escalation step: `after` this long firing and unacknowledged, tell `channels` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// How long after the alert started firing this level is notified.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// The channels notified at this level, by name.
    pub channels: Vec<String>,
}
