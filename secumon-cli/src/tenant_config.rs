//! `secumon config show|set`: a tenant's settings on the server (`GET|PUT /api/v1/config`),
//! among them how long its samples are kept per tier. `set` changes only what it is given:
//! it reads the settings, applies the flags and writes them back.

use std::process::ExitCode;

use anyhow::Context;
use secumon_api::{RetentionSettings, TenantConfig};

use crate::api_client::{client, emit, json_text, refused};

/// Where the settings are and whose.
#[derive(clap::Args)]
pub struct TenantConfigTarget {
    /// Server REST address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Another tenant's settings (a super-admin's choice).
    #[arg(long)]
    tenant: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `secumon config set` changes; a flag left out keeps its setting.
#[derive(clap::Args)]
pub struct TenantConfigChange {
    #[command(flatten)]
    target: TenantConfigTarget,
    /// An agent silent for this long is shown offline (`30s` to `1d`).
    #[arg(long, value_name = "DURATION")]
    agent_offline_after: Option<String>,
    /// The period a host history covers when none is asked for (`5m` to `31d`).
    #[arg(long, value_name = "DURATION")]
    default_history_period: Option<String>,
    /// How long raw samples are kept (at least `1h`).
    #[arg(long, value_name = "DURATION")]
    retention_raw: Option<String>,
    /// How long 5-minute rollups are kept (at least as long as raw samples).
    #[arg(long = "retention-5m", value_name = "DURATION")]
    retention_5m: Option<String>,
    /// How long 1-hour rollups are kept (at least as long as 5-minute rollups).
    #[arg(long = "retention-1h", value_name = "DURATION")]
    retention_1h: Option<String>,
}

fn api(target: &TenantConfigTarget) -> anyhow::Result<secumon_api::Client> {
    match &target.tenant {
        None => client(&target.server),
        Some(tenant) => crate::api_client::client_builder(&target.server)
            .tenant(Some(tenant.clone()))
            .build()
            .with_context(|| format!("cannot act in tenant {tenant:?}")),
    }
}

/// `secumon config show`.
pub async fn show(target: TenantConfigTarget) -> anyhow::Result<ExitCode> {
    match api(&target)?.tenant_config().await {
        Ok(config) => print(&config, target.json),
        Err(error) => refused(error, &target.server),
    }
}

/// `secumon config set`.
pub async fn set(change: TenantConfigChange) -> anyhow::Result<ExitCode> {
    let target = &change.target;
    let api = api(target)?;
    let mut config = match api.tenant_config().await {
        Ok(config) => config,
        Err(error) => return refused(error, &target.server),
    };
    apply(&mut config, &change);
    match api.set_tenant_config(&config).await {
        Ok(stored) => print(&stored, target.json),
        Err(error) => refused(error, &target.server),
    }
}

/// The flags over the settings as read; retention is sent only when a retention flag is given
/// (the other tiers as read, so they stay as they are).
fn apply(config: &mut TenantConfig, change: &TenantConfigChange) {
    if let Some(value) = &change.agent_offline_after {
        config.agent_offline_after = value.clone();
    }
    if let Some(value) = &change.default_history_period {
        config.default_history_period = value.clone();
    }
    let tiers = [&change.retention_raw, &change.retention_5m, &change.retention_1h];
    if tiers.iter().all(|tier| tier.is_none()) {
        config.retention = None;
        return;
    }
    let current = config.retention.take().unwrap_or_default();
    config.retention = Some(RetentionSettings {
        raw: change.retention_raw.clone().or(current.raw),
        rollup_5m: change.retention_5m.clone().or(current.rollup_5m),
        rollup_1h: change.retention_1h.clone().or(current.rollup_1h),
    });
}

fn print(config: &TenantConfig, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        emit(&json_text(config)?)?;
    } else {
        let retention = config.retention.clone().unwrap_or_default();
        let shown = |value: Option<String>| value.unwrap_or_else(|| "default".into());
        emit(&format!(
            "agent_offline_after     {}\ndefault_history_period  {}\nretention raw           {}\n\
             retention 5m            {}\nretention 1h            {}\n",
            config.agent_offline_after,
            config.default_history_period,
            shown(retention.raw),
            shown(retention.rollup_5m),
            shown(retention.rollup_1h),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
