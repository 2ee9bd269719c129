//! The console's state and how events change it: keys and fresh data in, state and the
//! commands to run (fetch, acknowledge) out. No I/O here, so every behaviour is testable.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Position;
use serde::Deserialize;

use crate::render::Drawn;

/// The screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every host with its gauges and firing alerts, filtered, sorted and grouped.
    Overview,
    /// One host's charts, lists and log panel (Enter on an overview host).
    Host,
    /// Every check's latest run and its recent durations.
    Checks,
    /// The alerts centre: acknowledge, silence, a rule's history.
    Alerts,
    /// Scanner findings.
    Findings,
}

impl View {
    /// Every view, in the tab bar's order (`1`…`5`).
    pub const TABS: [View; 5] = [View::Overview, View::Host, View::Checks, View::Alerts, View::Findings];

    /// Its name on the tab bar.
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Host => "Host",
            View::Checks => "Checks",
            View::Alerts => "Alerts",
            View::Findings => "Findings",
        }
    }
}

/// Time ranges for host charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last 15 minutes.
    Minutes15,
    /// The last hour (the starting range).
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Range {
    /// Shortest first: `[` and `]` step through them on the Host screen.
    pub const ALL: [Range; 4] = [Range::Minutes15, Range::Hour, Range::Day, Range::Week];

    /// The range as the history API's `period` (`15m`, `1h`, `24h`, `7d`).
    pub fn period(self) -> &'static str {
        match self {
            Range::Minutes15 => "15m",
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
        }
    }
}

/// One host on the overview, as `GET /api/v1/overview` gives it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HostRow {
    /// Its tenant (several only when a super-admin groups by tenant).
    pub tenant: String,
    /// The id of the agent (or script) that reports this host.
    pub agent_id: String,
    /// The host's name, as its agent reports it.
    pub host: String,
    /// The agent's labels, which the filter also searches (`env=prod`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// `agent`, or `script` (a script pushing through `POST /ingest`).
    pub kind: String,
    /// `online`, `offline`, `idle` (a script not run lately) or `refused`.
    pub status: String,
    /// Latest CPU usage ratio (0–1) within the last 15 minutes; `None` when none.
    pub cpu: Option<f64>,
    /// Latest memory used ratio (0–1) within the last 15 minutes; `None` when none.
    pub memory: Option<f64>,
    /// Latest used ratio (0–1) of its fullest filesystem within the last 15 minutes.
    pub disk: Option<f64>,
    /// When its agent was last heard from, Unix milliseconds.
    pub last_seen_ms: i64,
    /// Alerts firing with this host's `host` label.
    pub firing: usize,
    /// Its agent's clock minus the server's, ms (positive: ahead); `None` when not measured.
    pub clock_offset_ms: Option<i64>,
    /// The server re-stamps its agent's data by that offset (it is past the tolerance).
    pub clock_corrected: bool,
    /// Status `refused`: why the server refuses its batches (its clock, say).
    pub refused_reason: Option<String>,
}

impl HostRow {
    /// `offline` or `refused`: a script that has not run lately (`idle`) is not down.
    pub fn is_down(&self) -> bool {
        !matches!(self.status.as_str(), "online" | "idle")
    }
}

/// A host's latest values from the live stream: seen at `seen_ms` (0: not a heartbeat),
/// and the gauges that came with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveHost {
    /// The host's name, matched against [`HostRow::host`].
    pub host: String,
    /// When the stream's heartbeat saw it, Unix milliseconds; 0 when this is not a heartbeat.
    pub seen_ms: i64,
    /// Its CPU usage ratio (0–1) in this batch, if one came.
    pub cpu: Option<f64>,
    /// Its memory used ratio (0–1) in this batch, if one came.
    pub memory: Option<f64>,
    /// Its fullest filesystem's used ratio (0–1) in this batch, if one came.
    pub disk: Option<f64>,
}

/// A line of the overview: a group's header, or a host.
#[derive(Debug, Clone, PartialEq)]
pub enum OverviewLine<'a> {
    /// A group's header line with its counts.
    Group(GroupSummary),
    /// A host's line.
    Host(&'a HostRow),
}

/// A group of the overview and its counts (over every host of it the filter lets through).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupSummary {
    /// The tenant or label value; empty: hosts without the label.
    pub name: String,
    /// Its hosts.
    pub hosts: usize,
    /// Its hosts down (`offline` or `refused`, see [`HostRow::is_down`]).
    pub down: usize,
    /// Alerts firing on its hosts, summed.
    pub firing: usize,
    /// Folded to its header line (space on the overview).
    pub collapsed: bool,
}

/// What the overview can be grouped by (`g` cycles); `tenant` only for a super-admin.
pub const GROUPINGS: [&str; 4] = ["tenant", "client", "site", "role"];

/// An alert of the alerts centre, as `GET /api/v1/alerts` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlertRow {
    /// Stable for a rule and label set; what acknowledging names.
    pub id: String,
    /// The alert rule's name.
    pub rule: String,
    /// `pending`, `firing`, `stale`, `resolved` or `inactive`; only `firing` can be acknowledged.
    pub state: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The alert's labels (`host`, …); silencing it silences exactly these.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it entered its state, Unix milliseconds.
    pub since_ms: i64,
    /// The value that crossed the rule's threshold; NaN when there was none.
    pub value: f64,
    /// Who acknowledged it and why; `None` while unacknowledged.
    #[serde(default)]
    pub acknowledged: Option<Acknowledged>,
    /// The rule's annotations for this alert; `summary` is shown in the list.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A silence in force.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SilenceRow {
    /// What expiring it names (`DELETE /api/v1/silences/{id}`).
    pub id: String,
    /// The labels an alert must have, all of them, to be silenced.
    #[serde(default)]
    pub matchers: std::collections::BTreeMap<String, String>,
    /// When it ends, Unix milliseconds.
    pub ends_ms: i64,
    /// Who created it.
    #[serde(default)]
    pub created_by: String,
    /// Why, as its creator wrote it.
    #[serde(default)]
    pub comment: String,
}

/// Who acknowledged an alert, and their comment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Acknowledged {
    /// The user who acknowledged it.
    pub by: String,
    /// What they wrote (may be empty).
    #[serde(default)]
    pub comment: String,
}

/// A probe check's latest run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckRow {
    /// The host of the probe (agent) that ran the check.
    pub host: String,
    /// Its latest run, from `GET /api/v1/checks`.
    pub result: CheckRun,
    /// Run durations over the last hour, in seconds, oldest first.
    #[serde(skip)]
    pub latency: Vec<f64>,
}

/// One run of a probe check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckRun {
    /// The check's id in the probe's configuration.
    pub check_id: String,
    /// The check's kind (`http`, `tls`, `dns`, …).
    pub kind: String,
    /// What it checked: a URL, a host, an address.
    pub target: String,
    /// `ok`, `warning`, `critical` or `unknown`.
    pub status: String,
    /// When it ran, Unix milliseconds.
    pub timestamp_ms: i64,
    /// How long it took, microseconds.
    pub duration_us: u64,
    /// Kind-specific details, shown whole in the check's pop-up (Checks, Enter).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A scanner finding, as `GET /api/v1/findings` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FindingRow {
    /// The CVE id or the scanner's rule id.
    pub id: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The host name, URL or image it is about.
    pub asset: String,
    /// The scanner's one-line title.
    pub title: String,
    /// `open` or `fixed`.
    pub status: String,
}

/// One host's charts: `(timestamp_ms, value)` per metric.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostDetail {
    /// The host's name.
    pub host: String,
    /// The range the charts cover; `None` until they have come.
    pub range: Option<Range>,
    /// CPU usage ratio (0–1) over the range.
    pub cpu: Vec<(i64, f64)>,
    /// Memory used ratio (0–1) over the range.
    pub memory: Vec<(i64, f64)>,
    /// One-minute load average (`load1`) over the range.
    pub load: Vec<(i64, f64)>,
    /// Each core's usage ratio.
    pub cpu_cores: Vec<(String, Vec<(i64, f64)>)>,
    /// Bytes per second, `read` and `write`, all devices together.
    pub disk: Vec<(String, Vec<(i64, f64)>)>,
    /// Bytes per second, `receive` and `transmit`, all interfaces together.
    pub network: Vec<(String, Vec<(i64, f64)>)>,
    /// systemd units in the `failed` state.
    pub failed_units: Vec<String>,
    /// Containers up, and known.
    pub containers: (usize, usize),
    /// Mount point and used ratio, fullest first.
    pub filesystems: Vec<(String, f64)>,
    /// Process name and CPU ratio, busiest first.
    pub processes: Vec<(String, f64)>,
    /// Its latest 50 log lines (`source line`), from `GET /api/v1/logs/hosts/{id}`.
    pub logs: Vec<String>,
}

/// The host screen's log panel once the operator pages back or filters; until then it
/// shows the host's latest lines, refreshed with the rest of the screen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogPanel {
    /// Only lines holding this text (empty: every line).
    pub filter: String,
    /// Lines fetched for this panel, oldest first; `None`: show the host's latest lines.
    pub lines: Option<Vec<String>>,
    /// Where the next older page ends (a `prev_cursor`), and whether there is one.
    pub before: Option<String>,
    /// Older lines than those fetched remain on the server.
    pub more: bool,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
    /// An older page was asked for and has not come yet.
    pub loading: bool,
}

/// Lines the log panel asks for at a time.
pub const LOG_PAGE: u32 = 500;
/// Lines one PgUp/PgDn moves the log panel by.
const LOG_STEP: usize = 4;

/// Everything fetched in one refresh.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Every host of the overview (`GET /api/v1/overview`, all pages).
    pub hosts: Vec<HostRow>,
    /// The alerts (`GET /api/v1/alerts`).
    pub alerts: Vec<AlertRow>,
    /// Up to 500 findings (`GET /api/v1/findings`).
    pub findings: Vec<FindingRow>,
    /// Every check's latest run, with its last hour of durations.
    pub checks: Vec<CheckRow>,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// A full refresh: everything is replaced and the console counts as connected.
    Data(Snapshot),
    /// Alerts, findings and checks fetched again; the hosts stay (`Snapshot::hosts` unused).
    Activity(Snapshot),
    /// Hosts' latest values from the live stream, gathered over a moment.
    LiveHosts(Vec<LiveHost>),
    /// A host's charts came (after [`Command::LoadHost`]).
    Host(HostDetail),
    /// The server cannot be reached (or answered an error); the console keeps its data.
    Failed(String),
    /// An action went through: a message for the status bar.
    Done(String),
    /// The live stream connected (`true`) or was lost (`false`).
    Live(bool),
    /// The tenants a super-admin may switch between.
    Tenants(Vec<String>),
    /// The terminal changed size: draw again.
    Resize,
    /// A page of a host's log lines, oldest first: the newest page (`older` false) or the
    /// one before those shown.
    Logs {
        /// The host they are of; dropped if another host is shown by now.
        host: String,
        /// The lines (`source line`), oldest first.
        lines: Vec<String>,
        /// The page's `prev_cursor`: where the page before it ends.
        before: Option<String>,
        /// Older lines remain on the server.
        more: bool,
        /// The page goes before the lines shown (`true`) or replaces them.
        older: bool,
    },
    /// The silences in force (after listing them, or expiring one), and what to say.
    Silences {
        /// The silences in force.
        rows: Vec<SilenceRow>,
        /// The status bar's message.
        status: String,
    },
    /// A rule's latest history entries, newest first (one line each).
    RuleHistory {
        /// The rule's name.
        rule: String,
        /// One line per entry: how long ago, what happened, the labels.
        lines: Vec<String>,
    },
    /// A left click at this column and row.
    Click {
        /// The terminal column, from 0 at the left.
        column: u16,
        /// The terminal row, from 0 at the top.
        row: u16,
    },
}

/// What the caller must do for the state to move on.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Fetch everything again now (answered by [`Event::Data`]).
    Refresh,
    /// Fetch a host's charts (answered by [`Event::Host`]).
    LoadHost {
        /// The host's name.
        host: String,
        /// The range to chart.
        range: Range,
    },
    /// Acknowledge a firing alert as the console's user (answered by [`Event::Done`]).
    Acknowledge {
        /// The alert's id.
        id: String,
        /// The operator's comment.
        comment: String,
    },
    /// Look at another tenant (`None`: the caller's own).
    SwitchTenant(Option<String>),
    /// Silence alerts with exactly these labels for a duration (`1h`, `30m`).
    Silence {
        /// The labels to match, all of them: the selected alert's.
        matchers: std::collections::BTreeMap<String, String>,
        /// As typed: `1h`, `30m`, …
        duration: String,
    },
    /// Fetch this rule's history (answered by [`Event::RuleHistory`]).
    LoadRuleHistory(String),
    /// A page of a host's log lines holding `contains`: the newest (`before` none) or the
    /// one before a cursor.
    LoadLogs {
        /// The host's name.
        host: String,
        /// Only lines holding this text; `None`: every line.
        contains: Option<String>,
        /// The cursor the page ends before; `None`: the newest page.
        before: Option<String>,
    },
    /// List the silences in force (Alerts, `S`).
    LoadSilences,
    /// End this silence now.
    ExpireSilence(String),
    /// The overview covers every tenant (`true`: a super-admin grouping by tenant) or the
    /// one looked at; fetch it again.
    AllTenants(bool),
    /// Leave the console.
    Quit,
}

/// The console's whole state: what is shown and what the operator is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The server's address, as given (`http://host:port`), for the status bar.
    pub server: String,
    /// The view shown.
    pub view: View,
    /// The selected line of the view's table.
    pub selected: usize,
    /// The overview's filter: hosts whose name or a `key=value` label holds it, any case.
    pub filter: String,
    /// Typing a filter (after `/`) or an acknowledgement comment (after `a`).
    pub input: Option<Input>,
    /// The host charts' range (`[` and `]` on the Host screen).
    pub range: Range,
    /// The help pop-up is shown (`?`; any key closes it).
    pub help: bool,
    /// The selected check's details are shown (Checks, Enter).
    pub check_detail: bool,
    /// What the last refresh fetched, kept while the server cannot be reached.
    pub data: Snapshot,
    /// The host opened on the Host screen, with its charts once they have come.
    pub host: Option<HostDetail>,
    /// The last fetch reached the server.
    pub connected: bool,
    /// Updates arrive from the server's live stream (else the console polls).
    pub live: bool,
    /// Tenants a super-admin may look at (empty for everyone else) and the one shown
    /// (`None`: the caller's own).
    pub tenants: Vec<String>,
    /// The tenant looked at (`t` cycles); `None`: the caller's own.
    pub tenant: Option<String>,
    /// The overview's order.
    pub sort: SortBy,
    /// A rule's history shown over the alerts centre (Alerts, `h`).
    pub rule_history: Option<(String, Vec<String>)>,
    /// The host screen's log panel: paged back, filtered.
    pub logs: LogPanel,
    /// The silences in force, shown over the alerts centre (Alerts, `S`), and the one
    /// selected in that list.
    pub silences: Option<(Vec<SilenceRow>, usize)>,
    /// The status bar's message: the connection, or what the last action did.
    pub status: String,
    /// Now, Unix milliseconds, for the "ago" columns (the driver sets it before drawing).
    pub now_ms: i64,
    /// The overview's grouping: `tenant` or an agent label; `None`: one list.
    pub group_by: Option<String>,
    /// Groups folded to their header line.
    pub collapsed: std::collections::BTreeSet<String>,
    /// The first line on screen of the view's table (overview, checks, alerts, findings).
    pub scroll: usize,
    /// Table lines the screen has room for (the driver sets it from the terminal's size).
    pub page_rows: usize,
    /// Where the last frame drew what a click can pick (the driver sets it after drawing).
    pub drawn: Drawn,
}

/// What the operator is typing; Enter applies it, Esc drops it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The overview's host filter (Overview, `/`).
    Filter,
    /// The log panel's text filter (Host, `/`).
    LogFilter,
    /// A comment acknowledging a firing alert (Alerts, `a`).
    Comment {
        /// The alert's id.
        alert: String,
        /// The comment typed so far.
        text: String,
    },
    /// How long to silence the selected alert for.
    SilenceFor {
        /// The selected alert's labels, which the silence will match.
        matchers: std::collections::BTreeMap<String, String>,
        /// The duration typed so far (`1h` suggested).
        text: String,
        /// `text` is the suggestion put there, not typed: the first character typed
        /// replaces it (typing `30m` over `1h` means 30 minutes, not `1h30m`).
        suggested: bool,
    },
}

/// The group `host` falls in: its tenant, or its value of the label (empty without it).
pub fn group_of<'a>(host: &'a HostRow, group_by: &str) -> &'a str {
    if group_by == "tenant" { &host.tenant } else { host.labels.get(group_by).map_or("", String::as_str) }
}

/// The overview's order (`o` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Most firing alerts first, then by name.
    Alerts,
    /// By host name.
    Name,
    /// Busiest CPU first, hosts without a value last.
    Cpu,
    /// Most memory used first, hosts without a value last.
    Memory,
    /// Fullest disk first, hosts without a value last.
    Disk,
    /// Most recently seen first.
    LastSeen,
}

impl SortBy {
    const ALL: [SortBy; 6] =
        [SortBy::Alerts, SortBy::Name, SortBy::Cpu, SortBy::Memory, SortBy::Disk, SortBy::LastSeen];

    /// Its name on the overview's title.
    pub fn title(self) -> &'static str {
        match self {
            SortBy::Alerts => "alerts",
            SortBy::Name => "name",
            SortBy::Cpu => "CPU",
            SortBy::Memory => "memory",
            SortBy::Disk => "disk",
            SortBy::LastSeen => "last seen",
        }
    }

    fn next(self) -> Self {
        let at = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(at + 1) % Self::ALL.len()]
    }
}

impl App {
    /// The state at start for the server at `server`: the overview, nothing fetched yet.
    pub fn new(server: &str) -> Self {
        Self {
            server: server.to_string(),
            view: View::Overview,
            selected: 0,
            filter: String::new(),
            input: None,
            range: Range::Hour,
            help: false,
            check_detail: false,
            data: Snapshot::default(),
            host: None,
            connected: false,
            live: false,
            tenants: Vec::new(),
            tenant: None,
            sort: SortBy::Alerts,
            rule_history: None,
            logs: LogPanel::default(),
            silences: None,
            status: "connecting…".into(),
            now_ms: 0,
            group_by: None,
            collapsed: Default::default(),
            scroll: 0,
            page_rows: 20,
            drawn: Drawn::default(),
        }
    }

    /// Hosts the filter lets through, in name order.
    pub fn visible_hosts(&self) -> Vec<&HostRow> {
        let filter = self.filter.to_lowercase();
        let matches = |h: &HostRow| {
            filter.is_empty()
                || h.host.to_lowercase().contains(&filter)
                || h.labels.iter().any(|(k, v)| format!("{k}={v}").to_lowercase().contains(&filter))
        };
        let mut hosts: Vec<&HostRow> = self.data.hosts.iter().filter(|h| matches(h)).collect();
        // Largest first for gauges; hosts without a value last.
        let gauge = |h: &HostRow, pick: fn(&HostRow) -> Option<f64>| pick(h).unwrap_or(f64::NEG_INFINITY);
        hosts.sort_by(|a, b| {
            let order = match self.sort {
                SortBy::Alerts => b.firing.cmp(&a.firing),
                SortBy::Name => std::cmp::Ordering::Equal,
                SortBy::Cpu => gauge(b, |h| h.cpu).total_cmp(&gauge(a, |h| h.cpu)),
                SortBy::Memory => gauge(b, |h| h.memory).total_cmp(&gauge(a, |h| h.memory)),
                SortBy::Disk => gauge(b, |h| h.disk).total_cmp(&gauge(a, |h| h.disk)),
                SortBy::LastSeen => b.last_seen_ms.cmp(&a.last_seen_ms),
            };
            order.then(a.host.cmp(&b.host))
        });
        if let Some(group_by) = &self.group_by {
            // Groups by name, hosts without the label last; the order above within each.
            hosts.sort_by_cached_key(|h| {
                let name = group_of(h, group_by);
                (name.is_empty(), name.to_string())
            });
        }
        hosts
    }

    /// The overview's lines: hosts, under their groups' headers when grouped (a collapsed
    /// group shows only its header). What is drawn, selected and clicked.
    pub fn overview_lines(&self) -> Vec<OverviewLine<'_>> {
        let hosts = self.visible_hosts();
        let Some(group_by) = &self.group_by else { return hosts.into_iter().map(OverviewLine::Host).collect() };
        let mut lines = Vec::with_capacity(hosts.len() + 16);
        // The current group: its name, its header's index, and whether it is open.
        let mut current: Option<(&str, usize, bool)> = None;
        for host in hosts {
            let name = group_of(host, group_by);
            let (header, open) = match current {
                Some((current, header, open)) if current == name => (header, open),
                _ => {
                    let collapsed = self.collapsed.contains(name);
                    let summary = GroupSummary { name: name.to_string(), collapsed, ..Default::default() };
                    lines.push(OverviewLine::Group(summary));
                    current = Some((name, lines.len() - 1, !collapsed));
                    (lines.len() - 1, !collapsed)
                }
            };
            if let Some(OverviewLine::Group(group)) = lines.get_mut(header) {
                group.hosts += 1;
                group.down += usize::from(host.is_down());
                group.firing += host.firing;
            }
            if open {
                lines.push(OverviewLine::Host(host));
            }
        }
        lines
    }

    /// Keeps the selected line on screen.
    fn follow_selection(&mut self) {
        let rows = self.page_rows.max(1);
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if self.selected >= self.scroll + rows {
            self.scroll = self.selected + 1 - rows;
        }
        self.scroll = self.scroll.min(self.rows().saturating_sub(rows));
    }

    /// `g`: the next grouping (tenant only for a super-admin), then none.
    fn next_grouping(&mut self) -> Option<Command> {
        let offered: Vec<&str> =
            GROUPINGS.iter().copied().filter(|g| *g != "tenant" || !self.tenants.is_empty()).collect();
        let next = match &self.group_by {
            None => offered.first().copied(),
            Some(current) => offered.iter().skip_while(|g| *g != current).nth(1).copied(),
        };
        let was_tenant = self.group_by.as_deref() == Some("tenant");
        self.group_by = next.map(str::to_string);
        self.collapsed.clear();
        self.selected = 0;
        self.scroll = 0;
        self.status = match next {
            Some(g) => format!("grouped by {g} (space folds a group, {{ }} jump between groups)"),
            None => "not grouped".into(),
        };
        let is_tenant = next == Some("tenant");
        (was_tenant != is_tenant).then_some(Command::AllTenants(is_tenant))
    }

    /// `{` / `}`: the previous / next group's header.
    fn jump_group(&mut self, forward: bool) {
        let headers: Vec<usize> = self
            .overview_lines()
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, OverviewLine::Group(_)))
            .map(|(i, _)| i)
            .collect();
        let target = if forward {
            headers.iter().copied().find(|&i| i > self.selected)
        } else {
            headers.iter().copied().rev().find(|&i| i < self.selected)
        };
        if let Some(target) = target {
            self.selected = target;
        }
    }

    /// Space (or Enter on a header): folds or unfolds the selected line's group, and
    /// selects its header.
    fn toggle_group(&mut self) {
        let lines = self.overview_lines();
        let Some(header) = (0..=self.selected.min(lines.len().saturating_sub(1)))
            .rev()
            .find(|&i| matches!(lines.get(i), Some(OverviewLine::Group(_))))
        else {
            return;
        };
        let Some(OverviewLine::Group(group)) = lines.get(header) else { return };
        let name = group.name.clone();
        drop(lines);
        if !self.collapsed.remove(&name) {
            self.collapsed.insert(name);
        }
        self.selected = header;
    }

    /// Applies the live stream's values to their hosts' rows.
    fn apply_live(&mut self, changes: Vec<LiveHost>) {
        let mut at: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
        for (i, row) in self.data.hosts.iter().enumerate() {
            // The stream is the tenant looked at: rows of other tenants are not its hosts.
            if self.group_by.as_deref() != Some("tenant") || self.tenant.as_ref().is_none_or(|t| *t == row.tenant) {
                at.entry(row.host.as_str()).or_default().push(i);
            }
        }
        let at: std::collections::HashMap<String, Vec<usize>> =
            at.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for change in changes {
            for &i in at.get(&change.host).into_iter().flatten() {
                let row = &mut self.data.hosts[i];
                if change.seen_ms > 0 {
                    row.last_seen_ms = row.last_seen_ms.max(change.seen_ms);
                    if matches!(row.status.as_str(), "offline" | "idle") {
                        row.status = "online".into();
                    }
                }
                row.cpu = change.cpu.or(row.cpu);
                row.memory = change.memory.or(row.memory);
                row.disk = change.disk.or(row.disk);
            }
        }
    }

    fn rows(&self) -> usize {
        match self.view {
            View::Overview => self.overview_lines().len(),
            View::Alerts => self.data.alerts.len(),
            View::Findings => self.data.findings.len(),
            View::Checks => self.data.checks.len(),
            View::Host => 0,
        }
    }

    /// Applies an event; returns what must be done next.
    pub fn update(&mut self, event: Event) -> Option<Command> {
        let command = self.apply(event);
        if self.view != View::Host {
            self.follow_selection();
        }
        command
    }

    fn apply(&mut self, event: Event) -> Option<Command> {
        match event {
            Event::Data(snapshot) => {
                self.data = snapshot;
                // A refresh must not wipe what an action just reported ("silenced for 1h"):
                // the status says "connected" only when the connection is new.
                if !self.connected {
                    self.status = format!("connected to {}", self.server);
                }
                self.connected = true;
                self.selected = self.selected.min(self.rows().saturating_sub(1));
                None
            }
            Event::Activity(activity) => {
                // Firing counts follow the alerts; across tenants only the next full fetch can.
                if self.group_by.as_deref() != Some("tenant") {
                    for row in &mut self.data.hosts {
                        row.firing = activity
                            .alerts
                            .iter()
                            .filter(|a| a.state == "firing" && a.labels.get("host") == Some(&row.host))
                            .count();
                    }
                }
                self.data = Snapshot { hosts: std::mem::take(&mut self.data.hosts), ..activity };
                self.selected = self.selected.min(self.rows().saturating_sub(1));
                None
            }
            Event::LiveHosts(changes) => {
                self.apply_live(changes);
                None
            }
            Event::Host(detail) => {
                self.host = Some(detail);
                None
            }
            Event::Failed(reason) => {
                self.connected = false;
                self.status = format!("{reason}; retrying");
                None
            }
            Event::Live(live) => {
                self.live = live;
                None
            }
            Event::Tenants(tenants) => {
                self.tenants = tenants;
                None
            }
            Event::Resize => None,
            Event::Silences { rows, status } => {
                let selected = self.silences.as_ref().map_or(0, |(_, at)| *at).min(rows.len().saturating_sub(1));
                self.silences = Some((rows, selected));
                self.status = status;
                None
            }
            Event::Logs { host, lines, before, more, older } => {
                if self.host.as_ref().is_some_and(|h| h.host == host) {
                    let panel = &mut self.logs;
                    panel.loading = false;
                    panel.before = before;
                    panel.more = more;
                    panel.lines = Some(match (older, panel.lines.take()) {
                        (true, Some(shown)) => lines.into_iter().chain(shown).collect(),
                        _ => lines,
                    });
                }
                None
            }
            Event::RuleHistory { rule, lines } => {
                self.rule_history = Some((rule, lines));
                None
            }
            Event::Done(message) => {
                self.status = message;
                Some(Command::Refresh)
            }
            Event::Key(key) => self.key(key),
            Event::Click { column, row } => self.click(column, row),
        }
    }

    fn key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        if let Some(input) = &mut self.input {
            return match (input, key.code) {
                (_, KeyCode::Esc) => {
                    self.input = None;
                    None
                }
                (Input::Filter, KeyCode::Enter) => {
                    self.input = None;
                    None
                }
                (Input::LogFilter, KeyCode::Enter) => {
                    self.input = None;
                    let filter = std::mem::take(&mut self.logs.filter);
                    self.logs = LogPanel { filter, ..LogPanel::default() };
                    self.load_logs(None)
                }
                (Input::LogFilter, KeyCode::Backspace) => {
                    self.logs.filter.pop();
                    None
                }
                (Input::LogFilter, KeyCode::Char(c)) => {
                    self.logs.filter.push(c);
                    None
                }
                (Input::Filter, KeyCode::Backspace) => {
                    self.filter.pop();
                    self.selected = 0;
                    None
                }
                (Input::Filter, KeyCode::Char(c)) => {
                    self.filter.push(c);
                    self.selected = 0;
                    None
                }
                (Input::Comment { alert, text }, KeyCode::Enter) => {
                    let command = Command::Acknowledge { id: alert.clone(), comment: text.clone() };
                    self.input = None;
                    Some(command)
                }
                (Input::Comment { text, .. }, KeyCode::Backspace) => {
                    text.pop();
                    None
                }
                (Input::Comment { text, .. }, KeyCode::Char(c)) => {
                    text.push(c);
                    None
                }
                (Input::SilenceFor { matchers, text, .. }, KeyCode::Enter) => {
                    let command = Command::Silence { matchers: matchers.clone(), duration: text.clone() };
                    self.input = None;
                    Some(command)
                }
                (Input::SilenceFor { text, suggested, .. }, KeyCode::Backspace) => {
                    *suggested = false;
                    text.pop();
                    None
                }
                (Input::SilenceFor { text, suggested, .. }, KeyCode::Char(c)) => {
                    if std::mem::take(suggested) {
                        text.clear();
                    }
                    text.push(c);
                    None
                }
                _ => None,
            };
        }
        if let Some((rows, at)) = &mut self.silences {
            return match key.code {
                KeyCode::Down | KeyCode::Char('j') => {
                    *at = (*at + 1).min(rows.len().saturating_sub(1));
                    None
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    *at = at.saturating_sub(1);
                    None
                }
                KeyCode::Char('x') | KeyCode::Delete => rows.get(*at).map(|s| Command::ExpireSilence(s.id.clone())),
                KeyCode::Char('q') => Some(Command::Quit),
                _ => {
                    self.silences = None;
                    None
                }
            };
        }
        if self.help || self.check_detail || self.rule_history.is_some() {
            self.help = false;
            self.check_detail = false;
            self.rule_history = None;
            return None;
        }
        match key.code {
            KeyCode::Char('q') => Some(Command::Quit),
            KeyCode::Char('?') => {
                self.help = true;
                None
            }
            KeyCode::Tab | KeyCode::Right => self.switch(1),
            KeyCode::BackTab | KeyCode::Left => self.switch(View::TABS.len() - 1),
            // Digits always switch views, as the tab bar numbers them; the chart range has its
            // own keys so that `3` on the Host screen does not mean something else there.
            KeyCode::Char(c @ '1'..='5') => {
                self.view = View::TABS[c as usize - '1' as usize];
                self.selected = 0;
                None
            }
            KeyCode::Char(c @ ('[' | ']')) if self.view == View::Host => {
                let at = Range::ALL.iter().position(|r| *r == self.range).unwrap_or(1);
                let next = if c == '[' { at.saturating_sub(1) } else { (at + 1).min(Range::ALL.len() - 1) };
                self.range = Range::ALL[next];
                self.host.as_ref().map(|h| Command::LoadHost { host: h.host.clone(), range: self.range })
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows().saturating_sub(1));
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                None
            }
            KeyCode::Char('/') if self.view == View::Overview => {
                self.input = Some(Input::Filter);
                None
            }
            KeyCode::Char('r') => Some(Command::Refresh),
            KeyCode::Char('t') => self.next_tenant(),
            KeyCode::Char('o') if self.view == View::Overview => {
                self.sort = self.sort.next();
                self.selected = 0;
                None
            }
            KeyCode::Char('s') if self.view == View::Alerts => {
                let alert = self.data.alerts.get(self.selected)?;
                self.input =
                    Some(Input::SilenceFor { matchers: alert.labels.clone(), text: "1h".into(), suggested: true });
                None
            }
            KeyCode::Char('S') if self.view == View::Alerts => Some(Command::LoadSilences),
            KeyCode::Char('h') if self.view == View::Alerts => {
                self.data.alerts.get(self.selected).map(|alert| Command::LoadRuleHistory(alert.rule.clone()))
            }
            KeyCode::Char('g') if self.view == View::Overview => self.next_grouping(),
            KeyCode::Char(' ') if self.view == View::Overview => {
                self.toggle_group();
                None
            }
            KeyCode::Char(c @ ('{' | '}')) if self.view == View::Overview => {
                self.jump_group(c == '}');
                None
            }
            KeyCode::Home => {
                self.selected = 0;
                None
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.selected = self.rows().saturating_sub(1);
                None
            }
            KeyCode::PageUp if self.view == View::Host => self.scroll_logs_back(),
            KeyCode::PageDown if self.view == View::Host => {
                self.logs.scroll = self.logs.scroll.saturating_sub(LOG_STEP);
                None
            }
            KeyCode::PageDown => {
                self.selected = (self.selected + self.page_rows.max(1)).min(self.rows().saturating_sub(1));
                None
            }
            KeyCode::PageUp => {
                self.selected = self.selected.saturating_sub(self.page_rows.max(1));
                None
            }
            KeyCode::Enter if self.view == View::Overview => {
                let host = match self.overview_lines().get(self.selected) {
                    Some(OverviewLine::Host(host)) => host.host.clone(),
                    Some(OverviewLine::Group(_)) => {
                        self.toggle_group();
                        return None;
                    }
                    None => return None,
                };
                self.view = View::Host;
                self.host = Some(HostDetail { host: host.clone(), ..Default::default() });
                Some(Command::LoadHost { host, range: self.range })
            }
            KeyCode::Enter if self.view == View::Checks && !self.data.checks.is_empty() => {
                self.check_detail = true;
                None
            }
            KeyCode::Esc if self.view == View::Host => {
                self.view = View::Overview;
                self.logs = LogPanel::default();
                None
            }
            KeyCode::Char('/') if self.view == View::Host => {
                self.input = Some(Input::LogFilter);
                None
            }
            KeyCode::Char('a') if self.view == View::Alerts => {
                let alert = self.data.alerts.get(self.selected).filter(|a| a.state == "firing")?;
                self.input = Some(Input::Comment { alert: alert.id.clone(), text: String::new() });
                None
            }
            _ => None,
        }
    }

    /// The log panel's lines, oldest first: its own pages, or the host's latest.
    pub fn log_lines(&self) -> &[String] {
        match (&self.logs.lines, &self.host) {
            (Some(lines), _) => lines,
            (None, Some(host)) => &host.logs,
            (None, None) => &[],
        }
    }

    /// A page of the host's lines holding the panel's filter, before `before` (or the newest).
    fn load_logs(&mut self, before: Option<String>) -> Option<Command> {
        let host = self.host.as_ref()?.host.clone();
        let contains = Some(self.logs.filter.clone()).filter(|f| !f.is_empty());
        self.logs.loading = true;
        Some(Command::LoadLogs { host, contains, before })
    }

    /// PgUp: scroll back; past the lines fetched, fetch the page before them.
    fn scroll_logs_back(&mut self) -> Option<Command> {
        let shown = self.log_lines().len();
        if self.logs.scroll + LOG_STEP < shown {
            self.logs.scroll += LOG_STEP;
            return None;
        }
        if self.logs.loading {
            return None;
        }
        match &self.logs.lines {
            // Still the host's latest few: fetch a full page of the newest to scroll in.
            None => self.load_logs(None),
            Some(_) if self.logs.more => self.load_logs(self.logs.before.clone()),
            Some(_) => {
                self.logs.scroll = shown.saturating_sub(1);
                None
            }
        }
    }

    /// `t`: the next tenant of a super-admin's list, then back to the caller's own.
    fn next_tenant(&mut self) -> Option<Command> {
        if self.tenants.is_empty() {
            self.status = "switching tenants needs a super-admin".into();
            return None;
        }
        let next = match &self.tenant {
            None => self.tenants.first().cloned(),
            Some(current) => self.tenants.iter().skip_while(|t| *t != current).nth(1).cloned(),
        };
        self.tenant = next.clone();
        self.data = Snapshot::default();
        self.scroll = 0;
        self.host = None;
        self.selected = 0;
        if self.view == View::Host {
            self.view = View::Overview;
        }
        self.status = format!("tenant {}", next.as_deref().unwrap_or("(your own)"));
        Some(Command::SwitchTenant(next))
    }

    /// A click on a tab picks its view; on a table's line, selects that line: where the last
    /// frame drew them ([`Drawn`]).
    fn click(&mut self, column: u16, row: u16) -> Option<Command> {
        if self.help || self.check_detail || self.input.is_some() {
            return None;
        }
        let at = Position { x: column, y: row };
        if let Some(view) = self.drawn.tab_at(at) {
            self.view = view;
            self.selected = 0;
        } else if let Some(index) = self.drawn.line_at(self.view, at)
            && index < self.rows()
        {
            self.selected = index;
        }
        None
    }

    fn switch(&mut self, step: usize) -> Option<Command> {
        let index = View::TABS.iter().position(|v| *v == self.view).unwrap_or(0);
        self.view = View::TABS[(index + step) % View::TABS.len()];
        self.selected = 0;
        match (self.view, &self.host) {
            (View::Host, Some(host)) => Some(Command::LoadHost { host: host.host.clone(), range: self.range }),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn hosts() -> Snapshot {
        let host =
            |name: &str, firing| HostRow { host: name.into(), status: "online".into(), firing, ..Default::default() };
        Snapshot { hosts: vec![host("web-2", 0), host("db-1", 0), host("web-1", 2)], ..Default::default() }
    }

    #[test]
    fn silencing_an_alert_and_reading_its_rules_history() {
        let mut app = App::new("http://x");
        let labels = std::collections::BTreeMap::from([("alertname".to_string(), "DiskFull".to_string())]);
        let alert = AlertRow {
            id: "a1".into(),
            rule: "DiskFull".into(),
            state: "firing".into(),
            severity: "critical".into(),
            labels: labels.clone(),
            since_ms: 0,
            value: 0.95,
            acknowledged: None,
            annotations: Default::default(),
        };
        app.update(Event::Data(Snapshot { alerts: vec![alert], ..Default::default() }));
        app.view = View::Alerts;
        // Typing over the suggested `1h` replaces it: 30 minutes, not `1h30m`.
        app.update(key(KeyCode::Char('s')));
        for c in "30m".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            Some(Command::Silence { matchers: labels.clone(), duration: "30m".into() })
        );
        // Editing it keeps what is there.
        app.update(key(KeyCode::Char('s')));
        app.update(key(KeyCode::Backspace));
        app.update(key(KeyCode::Char('5')));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            Some(Command::Silence { matchers: labels.clone(), duration: "15".into() })
        );
        app.update(key(KeyCode::Char('s')));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            Some(Command::Silence { matchers: labels, duration: "1h".into() }),
            "the suggestion as it is"
        );
        assert_eq!(app.update(key(KeyCode::Char('h'))), Some(Command::LoadRuleHistory("DiskFull".into())));
        app.update(Event::RuleHistory { rule: "DiskFull".into(), lines: vec!["firing".into()] });
        assert!(app.rule_history.is_some());
        app.update(key(KeyCode::Char('x')));
        assert!(app.rule_history.is_none(), "any key closes it");
    }

    #[test]
    fn silences_are_listed_and_expired_early() {
        let mut app = App::new("http://x");
        app.view = View::Alerts;
        assert_eq!(app.update(key(KeyCode::Char('S'))), Some(Command::LoadSilences));
        let silence = |id: &str| SilenceRow {
            id: id.into(),
            matchers: [("host".to_string(), "web-1".to_string())].into(),
            ends_ms: 3_600_000,
            created_by: "alice".into(),
            comment: String::new(),
        };
        app.update(Event::Silences { rows: vec![silence("s1"), silence("s2")], status: "2 silences".into() });
        app.update(key(KeyCode::Down));
        assert_eq!(app.update(key(KeyCode::Char('x'))), Some(Command::ExpireSilence("s2".into())));
        app.update(Event::Silences { rows: vec![silence("s1")], status: "silence s2 expired".into() });
        assert_eq!(app.silences.as_ref().map(|(rows, at)| (rows.len(), *at)), Some((1, 0)));
        assert_eq!(app.status, "silence s2 expired");
        app.update(key(KeyCode::Esc));
        assert!(app.silences.is_none(), "Esc closes the list");
    }

    #[test]
    fn the_overview_sorts_by_each_gauge() {
        let mut app = App::new("http://x");
        let mut snapshot = hosts();
        snapshot.hosts[0].cpu = Some(0.9);
        snapshot.hosts[1].cpu = Some(0.1);
        app.update(Event::Data(snapshot));
        let order = |app: &App| app.visible_hosts().iter().map(|h| h.host.clone()).collect::<Vec<_>>();
        assert_eq!(order(&app), ["web-1", "db-1", "web-2"], "firing alerts first");
        app.update(key(KeyCode::Char('o')));
        assert_eq!((app.sort, order(&app)), (SortBy::Name, vec!["db-1".into(), "web-1".into(), "web-2".into()]));
        app.update(key(KeyCode::Char('o')));
        assert_eq!(order(&app), ["web-2", "db-1", "web-1"], "busiest CPU first, no value last");
    }

    #[test]
    fn a_super_admin_cycles_through_tenants_and_back() {
        let mut app = App::new("http://x");
        app.update(Event::Data(hosts()));
        assert_eq!(app.update(key(KeyCode::Char('t'))), None);
        assert!(app.status.contains("super-admin"), "{}", app.status);
        app.update(Event::Tenants(vec!["acme".into(), "globex".into()]));
        assert_eq!(app.update(key(KeyCode::Char('t'))), Some(Command::SwitchTenant(Some("acme".into()))));
        assert!(app.data.hosts.is_empty(), "another tenant's hosts are not mixed with these");
        assert_eq!(app.update(key(KeyCode::Char('t'))), Some(Command::SwitchTenant(Some("globex".into()))));
        assert_eq!(app.update(key(KeyCode::Char('t'))), Some(Command::SwitchTenant(None)), "back to one's own");
    }

    #[test]
    fn filtering_selecting_and_opening_a_host() {
        let mut app = App::new("http://x");
        app.update(Event::Data(hosts()));
        assert_eq!(app.visible_hosts()[0].host, "web-1", "hosts with firing alerts first");
        app.update(key(KeyCode::Char('/')));
        for c in "web".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        app.update(key(KeyCode::Enter));
        assert_eq!(app.visible_hosts().len(), 2);
        let mut by_label = App::new("http://x");
        let mut snapshot = hosts();
        snapshot.hosts[1].labels.insert("env".into(), "prod".into());
        by_label.update(Event::Data(snapshot));
        by_label.filter = "env=prod".into();
        assert_eq!(by_label.visible_hosts().iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), vec!["db-1"]);
        app.update(key(KeyCode::Down));
        app.update(key(KeyCode::Down));
        assert_eq!(app.selected, 1, "selection stops at the last row");
        let command = app.update(key(KeyCode::Enter));
        assert_eq!(command, Some(Command::LoadHost { host: "web-2".into(), range: Range::Hour }));
        assert_eq!(app.view, View::Host);
        assert_eq!(
            app.update(key(KeyCode::Char(']'))),
            Some(Command::LoadHost { host: "web-2".into(), range: Range::Day })
        );
        app.update(key(KeyCode::Char(']')));
        assert_eq!(
            app.update(key(KeyCode::Char(']'))),
            Some(Command::LoadHost { host: "web-2".into(), range: Range::Week }),
            "the longest range stays"
        );
        assert_eq!(
            app.update(key(KeyCode::Char('['))),
            Some(Command::LoadHost { host: "web-2".into(), range: Range::Day })
        );
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Overview);
    }

    #[test]
    fn digits_on_the_host_screen_switch_views_as_the_tab_bar_says() {
        let mut app = App::new("http://x");
        app.update(Event::Data(hosts()));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Host);
        assert_eq!(app.update(key(KeyCode::Char('3'))), None, "no chart reload");
        assert_eq!(app.view, View::Checks, "`3 Checks` in the tab bar");
        assert_eq!(app.range, Range::Hour, "the range did not move");
    }

    #[test]
    fn acknowledging_an_alert_asks_for_a_comment() {
        let mut app = App::new("http://x");
        let alert = AlertRow {
            id: "a1".into(),
            rule: "DiskFull".into(),
            state: "firing".into(),
            severity: "critical".into(),
            labels: Default::default(),
            since_ms: 0,
            value: 0.97,
            acknowledged: None,
            annotations: Default::default(),
        };
        app.update(Event::Data(Snapshot { alerts: vec![alert], ..Default::default() }));
        app.update(key(KeyCode::Char('4')));
        assert_eq!(app.view, View::Alerts);
        app.update(key(KeyCode::Char('a')));
        for c in "on it".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            Some(Command::Acknowledge { id: "a1".into(), comment: "on it".into() })
        );
        assert_eq!(app.update(Event::Done("acknowledged".into())), Some(Command::Refresh));
        // The refresh that follows keeps the action's message on the status bar.
        app.update(Event::Data(Snapshot::default()));
        assert_eq!(app.status, "acknowledged");
        app.update(Event::Failed("server unreachable".into()));
        app.update(Event::Data(Snapshot::default()));
        assert_eq!(app.status, "connected to http://x");
    }

    /// Draws `app` on a `width`×`height` screen and keeps where it drew what, as the driver does.
    pub(crate) fn draw(app: &mut App, width: u16, height: u16) {
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
        let mut drawn = Drawn::default();
        terminal.draw(|frame| drawn = crate::render::render(app, frame)).unwrap();
        app.drawn = drawn;
    }

    #[test]
    fn clicks_pick_tabs_and_rows() {
        let mut app = App::new("http://x");
        app.update(Event::Data(hosts()));
        draw(&mut app, 80, 24);
        app.update(Event::Click { column: 4, row: 5 });
        assert_eq!(app.selected, 2, "third row");
        app.update(Event::Click { column: 30, row: 0 });
        assert_eq!(app.view, View::Checks, "` 1 Overview │ 2 Host │ 3 Checks` puts Checks at 22-31");
        draw(&mut app, 80, 24);
        app.update(Event::Click { column: 2, row: 0 });
        draw(&mut app, 80, 24);
        assert_eq!(app.view, View::Overview);
        app.update(Event::Click { column: 2, row: 40 });
        assert_eq!(app.selected, 0, "below the table: nothing");
    }

    #[test]
    fn a_lost_server_keeps_the_data_and_says_so() {
        let mut app = App::new("http://x");
        app.update(Event::Data(hosts()));
        app.update(Event::Failed("cannot reach http://x".into()));
        assert!(!app.connected);
        assert_eq!(app.data.hosts.len(), 3);
        assert!(app.status.contains("retrying"));
        app.update(key(KeyCode::Char('?')));
        assert!(app.help);
        app.update(key(KeyCode::Char('x')));
        assert!(!app.help, "any key closes the help");
        assert_eq!(app.update(key(KeyCode::Char('q'))), Some(Command::Quit));
    }

    /// `n` hosts `host-0000`…, their `client` label cycling over three clients (the last
    /// one's host has none), every seventh offline, every eleventh with an alert firing.
    pub(crate) fn fleet(n: usize) -> Snapshot {
        let hosts = (0..n)
            .map(|i| HostRow {
                tenant: "default".into(),
                agent_id: format!("agent-{i:04}"),
                host: format!("host-{i:04}"),
                labels: if i % 4 == 3 {
                    Default::default()
                } else {
                    [("client".to_string(), ["acme", "globex", "initech"][i % 4].to_string())].into()
                },
                status: if i % 7 == 0 { "offline" } else { "online" }.into(),
                firing: usize::from(i % 11 == 0),
                cpu: Some((i % 100) as f64 / 100.0),
                ..Default::default()
            })
            .collect();
        Snapshot { hosts, ..Default::default() }
    }

    #[test]
    fn every_host_of_a_thousand_is_reachable_by_scrolling_by_end_and_by_filter() {
        let mut app = App::new("http://x");
        app.page_rows = 40;
        app.update(Event::Data(fleet(1000)));
        app.update(key(KeyCode::Char('o')));
        assert_eq!(app.sort, SortBy::Name);
        for _ in 0..999 {
            app.update(key(KeyCode::Down));
        }
        assert_eq!(app.selected, 999);
        assert_eq!(app.scroll, 960, "the selection stays on screen");
        assert!(matches!(app.overview_lines()[app.selected], OverviewLine::Host(h) if h.host == "host-0999"));
        app.update(key(KeyCode::Down));
        assert_eq!(app.selected, 999, "no line past the last");
        // A click maps to the line drawn there: the table's first line is `scroll`.
        draw(&mut app, 80, 45);
        app.update(Event::Click { column: 4, row: 3 });
        assert_eq!(app.selected, 960);
        app.update(key(KeyCode::Home));
        assert_eq!((app.selected, app.scroll), (0, 0));
        app.update(key(KeyCode::End));
        assert_eq!((app.selected, app.scroll), (999, 960));
        app.update(key(KeyCode::PageUp));
        assert_eq!((app.selected, app.scroll), (959, 959));
        app.update(key(KeyCode::Home));
        app.update(key(KeyCode::Char('/')));
        for c in "host-0999".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        app.update(key(KeyCode::Enter));
        let found: Vec<&str> = app.visible_hosts().iter().map(|h| h.host.as_str()).collect();
        assert_eq!(found, ["host-0999"]);
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            Some(Command::LoadHost { host: "host-0999".into(), range: Range::Hour })
        );
    }

    #[test]
    fn grouping_by_client_counts_folds_and_jumps_between_groups() {
        let mut app = App::new("http://x");
        app.update(Event::Data(fleet(1000)));
        assert_eq!(app.update(key(KeyCode::Char('g'))), None, "not a super-admin: client first, no tenant");
        assert_eq!(app.group_by.as_deref(), Some("client"));
        let groups = |app: &App| -> Vec<GroupSummary> {
            app.overview_lines()
                .into_iter()
                .filter_map(|l| if let OverviewLine::Group(g) = l { Some(g) } else { None })
                .collect()
        };
        let seen = groups(&app);
        let names: Vec<&str> = seen.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["acme", "globex", "initech", ""], "by name, hosts without the label last");
        let count = |pick: fn(usize) -> bool| (0..1000).filter(|i| pick(*i)).count();
        assert_eq!(seen[0].hosts, 250);
        assert_eq!(seen[0].down, count(|i| i % 4 == 0 && i % 7 == 0));
        assert_eq!(seen[0].firing, count(|i| i % 4 == 0 && i % 11 == 0));
        assert_eq!(seen.iter().map(|g| g.hosts).sum::<usize>(), 1000);
        assert_eq!(app.overview_lines().len(), 1004);
        // `}` jumps to the next header; space folds the group the selection is in.
        app.update(key(KeyCode::Char('}')));
        assert_eq!(app.selected, 251);
        app.update(key(KeyCode::Down));
        app.update(key(KeyCode::Char(' ')));
        assert_eq!(app.selected, 251, "the folded group's header is selected");
        assert!(groups(&app)[1].collapsed);
        assert_eq!(app.overview_lines().len(), 754);
        app.update(key(KeyCode::Char('}')));
        assert_eq!(app.selected, 252, "the next header follows the folded one");
        app.update(key(KeyCode::Char('{')));
        assert_eq!(app.selected, 251);
        assert_eq!(app.update(key(KeyCode::Enter)), None, "Enter on a header unfolds it");
        assert_eq!(app.overview_lines().len(), 1004);
        app.update(key(KeyCode::End));
        assert!(matches!(app.overview_lines()[app.selected], OverviewLine::Host(h) if h.host == "host-0999"));
        // A super-admin may group by tenant: the overview then covers every tenant.
        app.update(Event::Tenants(vec!["default".into(), "globex".into()]));
        app.update(key(KeyCode::Char('g')));
        assert_eq!(app.group_by.as_deref(), Some("site"));
        app.update(key(KeyCode::Char('g')));
        app.update(key(KeyCode::Char('g')));
        assert_eq!(app.group_by, None);
        assert_eq!(app.update(key(KeyCode::Char('g'))), Some(Command::AllTenants(true)));
        assert_eq!(app.group_by.as_deref(), Some("tenant"));
        assert_eq!(app.update(key(KeyCode::Char('g'))), Some(Command::AllTenants(false)));
    }

    #[test]
    fn live_values_update_their_rows_and_activity_keeps_the_hosts() {
        let mut app = App::new("http://x");
        app.update(Event::Data(fleet(10)));
        app.update(Event::LiveHosts(vec![
            LiveHost { host: "host-0007".into(), seen_ms: 5_000, ..Default::default() },
            LiveHost { host: "host-0007".into(), cpu: Some(0.99), disk: Some(0.5), ..Default::default() },
        ]));
        let row = app.data.hosts.iter().find(|h| h.host == "host-0007").unwrap();
        assert_eq!(
            (row.status.as_str(), row.last_seen_ms, row.cpu, row.disk),
            ("online", 5_000, Some(0.99), Some(0.5))
        );
        let alert = AlertRow {
            id: "a1".into(),
            rule: "CpuHigh".into(),
            state: "firing".into(),
            severity: "warning".into(),
            labels: [("host".to_string(), "host-0003".to_string())].into(),
            since_ms: 0,
            value: 1.0,
            acknowledged: None,
            annotations: Default::default(),
        };
        app.update(Event::Activity(Snapshot { alerts: vec![alert], ..Default::default() }));
        assert_eq!(app.data.hosts.len(), 10, "the hosts stay");
        let firing: Vec<&str> = app.data.hosts.iter().filter(|h| h.firing > 0).map(|h| h.host.as_str()).collect();
        assert_eq!(firing, ["host-0003"], "firing counts follow the alerts");
        assert_eq!(app.data.alerts.len(), 1);
    }

    #[test]
    fn the_log_panel_pages_back_and_filters_by_text() {
        let mut app = App::new("http://x");
        app.view = View::Host;
        let logs: Vec<String> = (0..6).map(|i| format!("latest {i}")).collect();
        app.host = Some(HostDetail { host: "web-1".into(), logs, ..Default::default() });
        assert_eq!(app.update(key(KeyCode::PageUp)), None, "scrolls within the latest lines first");
        assert_eq!(app.logs.scroll, LOG_STEP);
        let wants_newest = Command::LoadLogs { host: "web-1".into(), contains: None, before: None };
        assert_eq!(app.update(key(KeyCode::PageUp)), Some(wants_newest));
        assert_eq!(app.update(key(KeyCode::PageUp)), None, "one page asked for at a time");
        let page = |range: std::ops::Range<usize>, older, more| Event::Logs {
            host: "web-1".into(),
            lines: range.map(|i| format!("line {i}")).collect(),
            before: Some(format!("c{more}")),
            more,
            older,
        };
        app.update(page(100..110, false, true));
        let wants_older = Command::LoadLogs { host: "web-1".into(), contains: None, before: Some("ctrue".into()) };
        app.logs.scroll = 8;
        assert_eq!(app.update(key(KeyCode::PageUp)), Some(wants_older));
        app.update(page(90..100, true, false));
        assert_eq!(app.log_lines().first().map(String::as_str), Some("line 90"), "the older page goes before");
        assert_eq!(app.log_lines().len(), 20);
        app.logs.scroll = 18;
        assert_eq!(app.update(key(KeyCode::PageUp)), None, "nothing older: stays at the oldest");
        assert_eq!(app.logs.scroll, 19);
        app.update(key(KeyCode::PageDown));
        assert_eq!(app.logs.scroll, 15);

        // `/` filters by text: a fresh newest page, holding the text, from the top.
        app.update(key(KeyCode::Char('/')));
        for c in "ERR".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        let wants = Command::LoadLogs { host: "web-1".into(), contains: Some("ERR".into()), before: None };
        assert_eq!(app.update(key(KeyCode::Enter)), Some(wants));
        assert_eq!((app.logs.scroll, app.logs.lines.is_none(), app.logs.filter.as_str()), (0, true, "ERR"));
        // A page for another host (the operator moved on) is dropped.
        app.update(Event::Logs {
            host: "db-1".into(),
            lines: vec!["x".into()],
            before: None,
            more: false,
            older: false,
        });
        assert!(app.logs.lines.is_none());
        app.update(key(KeyCode::Esc));
        assert_eq!(app.logs, LogPanel::default(), "leaving the host forgets the panel");
    }
}
