//! `GET /api/v1/overview`: the fleet in one request. For a page of hosts (agents), their
//! status, last push, firing alerts and latest CPU, memory and disk values, filtered, sorted
//! and optionally grouped (by tenant, or by an agent label such as `client`), with per-group
//! counts over every matching host. A super-admin may ask for every tenant at once.
//!
//! The cost does not grow with queries per host: one listing of the agents, one range query
//! per gauge (all of the tenant's series of that metric, last value in the window) and the
//! alert engine's active alerts, then filtering, sorting and paging in memory.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{Overview, OverviewGroup, OverviewHost};
use secumon_core::model::HOST_LABEL;
use secumon_core::now_ms;
use secumon_store::{AgentFilter, Aggregation, RangeQuery, SeriesSelector};

use super::access::ApiQuery;
use super::agents::{agent_view, refused_view};
use super::config;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use secumon_api::AgentView;

/// How far back a gauge's latest value may be.
const GAUGE_WINDOW_MS: i64 = 15 * 60_000;
/// The gauges a row carries: `(metric, field)`. Several series of a host (filesystems):
/// the largest.
const GAUGES: [&str; 3] = ["cpu_usage_ratio", "memory_used_ratio", "filesystem_used_ratio"];
/// Rows one page may hold, at most (and by default).
const MAX_LIMIT: usize = 10_000;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/overview", get(overview))
}

/// What `GET /overview` takes: the API crate's query, under the name the handler documents.
pub(super) use secumon_api::OverviewQuery as OverviewParams;

/// The overview's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverviewSort {
    Alerts,
    Name,
    Cpu,
    Memory,
    Disk,
    LastSeen,
}

impl OverviewSort {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "alerts" => Self::Alerts,
            "name" => Self::Name,
            "cpu" => Self::Cpu,
            "memory" => Self::Memory,
            "disk" => Self::Disk,
            "last_seen" => Self::LastSeen,
            _ => return None,
        })
    }

    /// `a` before `b`? Largest first for gauges, hosts without a value last; ties by name.
    pub fn compare(self, a: &OverviewHost, b: &OverviewHost) -> Ordering {
        let gauge = |v: Option<f64>| v.unwrap_or(f64::NEG_INFINITY);
        let order = match self {
            Self::Alerts => b.firing.cmp(&a.firing),
            Self::Name => Ordering::Equal,
            Self::Cpu => gauge(b.cpu).total_cmp(&gauge(a.cpu)),
            Self::Memory => gauge(b.memory).total_cmp(&gauge(a.memory)),
            Self::Disk => gauge(b.disk).total_cmp(&gauge(a.disk)),
            Self::LastSeen => b.last_seen_ms.cmp(&a.last_seen_ms),
        };
        order.then_with(|| (&a.host, &a.tenant, &a.agent_id).cmp(&(&b.host, &b.tenant, &b.agent_id)))
    }
}

/// Whether `host` counts as down: `offline` or `refused`; neither `online` nor an `idle`
/// script (which runs when it runs).
pub fn is_down(host: &OverviewHost) -> bool {
    !matches!(host.status.as_str(), "online" | "idle")
}

/// The group `host` falls in under `group_by` (`tenant` or a label name).
pub fn group_of<'a>(host: &'a OverviewHost, group_by: &str) -> &'a str {
    if group_by == "tenant" { &host.tenant } else { host.labels.get(group_by).map_or("", String::as_str) }
}

/// Whether `host` matches `filter` (already lower-cased): its name, its tenant or a
/// `label=value`.
pub fn matches(host: &OverviewHost, filter: &str) -> bool {
    filter.is_empty()
        || host.host.to_lowercase().contains(filter)
        || host.tenant.to_lowercase().contains(filter)
        || host.labels.iter().any(|(k, v)| format!("{k}={v}").to_lowercase().contains(filter))
}

/// Filters and orders `hosts` (group by group when grouping, groups by name, hosts without
/// the label last), and counts the groups.
pub fn arrange(
    mut hosts: Vec<OverviewHost>,
    filter: &str,
    sort: OverviewSort,
    group_by: Option<&str>,
) -> (Vec<OverviewHost>, Vec<OverviewGroup>) {
    let filter = filter.to_lowercase();
    hosts.retain(|h| matches(h, &filter));
    let Some(group_by) = group_by else {
        hosts.sort_by(|a, b| sort.compare(a, b));
        return (hosts, Vec::new());
    };
    let rank = |name: &str| (name.is_empty(), name.to_string());
    hosts
        .sort_by(|a, b| rank(group_of(a, group_by)).cmp(&rank(group_of(b, group_by))).then_with(|| sort.compare(a, b)));
    let mut groups: Vec<OverviewGroup> = Vec::new();
    for host in &hosts {
        let name = group_of(host, group_by);
        if groups.last().is_none_or(|g| g.name != name) {
            groups.push(OverviewGroup { name: name.to_string(), hosts: 0, down: 0, firing: 0 });
        }
        if let Some(group) = groups.last_mut() {
            group.hosts += 1;
            group.down += usize::from(is_down(host));
            group.firing += host.firing;
        }
    }
    (hosts, groups)
}

#[utoipa::path(get, path = "/api/v1/overview", tag = "agents", params(OverviewParams), responses((status = 200, description = "OK", body = Overview)))]
pub(super) async fn overview(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<OverviewParams>,
) -> Result<Json<Overview>, ApiError> {
    let limit = params.limit.map_or(MAX_LIMIT, |l| l as usize);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let offset = params.offset.unwrap_or(0) as usize;
    let sort = match params.sort.as_deref() {
        None => OverviewSort::Alerts,
        Some(text) => OverviewSort::parse(text)
            .ok_or_else(|| ApiError::bad_request("`sort` must be alerts, name, cpu, memory, disk or last_seen"))?,
    };
    let group_by = params.group_by.as_deref().map(str::trim).filter(|g| !g.is_empty());
    if group_by.is_some_and(|g| g.len() > 64) {
        return Err(ApiError::bad_request("`group_by` is a label name of at most 64 characters"));
    }
    let tenants = if params.all_tenants == Some(true) {
        caller.require_super_admin()?;
        state.accounts.tenants(None, u32::MAX).await?
    } else {
        vec![caller.tenant.clone()]
    };
    let mut hosts = Vec::new();
    for tenant in tenants {
        let as_tenant = Caller { tenant, ..caller.clone() };
        hosts.extend(tenant_hosts(&state, &as_tenant).await?);
    }
    let known = hosts.len();
    let (hosts, groups) = arrange(hosts, params.filter.as_deref().unwrap_or(""), sort, group_by);
    let total = hosts.len();
    let page: Vec<OverviewHost> = hosts.into_iter().skip(offset).take(limit).collect();
    let next_offset = (offset + page.len() < total).then_some(offset + page.len());
    Ok(Json(Overview { hosts: page, total, known, next_offset, groups }))
}

/// Every agent of `caller.tenant` as an overview row.
async fn tenant_hosts(state: &ApiState, caller: &Caller) -> Result<Vec<OverviewHost>, ApiError> {
    let tenant = &caller.tenant;
    let (agents, _) = state.store.agents(tenant, &AgentFilter::default()).await?;
    let mut clocks = state.clocks.agents(&*state.store, tenant).await;
    // Senders whose every batch was refused are in no store listing: listed from their
    // clock state, with the reason, so a host with a broken clock does not vanish.
    let stored: std::collections::HashSet<&str> = agents.iter().map(|a| a.agent_id.as_str()).collect();
    let mut refused_only: Vec<AgentView> = clocks
        .iter()
        .filter(|(id, c)| c.refused_ms.is_some() && c.committed_ms.is_none() && !stored.contains(id.as_str()))
        .map(|(id, c)| refused_view(id.clone(), c.clone()))
        .collect();
    refused_only.sort_by(|a, b| (&a.host, &a.id).cmp(&(&b.host, &b.id)));
    if agents.is_empty() && refused_only.is_empty() {
        return Ok(Vec::new());
    }
    let offline_after = config::offline_after(state, caller).await?;
    let mut firing: HashMap<String, usize> = HashMap::new();
    for alert in state.alerting(caller).await?.active().await? {
        if alert.state == secumon_alert::AlertState::Firing
            && let Some(host) = alert.labels.get(HOST_LABEL)
        {
            *firing.entry(host.clone()).or_default() += 1;
        }
    }
    let mut gauges: Vec<HashMap<String, f64>> = Vec::with_capacity(GAUGES.len());
    for metric in GAUGES {
        gauges.push(latest_by_host(state, tenant, metric).await?);
    }
    let views: Vec<AgentView> = agents
        .into_iter()
        .map(|agent| {
            let clock = clocks.remove(&agent.agent_id);
            agent_view(agent, clock, offline_after)
        })
        .collect();
    Ok(views
        .into_iter()
        .chain(refused_only)
        .map(|view| {
            let gauge = |i: usize| gauges[i].get(&view.host).copied();
            OverviewHost {
                tenant: tenant.clone(),
                firing: firing.get(&view.host).copied().unwrap_or(0),
                cpu: gauge(0),
                memory: gauge(1),
                disk: gauge(2),
                clock_offset_ms: view.clock.as_ref().and_then(|c| c.offset_ms),
                clock_corrected: view.clock.as_ref().is_some_and(|c| c.corrected),
                refused_reason: view.clock.as_ref().filter(|c| c.refusing()).and_then(|c| c.refused_reason.clone()),
                agent_id: view.id,
                kind: view.kind,
                host: view.host,
                labels: view.labels,
                status: view.status,
                last_seen_ms: view.last_seen_ms,
            }
        })
        .collect())
}

/// Each host's latest value of `metric` within [`GAUGE_WINDOW_MS`] (the largest of its
/// series), from one query over all of the tenant's series of it.
async fn latest_by_host(state: &ApiState, tenant: &str, metric: &str) -> Result<HashMap<String, f64>, ApiError> {
    let end_ms = now_ms();
    // One bucket for the whole window: the last value of each series in it.
    let query = RangeQuery {
        selector: SeriesSelector::new(metric),
        start_ms: end_ms - GAUGE_WINDOW_MS,
        end_ms,
        step_ms: GAUGE_WINDOW_MS + 1,
        aggregation: Aggregation::Last,
    };
    let mut latest: HashMap<String, f64> = HashMap::new();
    for series in state.store.query_range(tenant, &query).await? {
        let Some(host) = series.series.labels.get(HOST_LABEL) else { continue };
        let Some(value) = series.points.iter().rev().map(|p| p.value).find(|v| !v.is_nan()) else { continue };
        let slot = latest.entry(host.clone()).or_insert(value);
        *slot = slot.max(value);
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(tenant: &str, name: &str, client: Option<&str>, status: &str, firing: usize) -> OverviewHost {
        OverviewHost {
            tenant: tenant.into(),
            agent_id: format!("agent-{name}"),
            host: name.into(),
            labels: client
                .map(|c| std::collections::BTreeMap::from([("client".to_string(), c.to_string())]))
                .unwrap_or_default(),
            kind: if name.starts_with("script") { "script" } else { "agent" }.into(),
            status: status.into(),
            last_seen_ms: 0,
            firing,
            cpu: None,
            memory: None,
            disk: None,
            clock_offset_ms: None,
            clock_corrected: false,
            refused_reason: None,
        }
    }

    #[test]
    fn groups_come_in_name_order_with_their_counts_and_unlabelled_hosts_last() {
        let hosts = vec![
            host("a", "web-2", Some("zeta"), "online", 0),
            host("a", "db-1", None, "offline", 1),
            host("a", "web-1", Some("acme"), "offline", 2),
            host("b", "web-3", Some("acme"), "online", 0),
        ];
        let (rows, groups) = arrange(hosts.clone(), "", OverviewSort::Alerts, Some("client"));
        let names: Vec<&str> = rows.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["web-1", "web-3", "web-2", "db-1"]);
        let counts: Vec<(&str, usize, usize, usize)> =
            groups.iter().map(|g| (g.name.as_str(), g.hosts, g.down, g.firing)).collect();
        assert_eq!(counts, [("acme", 2, 1, 2), ("zeta", 1, 0, 0), ("", 1, 1, 1)]);
        let (rows, groups) = arrange(hosts.clone(), "CLIENT=ACME", OverviewSort::Name, Some("tenant"));
        assert_eq!(rows.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["web-1", "web-3"]);
        assert_eq!(groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let (rows, groups) = arrange(hosts, "", OverviewSort::Alerts, None);
        assert_eq!(rows[0].host, "web-1");
        assert!(groups.is_empty());
    }

    #[test]
    fn an_idle_script_is_not_down_but_a_refused_agent_is() {
        let hosts = vec![
            host("a", "script-backup", Some("acme"), "idle", 0),
            host("a", "web-1", Some("acme"), "refused", 0),
            host("a", "web-2", Some("acme"), "online", 0),
        ];
        let (_, groups) = arrange(hosts, "", OverviewSort::Name, Some("client"));
        assert_eq!((groups[0].hosts, groups[0].down), (3, 1));
    }
}
