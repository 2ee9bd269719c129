//! `POST /api/v1/integrations/secuops`: events and metrics from the SecuOps platform, stored
//! into the caller's tenant through the ingest path scripts and agents use (wire validation,
//! tenant limits, series limits, live feed, alert engine), one batch per host.
//!
//! Everything is checked before anything is stored, and each problem is answered as a 400
//! that names the item and field (`events[3].time`), so the sender can fix it.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use secumon_api::{ErrorCode, SECUOPS_MAX_BODY_BYTES, SECUOPS_MAX_ITEMS, SecuOpsIngested, SecuOpsRequest, SecuOpsTime};
use secumon_core::batch::{MAX_LABEL_VALUE_LEN, is_valid_label_name, is_valid_metric_name};
use secumon_core::model::{HOST_LABEL, TENANT_LABEL};
use secumon_core::{Event, IngestBatch, Labels, Sample, now_ms};

use super::access::ApiJson;
use super::agents::SCRIPT_ID_PREFIX;
use super::ingest::{next_sequence, store_batch, validated};
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

/// The host of metrics without a `host` label.
const DEFAULT_HOST: &str = "secuops";
/// The kind of events that name none.
const DEFAULT_KIND: &str = "secuops";
const MAX_TITLE_BYTES: usize = 1024;
const MAX_HOST_BYTES: usize = 253;
/// Longest agent id the wire accepts (see `secumon_core::batch`).
const MAX_AGENT_ID_BYTES: usize = 128;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/integrations/secuops", post(ingest_secuops))
        .layer(DefaultBodyLimit::max(SECUOPS_MAX_BODY_BYTES))
}

/// Stores SecuOps events and metrics in the caller's tenant (operator role or above).
#[utoipa::path(post, path = "/api/v1/integrations/secuops", tag = "integrations", request_body = SecuOpsRequest,
    responses((status = 200, description = "Stored: counts of events, metrics and hosts", body = SecuOpsIngested)))]
pub(super) async fn ingest_secuops(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<SecuOpsRequest>,
) -> Result<Json<SecuOpsIngested>, ApiError> {
    caller.require(Role::Operator)?;
    let now = now_ms();
    let batches = batches(&caller.tenant, request, now)?;
    let (mut events, mut metrics) = (0, 0);
    for batch in &batches {
        events += batch.events.len();
        metrics += batch.samples.len();
    }
    let hosts = batches.len();
    // Checked whole before the first is stored: a refusal stores nothing, unless the store
    // or a tenant limit refuses a later host's batch (the answer then says so).
    for (stored, batch) in batches.into_iter().enumerate() {
        let host = batch.host.clone();
        if let Err(error) = store_batch(&state, &caller, batch, now).await {
            if stored > 0 {
                return Err(
                    error.adding(&format!("(the first {stored} of {hosts} hosts were stored; {host:?} was not)"))
                );
            }
            return Err(error);
        }
    }
    Ok(Json(SecuOpsIngested { events, metrics, hosts }))
}

/// The request as one validated batch per host, or a 400 naming the first bad field.
fn batches(tenant: &str, request: SecuOpsRequest, now: i64) -> Result<Vec<IngestBatch>, ApiError> {
    let items = request.events.len() + request.metrics.len();
    if items == 0 {
        return Err(ApiError::bad_request("`events` and `metrics` are both empty: nothing to store"));
    }
    if items > SECUOPS_MAX_ITEMS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("{items} events and metrics in one request; at most {SECUOPS_MAX_ITEMS}: split it"),
        ));
    }
    let mut by_host: BTreeMap<String, (Vec<Sample>, Vec<Event>)> = BTreeMap::new();
    for (i, event) in request.events.into_iter().enumerate() {
        let field = |name: &str| format!("events[{i}].{name}");
        check_host(&event.host, &field("host"))?;
        let title = event.title.trim();
        if title.is_empty() || title.len() > MAX_TITLE_BYTES {
            return Err(ApiError::bad_request(format!("`{}` must be 1 to {MAX_TITLE_BYTES} bytes", field("title"))));
        }
        let kind = event.kind.unwrap_or_else(|| DEFAULT_KIND.to_string());
        if !is_valid_metric_name(&kind) {
            return Err(ApiError::bad_request(format!(
                "`{}` {kind:?} must be a name like `playbook_run` (letters, digits, `_`, `:`)",
                field("kind")
            )));
        }
        let mut labels = Labels::new();
        for (name, value) in event.attributes {
            let at = field(&format!("attributes.{name}"));
            check_label_name(&name, &at)?;
            let text = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                _ => return Err(ApiError::bad_request(format!("`{at}` must be a string, a number or a boolean"))),
            };
            check_label_value(&text, &at)?;
            labels.insert(name, text);
        }
        let timestamp_ms = event.time.map(|t| millis(&t, &field("time"))).transpose()?.unwrap_or(now);
        let entry = by_host.entry(event.host).or_default();
        entry.1.push(Event { timestamp_ms, kind, severity: event.severity, labels, message: title.to_string() });
    }
    for (i, metric) in request.metrics.into_iter().enumerate() {
        let field = |name: &str| format!("metrics[{i}].{name}");
        if !is_valid_metric_name(&metric.name) {
            return Err(ApiError::bad_request(format!(
                "`{}` {:?} is not a Prometheus metric name (letters, digits, `_`, `:`; not a digit first)",
                field("name"),
                metric.name
            )));
        }
        if !metric.value.is_finite() {
            return Err(ApiError::bad_request(format!("`{}` must be a finite number", field("value"))));
        }
        let mut labels = metric.labels;
        let host = labels.remove(HOST_LABEL).unwrap_or_else(|| DEFAULT_HOST.to_string());
        check_host(&host, &field("labels.host"))?;
        for (name, value) in &labels {
            let at = field(&format!("labels.{name}"));
            check_label_name(name, &at)?;
            check_label_value(value, &at)?;
        }
        let timestamp_ms = metric.timestamp.map(|t| millis(&t, &field("timestamp"))).transpose()?.unwrap_or(now);
        by_host.entry(host).or_default().0.push(Sample::new(metric.name, labels, timestamp_ms, metric.value));
    }
    by_host
        .into_iter()
        .map(|(host, (samples, events))| {
            let batch = IngestBatch {
                agent_id: agent_id(tenant, &host),
                sequence: next_sequence(),
                host,
                agent_labels: Labels::from([("source".to_string(), "secuops".to_string())]),
                created_at_ms: now,
                samples,
                events,
                ..Default::default()
            };
            validated(batch)
        })
        .collect()
}

/// The sender id a host's SecuOps data is stored under: a script per host, so the agent
/// list shows each host SecuOps reports on (`api:<tenant>:secuops:<host>`).
fn agent_id(tenant: &str, host: &str) -> String {
    let id = format!("{SCRIPT_ID_PREFIX}{tenant}:secuops:{host}");
    if id.len() <= MAX_AGENT_ID_BYTES {
        return id;
    }
    // A very long host name: a digest keeps the id within the wire's limit, one per host.
    let digest = ring::digest::digest(&ring::digest::SHA256, host.as_bytes());
    let digest: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{SCRIPT_ID_PREFIX}{tenant}:secuops:#{digest}")
}

fn check_host(host: &str, field: &str) -> Result<(), ApiError> {
    if host.is_empty() || host.len() > MAX_HOST_BYTES || host.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to {MAX_HOST_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_label_name(name: &str, field: &str) -> Result<(), ApiError> {
    if !is_valid_label_name(name) {
        return Err(ApiError::bad_request(format!("`{field}`: {name:?} is not a label name (letters, digits, `_`)")));
    }
    if name == TENANT_LABEL || name == HOST_LABEL {
        return Err(ApiError::bad_request(format!("`{field}`: `{name}` is set by the server")));
    }
    Ok(())
}

fn check_label_value(value: &str, field: &str) -> Result<(), ApiError> {
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(ApiError::bad_request(format!("`{field}` is longer than {MAX_LABEL_VALUE_LEN} bytes")));
    }
    Ok(())
}

/// Latest time accepted (2100-01-01), as the wire's validation.
const MAX_TIME_MS: i64 = 4_102_444_800_000;

/// A SecuOps time in Unix milliseconds, or a 400 naming `field`.
fn millis(time: &SecuOpsTime, field: &str) -> Result<i64, ApiError> {
    let ms = match time {
        SecuOpsTime::UnixMs(ms) => *ms,
        SecuOpsTime::Rfc3339(text) => humantime::parse_rfc3339(text)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{field}` {text:?} is not an RFC 3339 time in UTC such as 2026-12-08T00:10:00Z"
                ))
            })?,
    };
    if !(1..MAX_TIME_MS).contains(&ms) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be between 1970 and 2100 (Unix milliseconds, or RFC 3339)"
        )));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> SecuOpsRequest {
        serde_json::from_value(json).unwrap()
    }

    fn refusal(json: serde_json::Value) -> String {
        match batches("acme", request(json), 1_000) {
            Ok(_) => panic!("accepted"),
            Err(error) => error.message().to_string(),
        }
    }

    #[test]
    fn items_are_grouped_by_host_with_their_times() {
        let batches = batches(
            "acme",
            request(serde_json::json!({
                "events": [{"severity": "high", "title": "playbook failed", "host": "web-1",
                            "time": "2026-12-08T00:10:00.5Z", "attributes": {"playbook": "restart", "run": 7, "ok": false}}],
                "metrics": [{"name": "secuops_runs_total", "labels": {"host": "web-1", "playbook": "restart"}, "value": 3},
                            {"name": "secuops_queue_depth", "value": 2, "timestamp": 1_700_000_000_000i64}]
            })),
            1_000,
        )
        .unwrap();
        assert_eq!(batches.len(), 2);
        let (default, web) = (&batches[0], &batches[1]);
        assert_eq!((default.host.as_str(), default.agent_id.as_str()), ("secuops", "api:acme:secuops:secuops"));
        assert_eq!(default.samples[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(web.host, "web-1");
        assert_eq!(web.events[0].timestamp_ms, 1_796_688_600_500);
        assert_eq!(web.events[0].labels["run"], "7");
        assert_eq!(web.events[0].labels["ok"], "false");
        assert_eq!(web.samples[0].timestamp_ms, 1_000, "untimed: now");
        assert!(!web.samples[0].series.labels.contains_key("host"));
    }

    #[test]
    fn refusals_name_the_field() {
        let event = |extra: serde_json::Value| {
            let mut e = serde_json::json!({"severity": "low", "title": "t", "host": "h"});
            e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::json!({"events": [e]})
        };
        assert!(refusal(serde_json::json!({})).contains("both empty"));
        assert!(refusal(event(serde_json::json!({"time": "yesterday"}))).contains("`events[0].time`"));
        assert!(refusal(event(serde_json::json!({"time": -5}))).contains("`events[0].time`"));
        assert!(refusal(event(serde_json::json!({"host": ""}))).contains("`events[0].host`"));
        assert!(refusal(event(serde_json::json!({"title": " "}))).contains("`events[0].title`"));
        assert!(refusal(event(serde_json::json!({"kind": "a b"}))).contains("`events[0].kind`"));
        assert!(refusal(event(serde_json::json!({"attributes": {"x": [1]}}))).contains("`events[0].attributes.x`"));
        assert!(refusal(event(serde_json::json!({"attributes": {"tenant": "b"}}))).contains("set by the server"));
        let metric = |m: serde_json::Value| serde_json::json!({"metrics": [m]});
        assert!(refusal(metric(serde_json::json!({"name": "1x", "value": 1}))).contains("`metrics[0].name`"));
        assert!(
            refusal(metric(serde_json::json!({"name": "x", "value": 1, "labels": {"a-b": "c"}})))
                .contains("`metrics[0].labels.a-b`")
        );
        let many: Vec<_> = (0..=SECUOPS_MAX_ITEMS).map(|_| serde_json::json!({"name": "x", "value": 1})).collect();
        assert!(refusal(serde_json::json!({"metrics": many})).contains("at most"));
    }

    #[test]
    fn long_hosts_keep_the_agent_id_within_the_wire_limit() {
        let host = "h".repeat(200);
        let id = agent_id("acme", &host);
        assert!(id.len() <= MAX_AGENT_ID_BYTES && id.starts_with("api:acme:secuops:#"), "{id}");
        assert_ne!(id, agent_id("acme", &"h".repeat(201)));
    }
}
