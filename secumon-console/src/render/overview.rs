//! The overview: every host (or every group of hosts) with its gauges, one line each, and
//! only the lines on screen built.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{TableLines, ago, percent, shown_lines, table_lines};
use crate::app::{App, GroupSummary, HostRow, OverviewLine, View};

pub(super) fn overview(app: &App, frame: &mut Frame, area: Rect) -> Option<TableLines> {
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
        return None;
    }
    // Only the lines on screen are built: 10 000 hosts cost what a screenful does.
    let selected = app.selected.min(lines.len() - 1);
    let (first, room) = shown_lines(area, selected, app.scroll);
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
    Some(table_lines(View::Overview, area, first))
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
