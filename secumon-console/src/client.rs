//! What the console reads from and sends to the server's REST API, through the typed
//! client of `secumon-api`; the rows the screens draw are made from its answers here.

use std::time::Duration;

use std::sync::Arc;

use secumon_api::{
    AcknowledgeRequest, Aggregation, ClientMessage, FindingsQuery, HistoryFilter, HistoryQuery, Labels, LogsQuery,
    OverviewQuery, PageQuery, SilenceRequest, StreamMessage, Subscription, TENANT_HEADER,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::app::{AlertRow, FindingRow, HostDetail, HostRow, Range, Snapshot};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A REST call failed: unreachable, refused (with the API's error code) or unreadable.
    #[error(transparent)]
    Api(#[from] secumon_api::ClientError),
    /// The live stream could not be opened or ended; names what could not be reached.
    #[error("cannot reach {0}")]
    Unreachable(String),
    /// The server refused (its message on the stream), or the token or tenant name cannot
    /// be sent as a header.
    #[error("{0}")]
    Refused(String),
    /// A stream message that does not read as expected.
    #[error("unexpected answer from the server: {0}")]
    Shape(String),
}

/// An open `/api/v1/stream` WebSocket.
pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the live stream says changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A host's values arrived: it was seen now, with these gauges (the largest of its
    /// series in the batch, e.g. the fullest filesystem); the overview updates that row.
    Host(crate::app::LiveHost),
    /// A check ran or an alert moved: the lists are fetched again (not the hosts).
    Activity,
}

/// The gauges the overview shows, as the stream names them.
const GAUGES: [&str; 3] = ["cpu_usage_ratio", "memory_used_ratio", "filesystem_used_ratio"];

/// The live stream: says what changed.
pub struct LiveStream {
    socket: Socket,
}

impl LiveStream {
    /// Waits for the next change; an error once the stream ends (the server stopped, or
    /// dropped this console as too slow).
    pub async fn next_change(&mut self) -> Result<Change, ClientError> {
        use futures::StreamExt;
        while let Some(Ok(message)) = self.socket.next().await {
            let Message::Text(text) = message else { continue };
            // A message this build does not know (a newer server's) changes nothing here.
            let Ok(message) = serde_json::from_str::<StreamMessage>(&text) else { continue };
            if let Some(change) = change_of(message)? {
                return Ok(change);
            }
        }
        Err(ClientError::Unreachable("the live stream".into()))
    }
}

/// The change one stream message means, if any.
pub fn change_of(message: StreamMessage) -> Result<Option<Change>, ClientError> {
    Ok(match message {
        StreamMessage::Host { host, at_ms, .. } => {
            Some(Change::Host(crate::app::LiveHost { host, seen_ms: at_ms, ..Default::default() }))
        }
        StreamMessage::Samples { host, samples, .. } => {
            let mut live = crate::app::LiveHost { host, ..Default::default() };
            for sample in samples {
                let Some(value) = sample.value else { continue };
                let slot = match sample.name.as_str() {
                    "cpu_usage_ratio" => &mut live.cpu,
                    "memory_used_ratio" => &mut live.memory,
                    "filesystem_used_ratio" => &mut live.disk,
                    _ => continue,
                };
                *slot = Some(slot.map_or(value, |v: f64| v.max(value)));
            }
            Some(Change::Host(live))
        }
        StreamMessage::Check { .. } | StreamMessage::Alert { .. } => Some(Change::Activity),
        StreamMessage::Error { message, .. } => return Err(ClientError::Refused(message)),
        StreamMessage::Subscribed { .. } | StreamMessage::Logs { .. } => None,
    })
}

/// Rows one overview request asks for (the server's most): up to 10 000 hosts in one call.
const OVERVIEW_PAGE: u32 = 10_000;

/// The console's client of one server: REST calls and the live stream, in the tenant
/// looked at. Cheap to clone; clones share the tenant choice.
#[derive(Clone)]
pub struct ApiClient {
    /// The REST API, without a tenant: [`ApiClient::rest`] adds the one looked at.
    api: secumon_api::Client,
    /// `…/api/v1`, for the live stream's WebSocket.
    base: String,
    token: Option<String>,
    /// The tenant a super-admin looks at (`X-Secumon-Tenant`); `None`: the caller's own.
    tenant: Arc<watch::Sender<Option<String>>>,
    /// The overview covers every tenant (a super-admin grouping by tenant).
    all_tenants: Arc<std::sync::atomic::AtomicBool>,
}

impl ApiClient {
    /// A client of the server at `server` (`http://host:port`), refused when the address or
    /// the token cannot be used.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let api =
            secumon_api::Client::builder(server).token_opt(token.clone()).timeout(Duration::from_secs(10)).build()?;
        Ok(Self {
            api,
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token,
            tenant: Arc::new(watch::Sender::new(None)),
            all_tenants: Arc::default(),
        })
    }

    /// The REST client acting in the tenant looked at now.
    pub(crate) fn rest(&self) -> Result<secumon_api::Client, ClientError> {
        Ok(self.api.with_tenant(self.tenant.borrow().clone())?)
    }

    /// Looks at `tenant` from now on (a super-admin's switch); `None`: the caller's own.
    pub fn set_tenant(&self, tenant: Option<String>) {
        self.tenant.send_replace(tenant);
    }

    /// The overview covers every tenant from now on (`true`, a super-admin's choice), or the
    /// one looked at.
    pub fn set_all_tenants(&self, all: bool) {
        self.all_tenants.store(all, std::sync::atomic::Ordering::Relaxed);
    }

    /// Says when the tenant changes.
    pub fn tenant_changes(&self) -> watch::Receiver<Option<String>> {
        self.tenant.subscribe()
    }

    /// Every tenant, for a super-admin; refused for anyone else.
    pub async fn tenants(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.rest()?.tenants(&PageQuery::first(1000)).await?.tenants)
    }

    /// Each series' latest value with its labels, over the last five minutes.
    async fn latest_values(&self, host: &str, metric: &str) -> Result<Vec<(Labels, f64)>, ClientError> {
        let series = self.all_series(host, metric, "5m", Aggregation::Last).await?;
        Ok(series.into_iter().filter_map(|(labels, points)| Some((labels, points.last()?.1))).collect())
    }

    /// Opens the live stream of the caller's tenant (`/api/v1/stream`).
    pub async fn live(&self) -> Result<LiveStream, ClientError> {
        let metrics = GAUGES.iter().map(|g| g.to_string()).collect();
        let subscribe =
            ClientMessage { subscribe: Subscription { alerts: true, checks: true, metrics, ..Default::default() } };
        Ok(LiveStream { socket: self.open_stream(&subscribe).await? })
    }

    /// Opens `/api/v1/stream` and sends `subscribe` as the first message.
    pub(crate) async fn open_stream(&self, subscribe: &impl serde::Serialize) -> Result<Socket, ClientError> {
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
        let subscribe = serde_json::to_string(subscribe).map_err(|e| ClientError::Shape(e.to_string()))?;
        socket.send(Message::text(subscribe)).await.map_err(|_| unreachable())?;
        Ok(socket)
    }

    /// Every host of the overview, page after page (`GET /overview`, by name), with the
    /// number of pages it took.
    pub async fn overview(&self) -> Result<(Vec<HostRow>, usize), ClientError> {
        let all = self.all_tenants.load(std::sync::atomic::Ordering::Relaxed);
        let mut hosts: Vec<HostRow> = Vec::new();
        let mut pages = 0;
        let api = self.rest()?;
        loop {
            let query = OverviewQuery {
                sort: Some("name".into()),
                limit: Some(OVERVIEW_PAGE),
                offset: Some(hosts.len() as u32),
                all_tenants: all.then_some(true),
                ..Default::default()
            };
            let body = api.overview(&query).await?;
            pages += 1;
            let more = body.hosts.len();
            hosts.extend(body.hosts.into_iter().map(host_row));
            match body.next_offset {
                // The list moved under the paging (a host came or went): read it again.
                Some(next) if next != hosts.len() => {
                    hosts.clear();
                }
                Some(_) if more > 0 => {}
                _ => return Ok((hosts, pages)),
            }
        }
    }

    /// Alerts, findings and checks (what the stream's `Activity` changes).
    pub async fn activity(&self) -> Result<Snapshot, ClientError> {
        let api = self.rest()?;
        let alerts: Vec<AlertRow> = api.alerts(&Default::default()).await?.alerts.into_iter().map(alert_row).collect();
        let findings_query = FindingsQuery { limit: Some(500), ..Default::default() };
        let findings: Vec<FindingRow> =
            api.findings(&findings_query).await?.findings.into_iter().map(finding_row).collect();
        let mut checks: Vec<crate::app::CheckRow> = api.checks().await?.checks.into_iter().map(check_row).collect();
        // Each probe's check durations over the last hour, for the sparklines.
        let probes: std::collections::BTreeSet<String> = checks.iter().map(|c| c.host.clone()).collect();
        for probe in probes {
            for (labels, points) in self.all_series(&probe, "check_duration_seconds", "1h", Aggregation::Avg).await? {
                if let Some(check) = checks.iter_mut().find(|c| {
                    c.host == probe && labels.get("check").map(String::as_str) == Some(c.result.check_id.as_str())
                }) {
                    check.latency = points.into_iter().map(|(_, v)| v).collect();
                }
            }
        }
        Ok(Snapshot { hosts: Vec::new(), alerts, findings, checks })
    }

    /// Every host with its gauges and alerts, and the alerts, findings and checks.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let (hosts, _) = self.overview().await?;
        Ok(Snapshot { hosts, ..self.activity().await? })
    }

    /// Each series' latest value under one of its labels: `(label value, value)`, largest first.
    async fn latest_by(&self, host: &str, metric: &str, label: &str) -> Result<Vec<(String, f64)>, ClientError> {
        let mut values: Vec<(String, f64)> = self
            .latest_values(host, metric)
            .await?
            .into_iter()
            .filter_map(|(labels, value)| Some((labels.get(label)?.clone(), value)))
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
        agg: Aggregation,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, ClientError> {
        let history = self.rest()?.host_history(host, &HistoryQuery::new(metric, period, agg)).await?;
        // Steps without a value (`null`) are left out of the charts.
        Ok(history
            .series
            .into_iter()
            .map(|s| (s.labels, s.points.into_iter().filter_map(|(t, v)| Some((t, v?))).collect()))
            .collect())
    }

    /// Per-second rate of counters, summed over their series (devices, interfaces).
    async fn summed_rate(&self, host: &str, metric: &str, range: Range) -> Result<Vec<(i64, f64)>, ClientError> {
        let mut sums: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
        for (_, points) in self.all_series(host, metric, range.period(), Aggregation::Last).await? {
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
                self.all_series(host, metric, range.period(), Aggregation::Avg)
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
                .all_series(host, "cpu_core_usage_ratio", range.period(), Aggregation::Avg)
                .await?
                .into_iter()
                .map(|(labels, points)| (labels.get("core").map_or("?", String::as_str).to_string(), points))
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
                .all_series(host, "systemd_unit_state", "5m", Aggregation::Last)
                .await?
                .into_iter()
                .filter(|(labels, points)| {
                    labels.get("state").is_some_and(|s| s == "failed") && points.last().is_some_and(|p| p.1 > 0.0)
                })
                .filter_map(|(mut labels, _)| labels.remove("unit"))
                .collect(),
            containers: {
                let containers = self.latest_by(host, "container_up", "name").await?;
                (containers.iter().filter(|(_, up)| *up > 0.0).count(), containers.len())
            },
            filesystems: self.latest_by(host, "filesystem_used_ratio", "mountpoint").await?,
            processes: self.latest_by(host, "process_cpu_ratio", "name").await?,
            logs: self
                .rest()?
                .host_logs(host, &LogsQuery { limit: Some(50), ..Default::default() })
                .await?
                .logs
                .into_iter()
                .map(|l| format!("{} {}", l.source, l.line))
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
        let request = SilenceRequest {
            matchers: matchers.clone(),
            duration: duration.to_string(),
            created_by: Some(by.to_string()),
            comment: "from the console".into(),
        };
        self.rest()?.add_silence(&request).await?;
        Ok(())
    }

    /// The silences in force.
    pub async fn silences(&self) -> Result<Vec<crate::app::SilenceRow>, ClientError> {
        Ok(self.rest()?.silences().await?.silences.into_iter().map(silence_row).collect())
    }

    /// Ends a silence now.
    pub async fn expire_silence(&self, id: &str) -> Result<(), ClientError> {
        self.rest()?.expire_silence(id).await?;
        Ok(())
    }

    /// A rule's latest history entries, newest first, one line each.
    pub async fn rule_history(&self, rule: &str, now_ms: i64) -> Result<Vec<String>, ClientError> {
        let filter = HistoryFilter { limit: Some(50), ..Default::default() };
        let history = self.rest()?.rule_history(rule, &filter).await?;
        Ok(history.history.iter().map(|entry| history_line(entry, now_ms)).collect())
    }

    /// Acknowledges alert `id` as user `by`, with `comment`.
    pub async fn acknowledge(&self, id: &str, by: &str, comment: &str) -> Result<(), ClientError> {
        let request = AcknowledgeRequest { by: Some(by.to_string()), comment: comment.to_string() };
        self.rest()?.acknowledge(id, &request).await?;
        Ok(())
    }
}

/// An overview row as the console keeps it.
fn host_row(host: secumon_api::OverviewHost) -> HostRow {
    HostRow {
        tenant: host.tenant,
        agent_id: host.agent_id,
        host: host.host,
        labels: host.labels,
        kind: host.kind,
        status: host.status,
        cpu: host.cpu,
        memory: host.memory,
        disk: host.disk,
        last_seen_ms: host.last_seen_ms,
        firing: host.firing,
        clock_offset_ms: host.clock_offset_ms,
        clock_corrected: host.clock_corrected,
        refused_reason: host.refused_reason,
    }
}

fn alert_row(alert: secumon_api::Alert) -> AlertRow {
    AlertRow {
        id: alert.id,
        rule: alert.rule,
        state: alert.state.as_str().to_string(),
        severity: alert.severity.as_str().to_string(),
        labels: alert.labels,
        since_ms: alert.since_ms,
        value: alert.value,
        acknowledged: alert.acknowledged.map(|a| crate::app::Acknowledged { by: a.by, comment: a.comment }),
        annotations: alert.annotations,
    }
}

/// The name a unit enum has in JSON (`critical`, `open`), as the rows show it.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn finding_row(finding: secumon_api::Finding) -> FindingRow {
    FindingRow {
        severity: wire_name(&finding.severity),
        status: wire_name(&finding.status),
        id: finding.id,
        asset: finding.asset,
        title: finding.title,
    }
}

fn check_row(check: secumon_api::LatestCheck) -> crate::app::CheckRow {
    let result = check.result;
    crate::app::CheckRow {
        host: check.host,
        result: crate::app::CheckRun {
            status: wire_name(&result.status),
            check_id: result.check_id,
            kind: result.kind,
            target: result.target,
            timestamp_ms: result.timestamp_ms,
            duration_us: result.duration_us,
            details: result.details,
        },
        latency: Vec::new(),
    }
}

fn silence_row(silence: secumon_api::Silence) -> crate::app::SilenceRow {
    crate::app::SilenceRow {
        id: silence.id,
        matchers: silence.matchers,
        ends_ms: silence.ends_ms,
        created_by: silence.created_by,
        comment: silence.comment,
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
        "action_answered" => format!(
            "action {} answered HTTP {} in {} ms",
            entry["channel"], entry["answer"]["status"], entry["answer"]["latency_ms"]
        ),
        other => other.replace('_', " "),
    };
    format!("{ago:>9}  {what}  {labels}")
}
