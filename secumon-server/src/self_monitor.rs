//! The server watching itself: whether its store takes writes is a series
//! (`secumon_store_writable`) that the default tenant's alert engine sees every second,
//! without going through the store it is about, and a built-in rule alerts on it. A rule of
//! the same name in the rules file replaces the built-in one, to route it to channels.

use std::sync::Arc;
use std::time::Duration;

use secumon_alert::RuleFile;
use secumon_core::model::{HOST_LABEL, TENANT_LABEL};
use secumon_core::{Labels, Sample, now_ms};
use secumon_store::DEFAULT_TENANT;
use tokio::sync::watch;

use crate::metrics::IngestMetrics;
use crate::tenants::AlertingByTenant;

const BUILTIN_RULES: &str = r#"
rules:
  - name: SecumonStoreUnwritable
    expr: secumon_store_writable == 0
    for: 10s
    resolve_after: 30s
    severity: critical
    annotations:
      summary: "the SecuMon server on {{ $labels.host }} cannot write to its store; agents keep their data until it can"
"#;

/// `rules` with the built-in rules it does not define itself.
pub fn with_builtin_rules(mut rules: RuleFile) -> RuleFile {
    let builtin = RuleFile::parse(BUILTIN_RULES, "built-in rules").expect("the built-in rules are valid");
    for rule in builtin.rules {
        if !rules.rules.iter().any(|own| own.name() == rule.name()) {
            rules.rules.push(rule);
        }
    }
    rules
}

/// Feeds the server's health to the default tenant's alert engine every second until
/// `stopped`.
pub async fn run(metrics: Arc<IngestMetrics>, alerting: Arc<AlertingByTenant>, mut stopped: watch::Receiver<bool>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let labels = Labels::from([(HOST_LABEL.to_string(), host), (TENANT_LABEL.to_string(), DEFAULT_TENANT.to_string())]);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = ticker.tick() => {}
        }
        let Some(engine) = alerting.running(DEFAULT_TENANT) else { continue };
        let writable = f64::from(u8::from(metrics.store.writable()));
        engine.observe_unstored(&[Sample::new("secumon_store_writable", labels.clone(), now_ms(), writable)]);
    }
}
