//! The server watching itself: whether its store takes writes (`secumon_store_writable`)
//! and how many maintenance passes in a row failed, per task
//! (`secumon_store_maintenance_consecutive_failures{task}`), are series that the default
//! tenant's alert engine sees every second, without going through the store they are about,
//! and built-in rules alert on them. A rule of the same name in the rules file replaces the
//! built-in one, to route it to channels.

use std::sync::Arc;
use std::time::Duration;

use secumon_alert::RuleFile;
use secumon_core::model::{HOST_LABEL, TENANT_LABEL};
use secumon_core::{Labels, Sample, now_ms};
use secumon_store::{DEFAULT_TENANT, MaintenanceTask, Store};
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
  - name: SecumonStoreMaintenanceFailing
    expr: secumon_store_maintenance_consecutive_failures >= 3
    resolve_after: 30s
    severity: warning
    annotations:
      summary: "store {{ $labels.task }} on the SecuMon server on {{ $labels.host }} failed {{ $value }} times in a row (see its log): left alone, the head or the disk grows"
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
pub async fn run(
    metrics: Arc<IngestMetrics>,
    store: Arc<dyn Store>,
    alerting: Arc<AlertingByTenant>,
    mut stopped: watch::Receiver<bool>,
) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let labels = Labels::from([(HOST_LABEL.to_string(), host), (TENANT_LABEL.to_string(), DEFAULT_TENANT.to_string())]);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = ticker.tick() => {}
        }
        let Some(engine) = alerting.running(DEFAULT_TENANT) else { continue };
        let now = now_ms();
        let writable = f64::from(u8::from(metrics.store.writable()));
        let mut samples = vec![Sample::new("secumon_store_writable", labels.clone(), now, writable)];
        let maintenance = store.maintenance_health();
        for task in MaintenanceTask::ALL {
            let mut labels = labels.clone();
            labels.insert("task".to_string(), task.as_str().to_string());
            let failures = maintenance.consecutive_failures(task) as f64;
            samples.push(Sample::new("secumon_store_maintenance_consecutive_failures", labels, now, failures));
        }
        engine.observe_unstored(&samples);
    }
}
