//! `POST /api/v1/ingest`: a script's samples and events, stored as one batch that meets the
//! rules an agent's does (validation, clock check, tenant limits).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secumon_api::{ErrorCode, IngestRequest, Ingested};
use secumon_core::{ClockReading, Event, IngestBatch, Sample, now_ms};
use secumon_store::StoreError;

use super::access::ApiJson;
use super::agents;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};
use crate::clock::ClockCheck;
use crate::live::LiveEvent;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/ingest", post(ingest))
}

/// A batch sequence for HTTP pushes: increasing, never reused while the clock moves on.
pub(super) fn next_sequence() -> u64 {
    static LAST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    *last = (*last + 1).max(now_ms() as u64 * 1_000);
    *last
}

/// Hands the server's own stored samples (a refused sender's clock offset) to the caller's
/// alert engine; the refusal is answered either way.
pub(super) async fn observe_own(state: &ApiState, caller: &Caller, own: Option<IngestBatch>) {
    let Some(own) = own else { return };
    let observed = match state.alerting(caller).await {
        Ok(alerting) => alerting.observe_own_batch(&caller.tenant, &own).await,
        Err(error) => Err(error),
    };
    if let Err(error) = observed {
        tracing::warn!(tenant = %caller.tenant, ?error, "a refused sender's clock offset did not reach the alert engine");
    }
}

/// Stores a script's samples and events as one batch, validated like an agent's.
#[utoipa::path(post, path = "/api/v1/ingest", tag = "data", request_body = IngestRequest, responses((status = 200, description = "Stored: counts of samples and events", body = Ingested)))]
pub(super) async fn ingest(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<IngestRequest>,
) -> Result<Json<Ingested>, ApiError> {
    caller.require(Role::Operator)?;
    if request.sent_at_ms.is_some_and(|sent| sent <= 0) {
        return Err(ApiError::bad_request("`sent_at_ms` must be milliseconds since 1970"));
    }
    let now = now_ms();
    // Untimed values are as of the script's "now", in its clock's frame, so a correction
    // moves them with the rest.
    let default_ms = request.sent_at_ms.unwrap_or(now);
    let batch = IngestBatch {
        // Per tenant: two tenants' scripts may share a name without meeting.
        agent_id: format!("{}{}:{}", agents::SCRIPT_ID_PREFIX, caller.tenant, request.source),
        sequence: next_sequence(),
        host: request.host,
        agent_labels: request.labels,
        created_at_ms: now,
        samples: request
            .samples
            .into_iter()
            .map(|s| Sample::new(s.name, s.labels, s.timestamp_ms.unwrap_or(default_ms), s.value))
            .collect(),
        events: request
            .events
            .into_iter()
            .map(|e| Event {
                timestamp_ms: e.timestamp_ms.unwrap_or(default_ms),
                kind: e.kind,
                severity: e.severity,
                labels: e.labels,
                message: e.message,
            })
            .collect(),
        // An HTTP request's round trip is unknown; on the networks scripts push over, the
        // way out is far below the tolerance.
        clock: request.sent_at_ms.map(|sent_at_ms| ClockReading { sent_at_ms, ..Default::default() }),
        ..Default::default()
    };
    let batch = validated(batch)?;
    // What the script sent, before the server adds its clock-offset sample.
    let (samples, events) = (batch.samples.len(), batch.events.len());
    let check = store_batch(&state, &caller, batch, now).await?;
    Ok(Json(Ingested {
        samples,
        events,
        clock_offset_ms: check.offset_ms,
        clock_corrected: check.offset_ms.map(|_| check.corrected),
    }))
}

/// `batch` through the wire validation, so an HTTP push meets the rules an agent's does.
pub(super) fn validated(batch: IngestBatch) -> Result<IngestBatch, ApiError> {
    IngestBatch::from_proto(batch.to_proto()).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Stores a validated batch received over HTTP at `now` for the caller's tenant as an
/// agent's would be (clock check, tenant limits, store, live feed, alert engine).
pub(super) async fn store_batch(
    state: &ApiState,
    caller: &Caller,
    mut batch: IngestBatch,
    now: i64,
) -> Result<ClockCheck, ApiError> {
    if let Some(clock) = &mut batch.clock {
        clock.received_at_ms = now;
    }
    let check = match state.clocks.prepare(&caller.tenant, &mut batch, now) {
        Ok(check) => check,
        Err(reason) => {
            let check = ClockCheck {
                offset_ms: batch.clock.map(|c| c.offset_ms()),
                round_trip_ms: 0,
                received_ms: now,
                corrected: false,
            };
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &reason).await;
            observe_own(state, caller, own).await;
            return Err(ApiError::bad_request(reason));
        }
    };
    if let Err(refused) = state.guard.admit(&caller.tenant, batch.value_count()) {
        return Err(ApiError::new(ErrorCode::IngestRateLimited, refused));
    }
    let health = &state.ingest_metrics.store;
    match state.store.write_batch(&caller.tenant, &batch).await {
        Ok(_) => {
            health.write_succeeded();
            state.clocks.committed(&caller.tenant, &batch, check)
        }
        Err(error) if error.fault().is_some() => {
            return Err(ApiError::new(ErrorCode::StoreUnavailable, health.write_failed(&error)));
        }
        Err(refused @ (StoreError::FutureTimestamp { .. } | StoreError::TenantMismatch { .. })) => {
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &refused.to_string()).await;
            observe_own(state, caller, own).await;
            return Err(refused.into());
        }
        Err(refused @ StoreError::SeriesLimit { new, .. }) => {
            let reason = crate::tenant_limits::Refusal::SeriesLimit;
            state.guard.count(&caller.tenant, reason, batch.value_count() as u64, new);
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &refused.to_string()).await;
            observe_own(state, caller, own).await;
            return Err(refused.into());
        }
        Err(error) => return Err(error.into()),
    }
    let batch = Arc::new(batch);
    state.live.publish(LiveEvent::Batch { tenant: caller.tenant.clone(), batch: Arc::clone(&batch) });
    state.alerting(caller).await?.observe_batch(&caller.tenant, &batch);
    Ok(check)
}
