//! SecuMon alerting. Rules are written in a PromQL subset ([`Condition`]) and evaluated as
//! samples arrive ([`AlertEngine::ingest`]), not on a scrape tick; [`AlertEngine::tick`] runs
//! the `for` and `resolve_after` timers. Every state change comes out as a [`Transition`]
//! for notifiers and history.
//!
//! ```
//! use secumon_alert::{AlertEngine, AlertState, RuleFile};
//! use secumon_core::{Labels, Sample};
//! let rules = RuleFile::parse("rules:\n  - {name: Hot, expr: temp > 50, severity: warning}\n", "inline")?.rules;
//! let mut engine = AlertEngine::new(rules);
//! let changes = engine.ingest(&[Sample::new("temp", Labels::new(), 1_000, 71.0)], 1_000);
//! assert_eq!(changes[0].to, AlertState::Firing);
//! # Ok::<(), secumon_core::ConfigError>(())
//! ```
//!
//! A [`Grouper`] turns transitions into [`Notification`]s (one per group of alerts that
//! changed together); notifications go through [`Dispatcher`] to [`Notifier`]s (signed
//! webhook, Slack, PagerDuty, email), retried with backoff and every attempt recorded. [`EngineState`] is what a
//! server saves so alerts stay firing across a restart without being notified twice.
//!
//! The same PromQL building blocks, grown to Prometheus' evaluation over stored history, answer
//! the Prometheus-compatible query API ([`promql::Query`]).
//!
//! Rules may escalate: further channels after a delay while a firing alert stays
//! unacknowledged; a resolution reaches every level that was told.
//!
//! Besides metrics, rules watch probe checks (as series: `status != ok`), agents that fall
//! silent (`no_data: 2m`, see [`AlertEngine::agent_seen`]), log lines matching a pattern
//! ([`AlertEngine::ingest_logs`]) and open vulnerability findings
//! ([`AlertEngine::ingest_findings`]).

#![warn(missing_docs)]

mod engine;
mod expr;
mod group;
mod notify;
pub mod promql;
mod rule;
mod template;

pub use engine::{
    Acknowledgement, ActiveAlert, AlertEngine, AlertState, DeletedAgent, EngineState, Silence, Transition, alert_id,
};
pub use expr::{Comparison, Condition, ExprError};
pub use group::{Grouper, Notification};
pub use notify::{
    ANSWER_EXCERPT_BYTES, ActionConfig, Answer, BodyFormat, ChannelConfig, DeliveryAttempt, Dispatcher,
    EmailAttachment, EmailNotifier, Notifier, NotifyError, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature,
};
pub use rule::{AlertSeverity, EscalationLevel, Rule, RuleFile, RuleSource, RuleSpec, SourceKind};
pub use template::{check_template, render_template};
