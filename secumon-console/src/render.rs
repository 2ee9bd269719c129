//! Drawing: a pure function of [`App`] onto a frame, so a view is tested by rendering it
//! into ratatui's `TestBackend` and reading the buffer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Tabs, Wrap,
};

use crate::app::{App, GroupSummary, HostRow, Input, OverviewLine, Range, View};

fn severity_colour(severity: &str) -> Color {
    match severity {
        "critical" => Color::Red,
        "high" | "warning" => Color::LightRed,
        "medium" => Color::Yellow,
        "info" | "low" => Color::Blue,
        _ => Color::Gray,
    }
}

fn percent(value: Option<f64>) -> String {
    value.map(|v| format!("{:>5.1}%", v * 100.0)).unwrap_or_else(|| "    -".into())
}

/// "12s ago", "3m ago", "2h ago", "4d ago".
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let seconds = ((now_ms - then_ms) / 1000).max(0);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// Draws the whole console.
pub fn render(app: &App, frame: &mut Frame) {
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let mut titles: Vec<Line> =
        View::TABS.iter().enumerate().map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title()))).collect();
    if let Some(tenant) = &app.tenant {
        titles.push(Line::from(format!("tenant {tenant}")).style(Style::new().fg(Color::Yellow)));
    }
    let selected = View::TABS.iter().position(|v| *v == app.view).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles).select(selected).highlight_style(Style::new().add_modifier(Modifier::REVERSED)).divider("│"),
        tabs,
    );
    match app.view {
        View::Overview => overview(app, frame, body),
        View::Host => host(app, frame, body),
        View::Checks => checks(app, frame, body),
        View::Alerts => alerts(app, frame, body),
        View::Findings => findings(app, frame, body),
    }
    let (text, colour) = match &app.input {
        Some(Input::Filter) => (format!("filter: {}▏ (Enter to keep, Esc to leave)", app.filter), Color::Cyan),
        Some(Input::LogFilter) => {
            (format!("log lines holding: {}▏ (Enter to apply, empty for all)", app.logs.filter), Color::Cyan)
        }
        Some(Input::SilenceFor { text, .. }) => {
            (format!("silence for: {text}▏ (e.g. 30m, 4h; Enter to silence, Esc to cancel)"), Color::Cyan)
        }
        Some(Input::Comment { text, .. }) => {
            (format!("acknowledge, comment: {text}▏ (Enter to send, Esc to cancel)"), Color::Cyan)
        }
        None if app.connected => {
            let feed = if app.live { "live" } else { "polling" };
            (format!("{} ({feed})   ? help  q quit", app.status), Color::Green)
        }
        None => (format!("{}   ? help  q quit", app.status), Color::Red),
    };
    frame.render_widget(Paragraph::new(text).style(Style::new().fg(colour)), status);
    if app.help {
        help(frame);
    }
    if app.check_detail
        && let Some(check) = app.data.checks.get(app.selected)
    {
        check_detail(check, frame);
    }
    if let Some((rows, at)) = &app.silences {
        silences(app.now_ms, rows, *at, frame);
    }
    if let Some((rule, lines)) = &app.rule_history {
        let lines: Vec<Line> = if lines.is_empty() {
            vec![Line::from("No history yet.")]
        } else {
            lines.iter().map(|l| Line::from(l.clone())).collect()
        };
        popup(frame, format!(" History of {rule} — any key closes "), lines);
    }
}

/// A bordered box over the screen, two cells in from its edges.
fn popup(frame: &mut Frame, title: String, lines: Vec<Line>) {
    let area = frame.area();
    let popup = Rect {
        x: area.x + 2.min(area.width),
        y: area.y + 1.min(area.height),
        width: area.width.saturating_sub(4),
        height: area.height.saturating_sub(2),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), popup);
}

fn overview(app: &App, frame: &mut Frame, area: Rect) {
    let lines = app.overview_lines();
    let hosts = lines.iter().filter(|l| matches!(l, OverviewLine::Host(_))).count();
    let groups: Vec<&GroupSummary> =
        lines.iter().filter_map(|l| if let OverviewLine::Group(g) = l { Some(g) } else { None }).collect();
    let shown: usize = if app.group_by.is_some() { groups.iter().map(|g| g.hosts).sum() } else { hosts };
    let known = app.data.hosts.len();
    let mut title = if app.filter.is_empty() {
        format!(" Hosts ({shown}, by {}", app.sort.title())
    } else {
        format!(" Hosts ({shown} of {known} matching {:?}, by {}", app.filter, app.sort.title())
    };
    if let Some(group_by) = &app.group_by {
        title += &format!(", {} groups by {group_by}; space folds, {{ }} jump", groups.len());
    }
    title += ") ";
    if lines.is_empty() {
        let text = if app.data.hosts.is_empty() { "No host has reported yet." } else { "No host matches the filter." };
        frame.render_widget(Paragraph::new(text).block(Block::bordered().title(title)), area);
        return;
    }
    // Only the lines on screen are built: 10 000 hosts cost what a screenful does.
    let room = usize::from(area.height.saturating_sub(3)).max(1);
    let selected = app.selected.min(lines.len() - 1);
    let first = app.scroll.clamp(selected.saturating_sub(room - 1), selected);
    let rows = lines.iter().enumerate().skip(first).take(room).map(|(i, line)| {
        let style = if i == selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        match line {
            OverviewLine::Group(group) => group_row(app, group).style(style.add_modifier(Modifier::BOLD)),
            OverviewLine::Host(h) => host_row(app, h).style(style),
        }
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(6),
    ];
    let header = Row::new(["HOST", "CLOCK", "STATUS", "CPU", "MEMORY", "DISK", "SEEN", "ALERTS"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
}

/// A group's header line: its name and host count, how many are down, alerts firing.
fn group_row<'a>(app: &App, group: &GroupSummary) -> Row<'a> {
    let fold = if group.collapsed { '▸' } else { '▾' };
    let label = app.group_by.as_deref().unwrap_or("");
    let name = if group.name.is_empty() { format!("(no {label})") } else { format!("{label} {}", group.name) };
    let down = if group.down > 0 { Color::Red } else { Color::Green };
    let firing = if group.firing > 0 { Color::Red } else { Color::Reset };
    Row::new(vec![
        Cell::from(format!("{fold} {name} · {} hosts", group.hosts)).style(Style::new().fg(Color::Cyan)),
        Cell::from(""),
        Cell::from(format!("{} down", group.down)).style(Style::new().fg(down)),
        Cell::from(""),
        Cell::from(""),
        Cell::from(""),
        Cell::from(""),
        Cell::from(group.firing.to_string()).style(Style::new().fg(firing)),
    ])
}

fn host_row<'a>(app: &App, h: &HostRow) -> Row<'a> {
    // An idle script (not run lately) is grey, not red: it is not a host that went down.
    let status = match h.status.as_str() {
        "online" => Color::Green,
        _ if !h.is_down() => Color::DarkGray,
        _ => Color::Red,
    };
    let firing = if h.firing > 0 { Color::Red } else { Color::Reset };
    // Red: the server re-stamps this host's data; yellow: off, within the tolerance.
    let clock = match h.clock_offset_ms {
        _ if h.clock_corrected => Color::Red,
        Some(offset) if offset.abs() >= 1_000 => Color::Yellow,
        _ => Color::Reset,
    };
    // Indented under a group's header.
    let name = if app.group_by.is_some() { format!("  {}", h.host) } else { h.host.clone() };
    Row::new(vec![
        Cell::from(name),
        Cell::from(clock_offset(h.clock_offset_ms)).style(Style::new().fg(clock)),
        Cell::from(h.status.clone()).style(Style::new().fg(status)),
        Cell::from(percent(h.cpu)),
        Cell::from(percent(h.memory)),
        Cell::from(percent(h.disk)),
        Cell::from(ago(app.now_ms, h.last_seen_ms)),
        Cell::from(h.firing.to_string()).style(Style::new().fg(firing)),
    ])
}

/// An agent's clock offset in a few characters: `ok` under a second, else signed
/// (`+3.0s`, `-12m`, `+2h05m`); `-` when not measured.
pub fn clock_offset(offset_ms: Option<i64>) -> String {
    let Some(offset) = offset_ms else { return "-".into() };
    let sign = if offset < 0 { '-' } else { '+' };
    let ms = offset.unsigned_abs();
    match ms {
        0..1_000 => "ok".into(),
        1_000..60_000 => format!("{sign}{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{sign}{}m", ms / 60_000),
        _ => format!("{sign}{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn chart<'a>(title: &'a str, points: &'a [(f64, f64)], bounds: ([f64; 2], [f64; 2]), unit: &'a str) -> Chart<'a> {
    let dataset = Dataset::default().marker(symbols::Marker::Braille).graph_type(GraphType::Line).data(points);
    let latest = points.last().map(|(_, v)| format!("{v:.2}{unit}")).unwrap_or_else(|| "no data".into());
    Chart::new(vec![dataset])
        .block(Block::bordered().title(format!(" {title}: {latest} ")))
        .x_axis(Axis::default().bounds(bounds.0))
        .y_axis(Axis::default().bounds(bounds.1).labels([format!("{:.0}", bounds.1[0]), format!("{:.0}", bounds.1[1])]))
}

/// Named series in chart coordinates: seconds, and values times `scale`.
type Plotted = Vec<(String, Vec<(f64, f64)>)>;

fn plotted(series: &[(String, Vec<(i64, f64)>)], scale: f64) -> Plotted {
    series
        .iter()
        .map(|(name, points)| (name.clone(), points.iter().map(|(t, v)| (*t as f64 / 1000.0, v * scale)).collect()))
        .collect()
}

/// A chart of several named series (cores, read/write) in distinct colours.
fn series_chart<'a>(title: &'a str, points: &'a Plotted, unit: &'a str) -> Chart<'a> {
    const COLOURS: [Color; 6] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green, Color::Blue, Color::Red];
    let all = points.iter().flat_map(|(_, p)| p.iter());
    let (first, last, top) =
        all.fold((f64::MAX, f64::MIN, 0.0f64), |(a, b, c), (t, v)| (a.min(*t), b.max(*t), c.max(*v)));
    let x = if first <= last { [first, last.max(first + 1.0)] } else { [0.0, 1.0] };
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let latest: Vec<String> = points
        .iter()
        .filter_map(|(name, p)| p.last().map(|(_, v)| format!("{name} {}", human(*v, unit))))
        .take(3)
        .collect();
    let datasets: Vec<Dataset> = points
        .iter()
        .enumerate()
        .map(|(i, (name, data))| {
            Dataset::default()
                .name(name.clone())
                .marker(symbols::Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(COLOURS[i % COLOURS.len()]))
                .data(data)
        })
        .collect();
    let latest = if latest.is_empty() { "no data".to_string() } else { latest.join(", ") };
    Chart::new(datasets)
        .block(Block::bordered().title(format!(" {title}: {latest} ")))
        .x_axis(Axis::default().bounds(x))
        .y_axis(Axis::default().bounds([0.0, top]).labels(["0".to_string(), human(top, unit)]))
}

/// 1.5 k, 2.3 M... for rates and sizes; percentages as they are.
fn human(value: f64, unit: &str) -> String {
    if unit == "%" {
        return format!("{value:.0}%");
    }
    let (scaled, prefix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    format!("{scaled:.1} {prefix}{}", unit.trim())
}

fn host(app: &App, frame: &mut Frame, area: Rect) {
    let Some(detail) = &app.host else {
        frame.render_widget(
            Paragraph::new("Pick a host on the overview (Enter).").block(Block::bordered().title(" Host ")),
            area,
        );
        return;
    };
    let range = detail.range.unwrap_or(app.range);
    let [charts, io, tables, logs] =
        Layout::vertical([Constraint::Min(6), Constraint::Min(6), Constraint::Length(7), Constraint::Length(6)])
            .areas(area);
    let [disk, network, services] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(io);
    let (disk_points, network_points) = (plotted(&detail.disk, 1.0), plotted(&detail.network, 1.0));
    frame.render_widget(series_chart("Disk I/O", &disk_points, " B/s"), disk);
    frame.render_widget(series_chart("Network", &network_points, " B/s"), network);
    let failed = if detail.failed_units.is_empty() { "none".to_string() } else { detail.failed_units.join(", ") };
    let mut info = vec![
        Line::from(format!("failed units: {failed}")),
        Line::from(format!("containers up: {} of {}", detail.containers.0, detail.containers.1)),
    ];
    // A host whose batches are refused has little to chart: say why, where it is looked at.
    let refused = app.data.hosts.iter().find(|h| h.host == detail.host).and_then(|h| h.refused_reason.as_deref());
    if let Some(reason) = refused {
        info.push(Line::styled(format!("batches refused: {reason}"), Style::new().fg(Color::Red)));
    }
    let info = Paragraph::new(info).wrap(Wrap { trim: true });
    frame.render_widget(info.block(Block::bordered().title(" Services and containers ")), services);
    let [filesystems, processes] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(tables);
    let listed = |rows: &[(String, f64)], title: &'static str| {
        let rows = rows
            .iter()
            .map(|(name, ratio)| Row::new(vec![Cell::from(name.clone()), Cell::from(percent(Some(*ratio)))]));
        Table::new(rows, [Constraint::Min(10), Constraint::Length(7)]).block(Block::bordered().title(title))
    };
    frame.render_widget(listed(&detail.filesystems, " Filesystems (used) "), filesystems);
    frame.render_widget(listed(&detail.processes, " Top processes (CPU) "), processes);
    let [left, middle, right] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(charts);
    let scaled = |points: &[(i64, f64)], scale: f64| -> Vec<(f64, f64)> {
        points.iter().map(|(t, v)| (*t as f64 / 1000.0, v * scale)).collect()
    };
    let cpu = scaled(&detail.cpu, 100.0);
    let memory = scaled(&detail.memory, 100.0);
    let load = scaled(&detail.load, 1.0);
    let x = |points: &[(f64, f64)]| {
        let first = points.first().map_or(0.0, |p| p.0);
        [first, points.last().map_or(1.0, |p| p.0).max(first + 1.0)]
    };
    let load_max = load.iter().map(|p| p.1).fold(1.0, f64::max).ceil();
    let cores = plotted(&detail.cpu_cores, 100.0);
    if cores.len() > 1 {
        frame.render_widget(series_chart("CPU % per core", &cores, "%"), left);
    } else {
        frame.render_widget(chart("CPU %", &cpu, (x(&cpu), [0.0, 100.0]), "%"), left);
    }
    frame.render_widget(chart("Memory %", &memory, (x(&memory), [0.0, 100.0]), "%"), middle);
    frame.render_widget(chart("Load", &load, (x(&load), [0.0, load_max]), ""), right);
    // The window `scroll` lines back from the newest.
    let all = app.log_lines();
    let height = usize::from(logs.height.saturating_sub(2));
    let end = all.len().saturating_sub(app.logs.scroll);
    let lines: Vec<Line> = all[end.saturating_sub(height)..end].iter().map(|l| Line::from(l.as_str())).collect();
    let mut about = String::from("recent logs");
    if !app.logs.filter.is_empty() && app.logs.lines.is_some() {
        about = format!("logs holding {:?}", app.logs.filter);
    }
    if app.logs.scroll > 0 {
        about.push_str(&format!(" ({} back)", app.logs.scroll));
    }
    let ranges = Range::ALL
        .iter()
        .map(|r| if *r == range { format!("<{}>", r.period()) } else { r.period().to_string() })
        .collect::<Vec<_>>()
        .join(" ");
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" {} — {about} (PgUp PgDn, / filter) — range ([ ]): {ranges} — Esc back ", detail.host)),
        ),
        logs,
    );
}

/// One line about a check's last run: its error, or what matters for its kind.
fn check_summary(run: &crate::app::CheckRun) -> String {
    let d = &run.details;
    if let Some(error) = d["error"].as_str() {
        return error.to_string();
    }
    match run.kind.as_str() {
        "http" => format!(
            "HTTP {} in {:.0} ms{}",
            d["response"]["status"],
            d["response"]["timings"]["total"].as_f64().unwrap_or(0.0) * 1000.0,
            d["response"]["tls"]["days_to_expiry"]
                .as_f64()
                .map(|days| format!(", cert {days:.0} days"))
                .unwrap_or_default()
        ),
        "tls" => format!(
            "grade {}, cert {:.0} days, {}",
            d["grade"].as_str().unwrap_or("?"),
            d["chain"][0]["days_to_expiry"].as_f64().unwrap_or(0.0),
            d["chain_validation"].as_str().unwrap_or("")
        ),
        "ping" => format!(
            "loss {:.0}%, avg {:.2} ms",
            d["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            d["avg_ms"].as_f64().unwrap_or(0.0)
        ),
        _ => d["problems"].as_array().and_then(|p| p.first()).and_then(|p| p.as_str()).unwrap_or("").to_string(),
    }
}

/// Values as a line of block characters, lowest to highest.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let (low, high) = shown.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    shown
        .iter()
        .map(|v| {
            let level = if high > low { ((v - low) / (high - low) * 7.0).round() as usize } else { 0 };
            BARS[level.min(7)]
        })
        .collect()
}

fn checks(app: &App, frame: &mut Frame, area: Rect) {
    let title = format!(" Checks ({}) — Enter for details ", app.data.checks.len());
    if app.data.checks.is_empty() {
        frame.render_widget(
            Paragraph::new("No probe check has reported yet.").block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let rows = app.data.checks.iter().enumerate().map(|(i, c)| {
        let style = if i == app.selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        let colour = match c.result.status.as_str() {
            "ok" => Color::Green,
            "warning" => Color::Yellow,
            "critical" => Color::Red,
            _ => Color::Magenta,
        };
        Row::new(vec![
            Cell::from(c.result.status.clone()).style(Style::new().fg(colour)),
            Cell::from(c.result.kind.clone()),
            Cell::from(c.result.check_id.clone()),
            Cell::from(c.result.target.clone()),
            Cell::from(c.host.clone()),
            Cell::from(ago(app.now_ms, c.result.timestamp_ms)),
            Cell::from(sparkline(&c.latency, 12)).style(Style::new().fg(Color::Cyan)),
            Cell::from(check_summary(&c.result)),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(14),
        Constraint::Length(26),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Min(10),
    ];
    let header = Row::new(["STATUS", "KIND", "CHECK", "TARGET", "PROBE", "RUN", "LATENCY 1H", "LAST RESULT"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
}

fn check_detail(check: &crate::app::CheckRow, frame: &mut Frame) {
    let text = serde_json::to_string_pretty(&check.result.details).unwrap_or_default();
    let lines: Vec<Line> = text.lines().map(|l| Line::from(l.to_string())).collect();
    popup(frame, format!(" {} {} — any key closes ", check.result.kind, check.result.target), lines);
}

/// The silences in force, the selected one highlighted.
fn silences(now_ms: i64, rows: &[crate::app::SilenceRow], at: usize, frame: &mut Frame) {
    let lines: Vec<Line> = if rows.is_empty() {
        vec![Line::from("No silence in force.")]
    } else {
        rows.iter()
            .enumerate()
            .map(|(i, s)| {
                let matchers: Vec<String> = s.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let left = (s.ends_ms - now_ms).max(0) / 1_000;
                let (hours, minutes) = (left / 3_600, left / 60 % 60);
                let text = format!(
                    "{}  {hours}h{minutes:02}m left  {}  by {}  {}",
                    s.id,
                    matchers.join(","),
                    s.created_by,
                    s.comment
                );
                let style = if i == at { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
                Line::from(text).style(style)
            })
            .collect()
    };
    popup(frame, " Silences — x expires the selected one, Esc closes ".to_string(), lines);
}

fn alerts(app: &App, frame: &mut Frame, area: Rect) {
    let title = " Alerts (a acknowledge, s silence, S silences, h rule history) ";
    if app.data.alerts.is_empty() {
        frame.render_widget(
            Paragraph::new("No alert pending, firing or stale.").block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let rows = app.data.alerts.iter().enumerate().map(|(i, a)| {
        let style = if i == app.selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        let state = match (&a.acknowledged, a.state.as_str()) {
            (Some(ack), _) => format!("ack by {}", ack.by),
            (None, state) => state.to_string(),
        };
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "tenant"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Row::new(vec![
            Cell::from(a.severity.clone()).style(Style::new().fg(severity_colour(&a.severity))),
            Cell::from(state),
            Cell::from(a.rule.clone()),
            Cell::from(ago(app.now_ms, a.since_ms)),
            Cell::from(labels.join(",")),
            Cell::from(a.annotations.get("summary").cloned().unwrap_or_default()),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Length(18),
        Constraint::Length(9),
        Constraint::Min(16),
        // The rule's summary takes what is left: on a narrow terminal the labels stay readable.
        Constraint::Fill(1),
    ];
    let header = Row::new(["SEVERITY", "STATE", "RULE", "SINCE", "LABELS", "SUMMARY"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
}

fn findings(app: &App, frame: &mut Frame, area: Rect) {
    let title = format!(" Findings ({}) ", app.data.findings.len());
    if app.data.findings.is_empty() {
        frame.render_widget(Paragraph::new("No finding imported.").block(Block::bordered().title(title)), area);
        return;
    }
    let rows = app.data.findings.iter().enumerate().map(|(i, f)| {
        let style = if i == app.selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        Row::new(vec![
            Cell::from(f.severity.clone()).style(Style::new().fg(severity_colour(&f.severity))),
            Cell::from(f.status.clone()),
            Cell::from(f.asset.clone()),
            Cell::from(f.id.clone()),
            Cell::from(f.title.clone()),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(20),
        Constraint::Length(24),
        Constraint::Min(10),
    ];
    let header =
        Row::new(["SEVERITY", "STATUS", "ASSET", "ID", "TITLE"]).style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
}

fn help(frame: &mut Frame) {
    let lines = [
        "1-5 / Tab   switch view",
        "[ ]         chart range shorter / longer (Host)",
        "Enter       open the host (Overview), a check's details (Checks)",
        "↑↓ j k      move",
        "/           filter hosts by name, tenant or label=value; log lines by text (Host)",
        "g           group hosts: tenant (super-admin), client, site, role",
        "space { }   fold a group / previous, next group (Overview)",
        "Home End    first / last line; PgUp PgDn a page",
        "PgUp PgDn   log lines back / forward, older pages loaded (Host)",
        "a           acknowledge the alert (Alerts)",
        "r           refresh now",
        "t           next tenant (super-admin)",
        "o           sort hosts: alerts, name, CPU, memory, disk, last seen",
        "s / h       silence the alert / its rule's history (Alerts)",
        "S           silences in force; x expires one (Alerts)",
        "Esc         back / cancel",
        "q Ctrl-C    quit",
    ];
    let area = frame.area();
    let width = 70.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    let text: Vec<Line> = lines.iter().map(|l| Line::from(Span::raw(*l))).collect();
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Help — any key closes ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::app::{AlertRow, FindingRow, HostDetail, Snapshot};

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| render(app, frame)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn app() -> App {
        let mut app = App::new("http://127.0.0.1:8080");
        app.now_ms = 1_000_000;
        app.connected = true;
        app.status = "connected to http://127.0.0.1:8080".into();
        app.data = Snapshot {
            hosts: vec![
                HostRow {
                    tenant: "default".into(),
                    agent_id: "agent-web-1".into(),
                    labels: [("env".to_string(), "prod".to_string())].into(),
                    host: "web-1".into(),
                    kind: "agent".into(),
                    status: "online".into(),
                    cpu: Some(0.423),
                    memory: Some(0.61),
                    disk: Some(0.9),
                    last_seen_ms: 990_000,
                    firing: 1,
                    clock_offset_ms: Some(7_203_000),
                    clock_corrected: true,
                    refused_reason: None,
                },
                HostRow { host: "db-1".into(), status: "offline".into(), last_seen_ms: 100_000, ..Default::default() },
            ],
            alerts: vec![AlertRow {
                id: "a1".into(),
                rule: "DiskFull".into(),
                state: "firing".into(),
                severity: "critical".into(),
                labels: [("host".to_string(), "web-1".to_string())].into(),
                since_ms: 880_000,
                value: 0.9,
                acknowledged: None,
                annotations: [("summary".to_string(), "/var at 97%".to_string())].into(),
            }],
            checks: vec![crate::app::CheckRow {
                host: "probe-paris".into(),
                result: crate::app::CheckRun {
                    check_id: "shop".into(),
                    kind: "http".into(),
                    target: "https://shop.example".into(),
                    status: "warning".into(),
                    timestamp_ms: 995_000,
                    duration_us: 120_000,
                    details: serde_json::json!({"response": {"status": 200, "timings": {"total": 0.12},
                        "tls": {"days_to_expiry": 9.6}}, "warnings": ["certificate expires in 10 days"]}),
                },
                latency: vec![0.1, 0.2, 0.8],
            }],
            findings: vec![FindingRow {
                id: "CVE-2024-3094".into(),
                severity: "critical".into(),
                asset: "web-1".into(),
                title: "xz backdoor".into(),
                status: "open".into(),
            }],
        };
        app
    }

    #[test]
    fn overview_lists_hosts_with_gauges() {
        let text = screen(&app(), 80, 24);
        let web = text.lines().find(|l| l.contains("web-1")).unwrap();
        assert!(
            web.contains("online") && web.contains("42.3%") && web.contains("61.0%") && web.contains("90.0%"),
            "{web}"
        );
        assert!(web.contains("10s ago"), "{web}");
        assert!(text.lines().find(|l| l.contains("db-1")).unwrap().contains("15m ago"));
        assert!(text.lines().last().unwrap().contains("connected to http://127.0.0.1:8080"));
        assert!(text.contains("Hosts (2, by alerts)"), "{text}");
        assert_eq!(web.split_whitespace().nth(1), Some("+2h00m"), "the clock offset beside the host: {web}");
        let db = text.lines().find(|l| l.contains("db-1")).unwrap();
        assert_eq!(db.split_whitespace().nth(1), Some("-"), "not measured: {db}");
    }

    #[test]
    fn clock_offsets_read_at_a_glance() {
        assert_eq!(clock_offset(None), "-");
        assert_eq!(clock_offset(Some(-999)), "ok");
        assert_eq!(clock_offset(Some(3_040)), "+3.0s");
        assert_eq!(clock_offset(Some(-754_000)), "-12m");
        assert_eq!(clock_offset(Some(-7_500_000)), "-2h05m");
    }

    /// The foreground colour of the first cell of `needle` on an 80×24 screen.
    fn colour_on_80x24(buffer: &ratatui::buffer::Buffer, needle: &str) -> Color {
        let y = (0..24)
            .find(|&y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>().contains(needle))
            .unwrap_or_else(|| panic!("{needle} not on screen"));
        let row: String = (0..80).map(|x| buffer[(x, y)].symbol()).collect();
        let x = row.find(needle).unwrap() as u16;
        buffer[(x, y)].fg
    }

    #[test]
    fn a_corrected_clock_is_red_a_small_offset_yellow() {
        let mut app = app();
        app.data.hosts[1].clock_offset_ms = Some(3_000);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|frame| render(&app, frame)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let colour_of = |needle: &str| colour_on_80x24(&buffer, needle);
        assert_eq!(colour_of("+2h00m"), Color::Red);
        assert_eq!(colour_of("+3.0s"), Color::Yellow);
    }

    #[test]
    fn an_idle_script_is_grey_and_not_counted_down() {
        let mut app = app();
        app.data.hosts.push(HostRow {
            host: "nas-backup".into(),
            kind: "script".into(),
            status: "idle".into(),
            last_seen_ms: 100_000,
            ..Default::default()
        });
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|frame| render(&app, frame)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let colour_of = |needle: &str| colour_on_80x24(&buffer, needle);
        assert_eq!(colour_of("idle"), Color::DarkGray);
        assert_eq!(colour_of("offline"), Color::Red);
        // Grouped, the header counts db-1 down, not the script.
        app.group_by = Some("tenant".into());
        let down: Vec<(String, usize, usize)> = app
            .overview_lines()
            .into_iter()
            .filter_map(|line| match line {
                OverviewLine::Group(g) => Some((g.name, g.hosts, g.down)),
                OverviewLine::Host(_) => None,
            })
            .collect();
        assert_eq!(down, vec![("default".to_string(), 1, 0), (String::new(), 2, 1)]);
    }

    #[test]
    fn alerts_findings_host_and_help_views() {
        let mut state = app();
        state.view = View::Alerts;
        let text = screen(&state, 80, 24);
        assert!(
            text.lines().any(|l| l.contains("critical")
                && l.contains("firing")
                && l.contains("DiskFull")
                && l.contains("host=web-1")),
            "{text}"
        );
        let wide = screen(&state, 140, 24);
        assert!(wide.lines().any(|l| l.contains("DiskFull") && l.contains("/var at 97%")), "the summary: {wide}");
        state.data.alerts[0].acknowledged =
            Some(crate::app::Acknowledged { by: "alice".into(), comment: String::new() });
        assert!(screen(&state, 80, 24).contains("ack by alice"));
        state.silences = Some((
            vec![crate::app::SilenceRow {
                id: "9c1d2e3f4a5b6c7d".into(),
                matchers: [("host".to_string(), "web-1".to_string())].into(),
                ends_ms: state.now_ms + 5_400_000,
                created_by: "alice".into(),
                comment: "maintenance".into(),
            }],
            0,
        ));
        let text = screen(&state, 100, 24);
        assert!(
            text.lines()
                .any(|l| l.contains("9c1d2e3f4a5b6c7d") && l.contains("1h30m left") && l.contains("host=web-1")),
            "{text}"
        );
        state.silences = None;

        state.view = View::Checks;
        let text = screen(&state, 140, 24);
        let line = text.lines().find(|l| l.contains("shop")).unwrap();
        assert!(line.contains("▁▂█"), "{line}");
        assert!(
            line.contains("warning")
                && line.contains("probe-paris")
                && line.contains("HTTP 200 in 120 ms, cert 10 days"),
            "{line}"
        );
        state.check_detail = true;
        assert!(screen(&state, 120, 24).contains("certificate expires in 10 days"));
        state.check_detail = false;

        state.view = View::Findings;
        let text = screen(&state, 80, 24);
        assert!(text.lines().any(|l| l.contains("CVE-2024-3094") && l.contains("xz backdoor")), "{text}");

        state.view = View::Host;
        state.host = Some(HostDetail {
            host: "web-1".into(),
            range: Some(Range::Hour),
            cpu: vec![(0, 0.2), (60_000, 0.5)],
            memory: vec![(0, 0.6)],
            load: vec![],
            cpu_cores: vec![("0".into(), vec![(0, 0.1), (60_000, 0.3)]), ("1".into(), vec![(0, 0.5), (60_000, 0.7)])],
            disk: vec![("read".into(), vec![(60_000, 2_500_000.0)]), ("write".into(), vec![])],
            network: vec![],
            failed_units: vec!["backup.service".into()],
            containers: (2, 3),
            filesystems: vec![("/".into(), 0.91), ("/data".into(), 0.4)],
            processes: vec![("postgres".into(), 0.35)],
            logs: vec!["sshd[1]: Accepted publickey for ops".into()],
        });
        let text = screen(&state, 120, 44);
        assert!(!text.contains("batches refused"), "{text}");
        let mut refused = state.clone();
        refused.data.hosts[0].status = "refused".into();
        refused.data.hosts[0].refused_reason = Some("sample is more than 3600000 ms in the future".into());
        let shown = screen(&refused, 120, 44);
        assert!(shown.contains("batches refused: sample is more") && shown.contains("in the future"), "{shown}");
        assert!(text.contains("CPU % per core: 0 30%, 1 70%"), "{text}");
        assert!(text.contains("Disk I/O: read 2.5 MB/s"), "{text}");
        assert!(text.contains("failed units: backup.service") && text.contains("containers up: 2 of 3"), "{text}");
        assert!(text.lines().any(|l| l.contains("/data") && l.contains("40.0%")), "{text}");
        assert!(text.lines().any(|l| l.contains("postgres") && l.contains("35.0%")), "{text}");
        assert!(text.contains("Memory %: 60.00%") && text.contains("Load: no data"), "{text}");
        assert!(text.contains("Accepted publickey") && text.contains("range ([ ]): 15m <1h> 24h 7d"), "{text}");
        // The log panel scrolled back into an older page, filtered by text.
        let mut paged = state.clone();
        paged.logs = crate::app::LogPanel {
            filter: "sshd".into(),
            lines: Some((0..40).map(|i| format!("/var/log/auth.log sshd[{i}]: session {i}")).collect()),
            scroll: 10,
            more: true,
            ..Default::default()
        };
        let text = screen(&paged, 120, 44);
        assert!(text.contains("logs holding \"sshd\" (10 back)"), "{text}");
        // Six rows, four inside the border: the lines 26-29, 10 back from the newest (39).
        for i in 26..30 {
            assert!(text.contains(&format!("sshd[{i}]: session {i}")), "{i}: {text}");
        }
        assert!(!text.contains("sshd[30]") && !text.contains("sshd[25]"), "{text}");
        assert!(!text.contains("Accepted publickey"), "the panel's own pages replace the latest lines");
        // The tab bar numbers the views 1-5; no digit may mean a range on this screen.
        assert!(text.contains("3 Checks"), "{text}");
        assert!(!text.contains("2 1h") && !text.contains("3 24h"), "{text}");

        state.help = true;
        let help = screen(&state, 80, 24);
        assert!(help.contains("Help — any key closes"));
        assert!(help.contains("[ ]         chart range shorter / longer (Host)"), "{help}");
        assert!(!help.contains("1-4"), "{help}");
    }

    #[test]
    fn sparklines_scale_to_their_range() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0], 10), "▁▅█");
        assert_eq!(sparkline(&[5.0, 5.0], 10), "▁▁");
        assert_eq!(sparkline(&[1.0, 2.0, 3.0, 4.0], 2), "▁█", "the latest values");
        assert_eq!(sparkline(&[], 5), "");
    }

    #[test]
    fn empty_server_tiny_terminal_and_disconnection_do_not_panic() {
        let mut empty = App::new("http://127.0.0.1:8080");
        assert!(screen(&empty, 80, 24).contains("No host has reported yet."));
        for view in View::TABS {
            empty.view = view;
            for (w, h) in [(80, 24), (20, 5), (1, 1), (200, 60)] {
                screen(&empty, w, h);
            }
        }
        let mut lost = app();
        lost.connected = false;
        let mut live = app();
        live.live = true;
        assert!(
            screen(&live, 80, 24).lines().last().unwrap().contains("(live)"),
            "the status bar says updates are live"
        );
        assert!(screen(&app(), 80, 24).lines().last().unwrap().contains("(polling)"));
        lost.status = "cannot reach http://127.0.0.1:8080; retrying".into();
        assert!(screen(&lost, 80, 24).contains("retrying"));
        assert!(screen(&lost, 80, 24).contains("web-1"), "the last data stays on screen");
    }

    /// The line of `text` holding `needle`, and its index.
    fn line_with<'a>(text: &'a str, needle: &str) -> Option<(usize, &'a str)> {
        text.lines().enumerate().find(|(_, l)| l.contains(needle))
    }

    #[test]
    fn a_thousand_hosts_in_a_160_by_45_pane_the_last_one_reachable_and_clickable() {
        use crate::app::Event;
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let mut app = App::new("http://127.0.0.1:8080");
        app.connected = true;
        app.page_rows = 45 - 5;
        app.update(Event::Data(crate::app::tests::fleet(1000)));
        let text = screen(&app, 160, 45);
        assert!(text.contains("Hosts (1000, by alerts)"), "{text}");
        assert!(text.contains("host-0000"), "most firing first, then by name: {text}");
        app.update(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
        let text = screen(&app, 160, 45);
        // Most firing first, then by name: host-0999 (none firing) is the last line.
        let (y, last) = line_with(&text, "host-0999").expect("the last line in the order is drawn");
        assert_eq!(y, 42, "at the table's bottom, over the border and status: {text}");
        assert!(last.contains("online"), "{last}");
        // The line drawn at a row is the one a click there selects.
        let (y, drawn) = line_with(&text, "host-0980").unwrap();
        app.update(Event::Click { column: 3, row: y as u16 });
        let picked = match &app.overview_lines()[app.selected] {
            crate::app::OverviewLine::Host(h) => h.host.clone(),
            other => panic!("{other:?}"),
        };
        assert!(drawn.contains(&picked), "{drawn} / {picked}");
        let text = screen(&app, 160, 45);
        assert_eq!(line_with(&text, "host-0980").map(|(y2, _)| y2), Some(y), "a click does not scroll");
    }

    #[test]
    fn group_headers_carry_their_counts() {
        use crate::app::Event;
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let mut app = App::new("http://127.0.0.1:8080");
        app.page_rows = 40;
        app.update(Event::Data(crate::app::tests::fleet(1000)));
        app.update(Event::Key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE)));
        let text = screen(&app, 160, 45);
        assert!(text.contains("Hosts (1000, by alerts, 4 groups by client"), "{text}");
        let (_, acme) = line_with(&text, "client acme").expect("a header");
        let down = (0..1000).filter(|i| i % 4 == 0 && i % 7 == 0).count();
        let firing = (0..1000).filter(|i| i % 4 == 0 && i % 11 == 0).count();
        assert!(acme.contains("▾ client acme · 250 hosts"), "{acme}");
        assert!(acme.contains(&format!("{down} down")), "{acme}");
        assert_eq!(acme.split_whitespace().nth_back(1), Some(firing.to_string().as_str()), "{acme}");
        // Folded, with the jump key to the next group.
        app.update(Event::Key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)));
        app.update(Event::Key(KeyEvent::new(KeyCode::Char('}'), KeyModifiers::NONE)));
        let text = screen(&app, 160, 45);
        let (y_acme, acme) = line_with(&text, "client acme").unwrap();
        let (y_globex, _) = line_with(&text, "client globex").unwrap();
        assert!(acme.contains("▸"), "{acme}");
        assert_eq!(y_globex, y_acme + 1, "nothing under a folded header: {text}");
        app.update(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
        let text = screen(&app, 160, 45);
        assert!(text.contains("(no client) · 250 hosts") || text.contains("host-0999"), "{text}");
        assert!(line_with(&text, "host-0999").is_some(), "the last host, under the unlabelled group: {text}");
    }
}
