//! The audit log's writer: every administrative action (users, API keys, tenants, rules,
//! silences, acknowledgements, agents, settings) becomes one [`AuditEntry`] in the store,
//! recorded as the caller authenticated, with the client address the server saw.
//!
//! Handlers describe what they did with an [`AuditNote`] returned beside their answer; the
//! API's audit layer adds the address and time and writes it (`api/audit.rs`). Actions that
//! do not come through the REST API (agent enrollment over gRPC) call [`AuditLog::record`]
//! themselves.
//!
//! A failed audit write does not undo the action (it is committed by then): the entry goes
//! to the server log at error level in full, `secumon_audit_write_failures_total` counts it,
//! and the API answer carries `x-secumon-audit: failed`, so a gap in the trail is never
//! silent.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use secumon_core::now_ms;
use secumon_store::{AuditEntry, Store};

use crate::auth::Caller;

/// What a handler did, to be recorded once it has answered with success.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub tenant: String,
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    /// What changed, compactly; never a secret.
    pub detail: serde_json::Value,
}

impl AuditNote {
    /// `caller` did `action` to `target` in its tenant.
    pub fn by(caller: &Caller, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            tenant: caller.tenant.clone(),
            actor: caller.subject.clone(),
            action,
            target: target.into(),
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    #[must_use]
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Writes audit entries and counts what it wrote and failed to write.
pub struct AuditLog {
    store: Arc<dyn Store>,
    written: AtomicU64,
    failed: AtomicU64,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, written: AtomicU64::new(0), failed: AtomicU64::new(0) }
    }

    /// Records `note` as made from `client` now; `false` when the store refused it (logged
    /// and counted).
    pub async fn record(&self, note: AuditNote, client: Option<IpAddr>) -> bool {
        let entry = AuditEntry {
            id: 0,
            tenant: note.tenant,
            at_ms: now_ms(),
            actor: note.actor,
            client_ip: client.map(|ip| ip.to_canonical().to_string()).unwrap_or_default(),
            action: note.action.to_string(),
            target: note.target,
            detail: note.detail.to_string(),
        };
        match self.store.append_audit(&entry).await {
            Ok(_) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                // The log keeps what the store could not: the entry holds no secret.
                tracing::error!(%error, tenant = %entry.tenant, actor = %entry.actor, client_ip = %entry.client_ip,
                    action = %entry.action, target = %entry.target, detail = %entry.detail,
                    "cannot write the audit entry");
                false
            }
        }
    }

    /// The audit counters in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP secumon_audit_entries_total Audit entries written.\n# TYPE secumon_audit_entries_total counter\n\
             secumon_audit_entries_total {}",
            self.written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP secumon_audit_write_failures_total Audit entries the store refused (each logged in full).\n\
             # TYPE secumon_audit_write_failures_total counter\nsecumon_audit_write_failures_total {}",
            self.failed.load(Ordering::Relaxed)
        );
        out
    }
}
