//! A tenant's settings (`GET|PUT /api/v1/config`): the thresholds the API applies when it
//! answers for that tenant, stored as one record per tenant (absent settings take defaults),
//! and the retention of its samples per tier, which the store keeps and applies
//! (`Store::set_tier_retention`). A tenant's admin sets their own tenant's; a super-admin
//! any tenant's, naming it with the `X-Secumon-Tenant` header.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{RetentionSettings, TenantConfig};
use secumon_store::TierRetention;

use super::access::ApiJson;
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

const KIND: &str = "config";
const ID: &str = "tenant";

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/config", get(read).put(write))
}

/// The caller's tenant's settings, defaults where none are stored.
pub(super) async fn of(state: &ApiState, caller: &Caller) -> Result<TenantConfig, ApiError> {
    match state.store.get_record(&caller.tenant, KIND, ID).await? {
        Some(body) => serde_json::from_str(&body).map_err(|error| {
            tracing::error!(%error, tenant = %caller.tenant, "stored settings unreadable; using defaults");
            ApiError::bad_request("the stored settings are unreadable; PUT them again")
        }),
        None => Ok(TenantConfig::default()),
    }
}

/// How long the caller's tenant's agents may be silent before they are shown offline.
pub(super) async fn offline_after(state: &ApiState, caller: &Caller) -> Result<Duration, ApiError> {
    let config = of(state, caller).await?;
    Ok(parse_duration("agent_offline_after", &config.agent_offline_after).unwrap_or(Duration::from_secs(120)))
}

/// A duration in milliseconds as the API writes it: the largest whole unit (`30d`, `36h`).
fn duration_text(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The retention in force, as the API shows it.
fn retention_view(tiers: TierRetention) -> RetentionSettings {
    RetentionSettings {
        raw: Some(duration_text(tiers.raw_ms)),
        rollup_5m: Some(duration_text(tiers.rollup_5m_ms)),
        rollup_1h: Some(duration_text(tiers.rollup_1h_ms)),
    }
}

/// The policy `settings` asks for, tiers left out at the store's defaults; a 400 naming the
/// field (`retention.raw`, …) when a tier is not a duration or the tiers do not fit together.
fn retention_policy(settings: &RetentionSettings, defaults: TierRetention) -> Result<TierRetention, ApiError> {
    let tier = |name: &str, text: &Option<String>, default: i64| match text {
        Some(text) => {
            let duration = parse_duration(&format!("retention.{name}"), text)?;
            Ok::<_, ApiError>(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
        }
        None => Ok(default),
    };
    let tiers = TierRetention {
        raw_ms: tier("raw", &settings.raw, defaults.raw_ms)?,
        rollup_5m_ms: tier("rollup_5m", &settings.rollup_5m, defaults.rollup_5m_ms)?,
        rollup_1h_ms: tier("rollup_1h", &settings.rollup_1h, defaults.rollup_1h_ms)?,
    };
    tiers.validate().map_err(|e| ApiError::bad_request(format!("`retention.{}` {}", e.field, e.reason)))?;
    Ok(tiers)
}

/// Settings within their bounds.
fn validate(config: &TenantConfig) -> Result<(), ApiError> {
    let within = |name: &str, text: &str, min: u64, max: u64| {
        let value = parse_duration(name, text)?;
        if (min..=max).contains(&value.as_secs()) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("`{name}` must be between {min} s and {max} s")))
        }
    };
    within("agent_offline_after", &config.agent_offline_after, 30, 86_400)?;
    within("default_history_period", &config.default_history_period, 300, 31 * 86_400)
}

#[utoipa::path(get, path = "/api/v1/config", tag = "config", responses((status = 200, description = "The settings, with the retention in force", body = TenantConfig)))]
pub(super) async fn read(State(state): State<ApiState>, caller: Caller) -> Result<Json<TenantConfig>, ApiError> {
    let mut config = of(&state, &caller).await?;
    config.retention = Some(retention_view(state.store.tier_retention(&caller.tenant).await?));
    Ok(Json(config))
}

#[utoipa::path(put, path = "/api/v1/config", tag = "config", request_body = TenantConfig, responses((status = 200, description = "Stored; the retention in force", body = TenantConfig)))]
pub(super) async fn write(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(mut config): ApiJson<TenantConfig>,
) -> Result<(AuditNote, Json<TenantConfig>), ApiError> {
    caller.require(Role::Admin)?;
    validate(&config)?;
    state.reports.validate(&caller.tenant, &config.reports).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Everything is checked before anything is written.
    let defaults = state.store.retention_defaults();
    let retention = config.retention.take().map(|settings| retention_policy(&settings, defaults)).transpose()?;
    let body = serde_json::to_string(&config).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.put_record(&caller.tenant, KIND, ID, &body).await?;
    if let Some(tiers) = retention {
        // A policy equal to the defaults is no policy of its own: the tenant follows them.
        state.store.set_tier_retention(&caller.tenant, Some(tiers).filter(|t| *t != defaults)).await?;
    }
    config.retention = Some(retention_view(state.store.tier_retention(&caller.tenant).await?));
    tracing::info!(tenant = %caller.tenant, by = %caller.subject, ?config, "settings changed");
    let note =
        AuditNote::by(&caller, "config.update", "tenant").detail(serde_json::to_value(&config).unwrap_or_default());
    Ok((note, Json(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        assert_eq!(duration_text(30 * DAY), "30d");
        assert_eq!(duration_text(36 * 3_600_000), "36h");
        assert_eq!(duration_text(90 * 60_000), "90m");
        assert_eq!(duration_text(1_500), "1500ms");
    }

    #[test]
    fn a_policy_takes_defaults_for_absent_tiers_and_names_the_field_at_fault() {
        let defaults = TierRetention { raw_ms: 30 * DAY, rollup_5m_ms: 90 * DAY, rollup_1h_ms: 365 * DAY };
        let settings = |raw: Option<&str>, m5: Option<&str>| RetentionSettings {
            raw: raw.map(String::from),
            rollup_5m: m5.map(String::from),
            rollup_1h: None,
        };
        assert_eq!(retention_policy(&settings(None, None), defaults).unwrap(), defaults);
        let short = retention_policy(&settings(Some("7d"), Some("2w")), defaults).unwrap();
        assert_eq!(short, TierRetention { raw_ms: 7 * DAY, rollup_5m_ms: 14 * DAY, ..defaults });
        for (raw, m5, field) in [
            (Some("30m"), None, "retention.raw"),
            (Some("soon"), None, "retention.raw"),
            (None, Some("7d"), "retention.rollup_5m"),
            (Some("400d"), Some("400d"), "retention.rollup_1h"),
        ] {
            let error = retention_policy(&settings(raw, m5), defaults).unwrap_err();
            assert!(format!("{error:?}").contains(&format!("`{field}`")), "{raw:?} {m5:?}: {error:?}");
        }
    }
}
