//! Prometheus' HTTP query API, per tenant, under `/prometheus/api/v1/…`: `query`,
//! `query_range`, `series`, `labels` and `label/{name}/values`, by GET or form POST, with
//! Prometheus' JSON shapes and error types, so Grafana's Prometheus data source and promtool
//! read SecuMon. Callers authenticate like everywhere else in the API (bearer access token or
//! API key) and see only their tenant's series.
//!
//! PromQL is evaluated by [`secumon_alert::promql`], the alert rules' evaluator grown to
//! ranges; this module reads what it asks for from the store, within bounds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secumon_alert::promql::{Answer, Fetch, Fetched, NAME_LABEL, Query, QueryError, SeriesMatcher};
use secumon_core::model::HOST_LABEL;
use secumon_core::{IngestBatch, Labels, SeriesKey, now_ms};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, StoreError};
use serde_json::{Value, json};

use super::alert_series::{self, AlertSeriesError};
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};
use crate::remote_write;

/// Most series one selector of a query may read; beyond, the query is refused.
pub const MAX_SERIES_PER_SELECTOR: usize = 20_000;
/// Most samples one query may read in all.
pub const MAX_SAMPLES_PER_QUERY: usize = 50_000_000;
/// How long a query may take unless it asks for less (`timeout`), as Prometheus' default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/prometheus/api/v1/query", get(instant_query).post(instant_query))
        .route("/prometheus/api/v1/query_range", get(range_query).post(range_query))
        .route("/prometheus/api/v1/series", get(series).post(series))
        .route("/prometheus/api/v1/labels", get(labels).post(labels))
        .route("/prometheus/api/v1/label/{name}/values", get(label_values))
        .route(
            "/prometheus/api/v1/write",
            post(remote_write).layer(DefaultBodyLimit::max(crate::remote_write::MAX_COMPRESSED_BYTES)),
        )
        .route_layer(axum::middleware::map_request(basic_as_bearer))
}

/// Prometheus clients that cannot send a header (promtool's instant queries, a URL with
/// `user:secret@`) send basic authentication: its password is taken as the bearer token, the
/// user name ignored. Only under this prefix; the rest of the API wants `Bearer`.
async fn basic_as_bearer(mut request: axum::extract::Request) -> axum::extract::Request {
    use base64::Engine;
    let headers = request.headers_mut();
    let secret = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, secret)| secret.to_string()));
    if let Some(secret) = secret
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {secret}"))
    {
        headers.insert(AUTHORIZATION, value);
    }
    request
}

/// An answer in Prometheus' error shape.
#[derive(Debug)]
struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "bad_data", message: message.into() }
    }

    /// A required parameter is absent, in Prometheus' words.
    fn missing(name: &str) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": missing"))
    }

    fn execution(message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, kind: "execution", message: message.into() }
    }
}

impl From<QueryError> for PromError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::BadData(message) => Self::bad_data(message),
            QueryError::Execution(message) => Self::execution(message),
        }
    }
}

impl From<AlertSeriesError> for PromError {
    fn from(error: AlertSeriesError) -> Self {
        match error {
            AlertSeriesError::Store(error) => error.into(),
            too_much => Self::execution(too_much.to_string()),
        }
    }
}

impl From<StoreError> for PromError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidQuery(message) => Self::bad_data(message),
            other => {
                tracing::error!(error = %other, "a Prometheus API query failed in the store");
                Self { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "internal", message: "the store failed".into() }
            }
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": self.kind, "error": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// The request's parameters: the query string's, then a form body's, as Prometheus merges them.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(query: Option<String>, body: &Bytes) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            pairs.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        pairs.extend(url::form_urlencoded::parse(body).into_owned());
        Self(pairs)
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    fn time(&self, name: &str) -> Result<Option<i64>, PromError> {
        self.one(name).map(|text| parse_time(name, text)).transpose()
    }

    fn matchers(&self) -> Result<Vec<SeriesMatcher>, PromError> {
        self.all("match[]").into_iter().map(|m| SeriesMatcher::parse(m).map_err(PromError::from)).collect()
    }

    fn limit(&self) -> Result<Option<usize>, PromError> {
        match self.one("limit") {
            None | Some("0") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| PromError::bad_data(format!("invalid limit {text:?}"))),
        }
    }
}

/// A Unix time in (fractional) seconds or RFC 3339, as milliseconds.
fn parse_time(name: &str, text: &str) -> Result<i64, PromError> {
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok((seconds * 1000.0).round() as i64);
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        PromError::bad_data(format!("invalid parameter \"{name}\": cannot parse {text:?} to a valid timestamp"))
    })?;
    let since = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| PromError::bad_data("times before 1970"))?;
    Ok(since.as_millis() as i64)
}

/// A duration in (fractional) seconds or Prometheus' notation (`15s`, `1m30s`, `2h`).
fn parse_duration(name: &str, text: &str) -> Result<i64, PromError> {
    let invalid =
        || PromError::bad_data(format!("invalid parameter \"{name}\": cannot parse {text:?} to a valid duration"));
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok((seconds * 1000.0).round() as i64)
        } else {
            Err(invalid())
        };
    }
    humantime::parse_duration(text).map(|d| d.as_millis() as i64).map_err(|_| invalid())
}

/// Prometheus' value text: shortest decimal, `NaN`, `+Inf`, `-Inf`.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Unix seconds, without a fraction when there is none (as Prometheus writes them).
fn time_json(ms: i64) -> Value {
    if ms % 1000 == 0 { json!(ms / 1000) } else { json!(ms as f64 / 1000.0) }
}

fn point(ms: i64, v: f64) -> Value {
    json!([time_json(ms), value_text(v)])
}

fn answer_json(answer: Answer) -> Value {
    match answer {
        Answer::Scalar(t, v) => json!({"resultType": "scalar", "result": point(t, v)}),
        Answer::Vector(t, elements) => json!({
            "resultType": "vector",
            "result": elements.into_iter().map(|(labels, v)| json!({"metric": labels, "value": point(t, v)})).collect::<Vec<_>>(),
        }),
        Answer::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series
                .into_iter()
                .map(|(labels, points)| json!({
                    "metric": labels,
                    "values": points.into_iter().map(|(t, v)| point(t, v)).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>(),
        }),
    }
}

/// `POST /prometheus/api/v1/write`: Prometheus remote write 1.0 (snappy-compressed protobuf),
/// stored for the caller's tenant (operator role) as one batch per host, each validated and
/// checked like an agent's; 204 once all are stored. A body or batch that is refused is
/// refused whole before anything is stored (400: the sender must not retry it); a store that
/// cannot write answers 503, which senders retry (re-sent samples replace themselves).
async fn remote_write(State(state): State<ApiState>, caller: Caller, body: Bytes) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operator)?;
    let request = remote_write::decode(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = now_ms();
    let mut batches = Vec::new();
    for (host, samples) in remote_write::samples_by_host(request).map_err(|e| ApiError::bad_request(e.to_string()))? {
        batches.push(super::ingest::validated(IngestBatch {
            agent_id: format!("{}{}:prometheus@{host}", super::agents::SCRIPT_ID_PREFIX, caller.tenant),
            sequence: super::ingest::next_sequence(),
            host,
            created_at_ms: now,
            samples,
            ..Default::default()
        })?);
    }
    for batch in batches {
        super::ingest::store_batch(&state, &caller, batch, now).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The bound of a query's work: its `timeout` parameter, at most the default.
fn timeout(params: &Params) -> Result<Duration, PromError> {
    match params.one("timeout") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(text) => Ok(Duration::from_millis(parse_duration("timeout", text)? as u64).min(DEFAULT_TIMEOUT)),
    }
}

/// Runs `work` within `limit`. Work that finished but took the whole limit timed out too
/// (as Prometheus' deadline does), so `timeout=0` always times out however quick the query.
async fn bounded<T>(limit: Duration, work: impl Future<Output = Result<T, PromError>>) -> Result<T, PromError> {
    let started = std::time::Instant::now();
    match tokio::time::timeout(limit, work).await {
        Ok(answer) if started.elapsed() < limit => answer,
        _ => Err(PromError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "timeout",
            message: format!("query timed out in query execution after {limit:?}"),
        }),
    }
}

/// `GET|POST /prometheus/api/v1/query`: the expression's value at `time` (default now).
async fn instant_query(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = Params::of(raw, &body);
    let text = params.one("query").ok_or_else(|| PromError::missing("query"))?;
    let at = params.time("time")?.unwrap_or_else(now_ms);
    let query = Query::parse(text)?;
    let limit = timeout(&params)?;
    bounded(limit, async {
        let data = read(&state, &caller.tenant, &query.fetches(at, at)).await?;
        let answer = evaluate(move || query.instant(&data, at)).await?;
        Ok(success(answer_json(answer)))
    })
    .await
}

/// `GET|POST /prometheus/api/v1/query_range`: the expression at each `step` from `start` to `end`.
async fn range_query(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = Params::of(raw, &body);
    let text = params.one("query").ok_or_else(|| PromError::missing("query"))?;
    let required = |name: &str| params.time(name)?.ok_or_else(|| PromError::missing(name));
    let (start, end) = (required("start")?, required("end")?);
    let step = params.one("step").ok_or_else(|| PromError::missing("step"))?;
    let step = parse_duration("step", step)?;
    if end < start {
        return Err(PromError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    if step <= 0 {
        return Err(PromError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let query = Query::parse(text)?;
    // Refused before anything is read: the evaluator says the same after.
    if (end - start) / step > secumon_alert::promql::MAX_POINTS_PER_SERIES {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let limit = timeout(&params)?;
    bounded(limit, async {
        let data = read(&state, &caller.tenant, &query.fetches(start, end)).await?;
        let answer = evaluate(move || query.range(&data, start, end, step)).await?;
        Ok(success(answer_json(answer)))
    })
    .await
}

/// Evaluation is CPU work: off the async threads.
async fn evaluate(work: impl FnOnce() -> Result<Answer, QueryError> + Send + 'static) -> Result<Answer, PromError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| PromError::execution(format!("the evaluation failed: {error}")))?
        .map_err(PromError::from)
}

/// The series of `tenant` that `matcher` selects, at most [`MAX_SERIES_PER_SELECTOR`].
async fn select(state: &ApiState, tenant: &str, matcher: &SeriesMatcher) -> Result<Vec<SeriesKey>, PromError> {
    let keys: Vec<SeriesKey> = state
        .store
        .list_series(tenant, matcher.name.as_deref())
        .await?
        .into_iter()
        .filter(|k| matcher.matches(k))
        .collect();
    if keys.len() > MAX_SERIES_PER_SELECTOR {
        return Err(PromError::execution(format!(
            "a selector matches {} series, more than the {MAX_SERIES_PER_SELECTOR} a query may read: narrow it with label matchers",
            keys.len()
        )));
    }
    Ok(keys)
}

/// The tenant's `ALERTS` from `from_ms` to `to_ms` ([`alert_series`]).
async fn alerts(state: &ApiState, tenant: &str, from_ms: i64, to_ms: i64) -> Result<Fetched, PromError> {
    let active = match state.tenant_alerting(tenant).await {
        Ok(alerting) => alerting.active().await,
        Err(error) => Err(error),
    }
    .map_err(|error| {
        tracing::error!(?error, "the tenant's alert engine cannot be reached");
        PromError::execution("the alert engine cannot be reached")
    })?;
    Ok(alert_series::load(&*state.store, tenant, &active, from_ms, to_ms, now_ms()).await?)
}

/// Every fetch's series with their samples, read from the store (and, for `ALERTS`, made
/// from the alert history).
async fn read(state: &ApiState, tenant: &str, fetches: &[Fetch<'_>]) -> Result<Vec<Fetched>, PromError> {
    let mut answers = Vec::with_capacity(fetches.len());
    let mut samples = 0usize;
    let alert_fetches = fetches.iter().filter(|f| alert_series::may_select(f.matcher));
    let alert_range = alert_fetches.fold(None, |range: Option<(i64, i64)>, f| {
        Some(range.map_or((f.from_ms, f.to_ms), |(from, to)| (from.min(f.from_ms), to.max(f.to_ms))))
    });
    let alert_data = match alert_range {
        Some((from, to)) => alerts(state, tenant, from, to).await?,
        None => Vec::new(),
    };
    for fetch in fetches {
        let keys = select(state, tenant, fetch.matcher).await?;
        let mut by_name: BTreeMap<&str, BTreeSet<&SeriesKey>> = BTreeMap::new();
        for key in &keys {
            by_name.entry(key.name.as_str()).or_default().insert(key);
        }
        let mut fetched: Fetched = Vec::with_capacity(keys.len());
        for (name, wanted) in by_name {
            // Each raw sample in its own 1 ms step: what the alert engine reads too.
            let mut selector = SeriesSelector::new(name);
            let hosts: BTreeSet<Option<&String>> = wanted.iter().map(|k| k.labels.get(HOST_LABEL)).collect();
            if let [Some(host)] = hosts.into_iter().collect::<Vec<_>>()[..] {
                // One host: the store's host index narrows the read.
                selector = selector.with(HOST_LABEL, host.clone());
            }
            let query = RangeQuery {
                selector,
                start_ms: fetch.from_ms,
                end_ms: fetch.to_ms.max(fetch.from_ms),
                step_ms: 1,
                aggregation: Aggregation::Last,
            };
            for series in state.store.query_range(tenant, &query).await? {
                if !wanted.contains(&series.series) {
                    continue;
                }
                samples += series.points.len();
                if samples > MAX_SAMPLES_PER_QUERY {
                    return Err(PromError::execution(
                        "query processing would load too many samples into memory in query execution",
                    ));
                }
                let points = series.points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
                fetched.push((series.series, points));
            }
        }
        if alert_series::may_select(fetch.matcher) {
            let within = |&&(ts, _): &&(i64, f64)| ts > fetch.from_ms && ts <= fetch.to_ms;
            fetched.extend(
                alert_data
                    .iter()
                    .filter(|(key, _)| fetch.matcher.matches(key))
                    .map(|(key, points)| (key.clone(), points.iter().filter(within).copied().collect::<Vec<_>>())),
            );
        }
        answers.push(fetched);
    }
    Ok(answers)
}

/// The series `params`' `match[]` selectors choose (every series when there are none and
/// `all_without_match`), those with samples between `start` and `end` when either is given.
async fn matching_series(
    state: &ApiState,
    tenant: &str,
    params: &Params,
    all_without_match: bool,
) -> Result<Vec<SeriesKey>, PromError> {
    let matchers = params.matchers()?;
    let mut keys: BTreeSet<SeriesKey> = BTreeSet::new();
    if matchers.is_empty() {
        if !all_without_match {
            return Err(PromError::bad_data("no match[] parameter provided"));
        }
        keys.extend(state.store.list_series(tenant, None).await?);
    }
    for matcher in &matchers {
        keys.extend(select(state, tenant, matcher).await?);
    }
    let (start, end) = (params.time("start")?, params.time("end")?);
    // `ALERTS` is made, not stored: those of the window (the last day when none is given),
    // for selectors that name it.
    if matchers.iter().any(|m| m.name.as_deref() == Some(alert_series::ALERTS)) {
        let end = end.unwrap_or_else(now_ms);
        let made = alerts(state, tenant, start.unwrap_or(end - 86_400_000), end).await?;
        keys.extend(made.into_iter().map(|(key, _)| key).filter(|key| matchers.iter().any(|m| m.matches(key))));
    }
    if start.is_none() && end.is_none() {
        return Ok(keys.into_iter().collect());
    }
    // Only series with data in the window: one step covering it, counted.
    let (start, end) = (start.unwrap_or(0), end.unwrap_or_else(now_ms));
    if end < start {
        return Err(PromError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    let names: BTreeSet<String> = keys.iter().map(|k| k.name.clone()).collect();
    let mut present = BTreeSet::new();
    for name in names {
        let query = RangeQuery {
            selector: SeriesSelector::new(name),
            start_ms: start,
            end_ms: end,
            step_ms: end - start + 1,
            aggregation: Aggregation::Count,
        };
        present.extend(state.store.query_range(tenant, &query).await?.into_iter().map(|s| s.series));
    }
    Ok(keys.into_iter().filter(|k| k.name == alert_series::ALERTS || present.contains(k)).collect())
}

fn truncated<T>(mut items: Vec<T>, limit: Option<usize>) -> Vec<T> {
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    items
}

/// `GET|POST /prometheus/api/v1/series`: the label sets of the series `match[]` selects.
async fn series(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = Params::of(raw, &body);
    let keys = matching_series(&state, &caller.tenant, &params, false).await?;
    let sets: Vec<Labels> = keys
        .into_iter()
        .map(|k| {
            let mut labels = k.labels;
            labels.insert(NAME_LABEL.into(), k.name);
            labels
        })
        .collect();
    Ok(success(json!(truncated(sets, params.limit()?))))
}

/// `GET|POST /prometheus/api/v1/labels`: label names, `__name__` included, sorted.
async fn labels(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = Params::of(raw, &body);
    let keys = matching_series(&state, &caller.tenant, &params, true).await?;
    let mut names: BTreeSet<String> = BTreeSet::new();
    for key in &keys {
        names.insert(NAME_LABEL.into());
        names.extend(key.labels.keys().cloned());
    }
    Ok(success(json!(truncated(names.into_iter().collect(), params.limit()?))))
}

/// `GET /prometheus/api/v1/label/{name}/values`: a label's values, sorted.
async fn label_values(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let params = Params::of(raw, &Bytes::new());
    let keys = matching_series(&state, &caller.tenant, &params, true).await?;
    let values: BTreeSet<String> = keys
        .into_iter()
        .filter_map(|k| if name == NAME_LABEL { Some(k.name) } else { k.labels.get(&name).cloned() })
        .collect();
    Ok(success(json!(truncated(values.into_iter().collect(), params.limit()?))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_durations_and_values_read_and_print_as_prometheus_does() {
        assert_eq!(parse_time("time", "1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("time", "2015-07-01T20:10:51.781Z").unwrap(), 1_435_781_451_781);
        assert!(parse_time("time", "yesterday").is_err());
        assert_eq!(parse_duration("step", "15").unwrap(), 15_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration("step", "1m30s").unwrap(), 90_000);
        assert!(parse_duration("step", "-1").is_err());
        assert_eq!(value_text(0.25), "0.25");
        assert_eq!(value_text(3.0), "3");
        assert_eq!(value_text(f64::INFINITY), "+Inf");
        assert_eq!(value_text(f64::NAN), "NaN");
        assert_eq!(time_json(1_000), json!(1));
        assert_eq!(time_json(1_500), json!(1.5));
    }

    #[test]
    fn form_bodies_add_to_the_query_string() {
        let params =
            Params::of(Some("match[]=up&start=1".into()), &Bytes::from_static(b"match%5B%5D=down%7Ba%3D%22b%22%7D"));
        assert_eq!(params.all("match[]"), ["up", "down{a=\"b\"}"]);
        assert_eq!(params.one("start"), Some("1"));
    }
}
