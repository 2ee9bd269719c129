//! The host view: CPU, memory and load charts, disk and network I/O per device, services
//! and containers, filesystems, top processes and the host's recent log lines.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, Wrap};

use super::percent;
use crate::app::{App, Range};

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

pub(super) fn host(app: &App, frame: &mut Frame, area: Rect) {
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
