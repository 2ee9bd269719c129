//! What the console reads from and sends to the server's REST API.

use std::time::Duration;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::app::{AlertRow, FindingRow, HostDetail, HostRow, Range, Snapshot};

/// A super-admin's choice of tenant, per request.
const TENANT_HEADER: &str = "x-secumon-tenant";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
    #[error("unexpected answer from the server: {0}")]
    Shape(String),
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The live stream: says when something the console shows has changed.
pub struct LiveStream {
    socket: Socket,
}

impl LiveStream {
    /// Waits for the next batch, check result or alert; an error once the stream ends (the
    /// server stopped, or dropped this console as too slow).
    pub async fn next_change(&mut self) -> Result<(), ClientError> {
        use futures::StreamExt;
        while let Some(Ok(message)) = self.socket.next().await {
            let Message::Text(text) = message else { continue };
            let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match message["type"].as_str() {
                Some("host" | "samples" | "check" | "alert") => return Ok(()),
                Some("error") => {
                    return Err(ClientError::Refused(message["error"]["message"].as_str().unwrap_or("").to_string()));
                }
                _ => {}
            }
        }
        Err(ClientError::Unreachable("the live stream".into()))
    }
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// The tenant a super-admin looks at (`X-Secumon-Tenant`); `None`: the caller's own.
    tenant: Arc<watch::Sender<Option<String>>>,
}

impl ApiClient {
    pub fn new(server: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self {
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token,
            http,
            tenant: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Looks at `tenant` from now on (a super-admin's switch); `None`: the caller's own.
    pub fn set_tenant(&self, tenant: Option<String>) {
        self.tenant.send_replace(tenant);
    }

    /// Says when the tenant changes.
    pub fn tenant_changes(&self) -> watch::Receiver<Option<String>> {
        self.tenant.subscribe()
    }

    /// Every tenant, for a super-admin; refused for anyone else.
    pub async fn tenants(&self) -> Result<Vec<String>, ClientError> {
        let body = self.get("/tenants", &[("limit", "1000")]).await?;
        serde_json::from_value(body["tenants"].clone()).map_err(|e| ClientError::Shape(e.to_string()))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let request = match self.tenant.borrow().as_deref() {
            Some(tenant) => request.header(TENANT_HEADER, tenant),
            None => request,
        };
        let response = request.send().await.map_err(|_| ClientError::Unreachable(self.base.clone()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Refused(body["error"]["message"].as_str().unwrap_or("request refused").to_string()))
        }
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// Each series' latest value with its labels, over the last five minutes.
    async fn latest_values(&self, host: &str, metric: &str) -> Result<Vec<(Value, f64)>, ClientError> {
        let series = self.all_series(host, metric, "5m", "last").await?;
        Ok(series.into_iter().filter_map(|(labels, points)| Some((labels, points.last()?.1))).collect())
    }

    /// A host's overview gauges in one request: each metric's latest value, the largest
    /// across its series (e.g. the fullest filesystem).
    async fn gauges(&self, host: &str) -> std::collections::BTreeMap<String, f64> {
        let path = format!("/metrics/hosts/{host}");
        let Ok(summary) =
            self.get(&path, &[("metrics", "cpu_usage_ratio,memory_used_ratio,filesystem_used_ratio")]).await
        else {
            return Default::default();
        };
        let metrics = summary["metrics"].as_object().cloned().unwrap_or_default();
        metrics
            .into_iter()
            .filter_map(|(name, series)| {
                let values = series.as_array()?.iter().filter_map(|s| s["value"].as_f64());
                Some((name, values.reduce(f64::max)?))
            })
            .collect()
    }

    /// Opens the live stream of the caller's tenant (`/api/v1/stream`).
    pub async fn live(&self) -> Result<LiveStream, ClientError> {
        let subscribe = serde_json::json!({"subscribe": {"alerts": true, "checks": true}});
        Ok(LiveStream { socket: self.open_stream(&subscribe).await? })
    }

    /// Opens `/api/v1/stream` and sends `subscribe` as the first message.
    pub(crate) async fn open_stream(&self, subscribe: &Value) -> Result<Socket, ClientError> {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let unreachable = || ClientError::Unreachable(self.base.clone());
        // http://… → ws://…, https://… → wss://…
        let url = format!("ws{}/stream", self.base.strip_prefix("http").unwrap_or(&self.base));
        let mut request = url.into_client_request().map_err(|_| unreachable())?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().map_err(|_| ClientError::Refused("bad token".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        if let Some(tenant) = self.tenant.borrow().as_deref() {
            let value = tenant.parse().map_err(|_| ClientError::Refused("bad tenant name".into()))?;
            request.headers_mut().insert(TENANT_HEADER, value);
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.map_err(|_| unreachable())?;
        socket.send(Message::text(subscribe.to_string())).await.map_err(|_| unreachable())?;
        Ok(socket)
    }

    /// Hosts with their gauges, alerts and findings.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let agents = self.get("/agents", &[]).await?;
        let alerts: Vec<AlertRow> = serde_json::from_value(self.get("/alerts", &[]).await?["alerts"].clone())
            .map_err(|e| ClientError::Shape(e.to_string()))?;
        let findings: Vec<FindingRow> =
            serde_json::from_value(self.get("/findings", &[("limit", "500")]).await?["findings"].clone())
                .map_err(|e| ClientError::Shape(e.to_string()))?;
        let mut checks: Vec<crate::app::CheckRow> =
            serde_json::from_value(self.get("/checks", &[]).await?["checks"].clone())
                .map_err(|e| ClientError::Shape(e.to_string()))?;
        // Each probe's check durations over the last hour, for the sparklines.
        let probes: std::collections::BTreeSet<String> = checks.iter().map(|c| c.host.clone()).collect();
        for probe in probes {
            for (labels, points) in self.all_series(&probe, "check_duration_seconds", "1h", "avg").await? {
                if let Some(check) =
                    checks.iter_mut().find(|c| c.host == probe && labels["check"] == c.result.check_id.as_str())
                {
                    check.latency = points.into_iter().map(|(_, v)| v).collect();
                }
            }
        }
        let mut hosts = Vec::new();
        for agent in agents["agents"].as_array().into_iter().flatten() {
            let host = agent["host"].as_str().unwrap_or_default().to_string();
            let firing = alerts.iter().filter(|a| a.state == "firing" && a.labels.get("host") == Some(&host)).count();
            let labels = serde_json::from_value(agent["labels"].clone()).unwrap_or_default();
            let gauges = self.gauges(&host).await;
            hosts.push(HostRow {
                labels,
                cpu: gauges.get("cpu_usage_ratio").copied(),
                memory: gauges.get("memory_used_ratio").copied(),
                disk: gauges.get("filesystem_used_ratio").copied(),
                status: agent["status"].as_str().unwrap_or("unknown").to_string(),
                last_seen_ms: agent["last_seen_ms"].as_i64().unwrap_or(0),
                clock_offset_ms: agent["clock"]["offset_ms"].as_i64(),
                clock_corrected: agent["clock"]["corrected"].as_bool().unwrap_or(false),
                firing,
                host,
            });
        }
        Ok(Snapshot { hosts, alerts, findings, checks })
    }

    /// Each series' latest value under one of its labels: `(label value, value)`, largest first.
    async fn latest_by(&self, host: &str, metric: &str, label: &str) -> Result<Vec<(String, f64)>, ClientError> {
        let mut values: Vec<(String, f64)> = self
            .latest_values(host, metric)
            .await?
            .into_iter()
            .filter_map(|(labels, value)| Some((labels[label].as_str()?.to_string(), value)))
            .collect();
        values.sort_by(|a, b| b.1.total_cmp(&a.1));
        values.dedup_by(|a, b| a.0 == b.0);
        Ok(values)
    }

    /// Every series of a host's metric: its labels and points.
    async fn all_series(
        &self,
        host: &str,
        metric: &str,
        period: &str,
        agg: &str,
    ) -> Result<Vec<(Value, Vec<(i64, f64)>)>, ClientError> {
        let body = self
            .get(&format!("/metrics/hosts/{host}/history"), &[("metric", metric), ("period", period), ("agg", agg)])
            .await?;
        Ok(body["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let points = s["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?)))
                    .collect();
                (s["labels"].clone(), points)
            })
            .collect())
    }

    /// Per-second rate of counters, summed over their series (devices, interfaces).
    async fn summed_rate(&self, host: &str, metric: &str, range: Range) -> Result<Vec<(i64, f64)>, ClientError> {
        let mut sums: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
        for (_, points) in self.all_series(host, metric, range.period(), "last").await? {
            for pair in points.windows(2) {
                let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
                // A counter that went down restarted: no rate across it.
                if t1 > t0 && v1 >= v0 {
                    *sums.entry(t1).or_default() += (v1 - v0) / ((t1 - t0) as f64 / 1000.0);
                }
            }
        }
        Ok(sums.into_iter().collect())
    }

    /// A host's charts over `range`.
    pub async fn host(&self, host: &str, range: Range) -> Result<HostDetail, ClientError> {
        // The first series of a metric (one per host for these).
        let series = |metric: &'static str| async move {
            Ok::<_, ClientError>(
                self.all_series(host, metric, range.period(), "avg")
                    .await?
                    .into_iter()
                    .next()
                    .map(|(_, p)| p)
                    .unwrap_or_default(),
            )
        };
        Ok(HostDetail {
            host: host.to_string(),
            range: Some(range),
            cpu: series("cpu_usage_ratio").await?,
            memory: series("memory_used_ratio").await?,
            load: series("load1").await?,
            cpu_cores: self
                .all_series(host, "cpu_core_usage_ratio", range.period(), "avg")
                .await?
                .into_iter()
                .map(|(labels, points)| (labels["core"].as_str().unwrap_or("?").to_string(), points))
                .collect(),
            disk: vec![
                ("read".into(), self.summed_rate(host, "disk_read_bytes_total", range).await?),
                ("write".into(), self.summed_rate(host, "disk_written_bytes_total", range).await?),
            ],
            network: vec![
                ("receive".into(), self.summed_rate(host, "network_receive_bytes_total", range).await?),
                ("transmit".into(), self.summed_rate(host, "network_transmit_bytes_total", range).await?),
            ],
            failed_units: self
                .all_series(host, "systemd_unit_state", "5m", "last")
                .await?
                .into_iter()
                .filter(|(labels, points)| labels["state"] == "failed" && points.last().is_some_and(|p| p.1 > 0.0))
                .filter_map(|(labels, _)| labels["unit"].as_str().map(str::to_string))
                .collect(),
            containers: {
                let containers = self.latest_by(host, "container_up", "name").await?;
                (containers.iter().filter(|(_, up)| *up > 0.0).count(), containers.len())
            },
            filesystems: self.latest_by(host, "filesystem_used_ratio", "mountpoint").await?,
            processes: self.latest_by(host, "process_cpu_ratio", "name").await?,
            logs: self.get(&format!("/logs/hosts/{host}"), &[("limit", "50")]).await?["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| format!("{} {}", l["source"].as_str().unwrap_or(""), l["line"].as_str().unwrap_or("")))
                .collect(),
        })
    }

    /// Silences alerts with exactly `matchers` for `duration`.
    pub async fn silence(
        &self,
        matchers: &std::collections::BTreeMap<String, String>,
        duration: &str,
        by: &str,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({"matchers": matchers, "duration": duration, "created_by": by,
            "comment": "from the console"});
        self.send(self.http.post(format!("{}/silences", self.base)).json(&body)).await.map(|_| ())
    }

    /// The silences in force.
    pub async fn silences(&self) -> Result<Vec<crate::app::SilenceRow>, ClientError> {
        let body = self.get("/silences", &[]).await?;
        Ok(body["silences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| serde_json::from_value(s.clone()).ok())
            .collect())
    }

    /// Ends a silence now.
    pub async fn expire_silence(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(format!("{}/silences/{id}", self.base))).await.map(|_| ())
    }

    /// A rule's latest history entries, newest first, one line each.
    pub async fn rule_history(&self, rule: &str, now_ms: i64) -> Result<Vec<String>, ClientError> {
        let body = self.get(&format!("/alert-rules/{rule}/history"), &[("limit", "50")]).await?;
        Ok(body["history"].as_array().into_iter().flatten().map(|entry| history_line(entry, now_ms)).collect())
    }

    pub async fn acknowledge(&self, id: &str, by: &str, comment: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({"by": by, "comment": comment});
        self.send(self.http.post(format!("{}/alerts/{id}/acknowledge", self.base)).json(&body)).await.map(|_| ())
    }
}

/// One history entry as a line: when, what, and the labels it concerned.
fn history_line(entry: &Value, now_ms: i64) -> String {
    let ago = crate::render::ago(now_ms, entry["at_ms"].as_i64().unwrap_or(0));
    let labels = entry["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "tenant"))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let what = match entry["kind"].as_str().unwrap_or("?") {
        "transition" => format!(
            "{} → {} (value {})",
            entry["from"].as_str().unwrap_or("?"),
            entry["to"].as_str().unwrap_or("?"),
            entry["value"]
        ),
        "delivery_failed" => format!("delivery to {} failed: {}", entry["channel"], entry["error"]),
        other => other.replace('_', " "),
    };
    format!("{ago:>9}  {what}  {labels}")
}
