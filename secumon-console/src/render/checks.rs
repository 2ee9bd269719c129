//! The checks view: every probe check's last result with its latency over the hour, and
//! the pop-up with one check's details.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{TableLines, ago, popup, shown_lines, table_lines};
use crate::app::{App, View};

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

pub(super) fn checks(app: &App, frame: &mut Frame, area: Rect) -> Option<TableLines> {
    let title = format!(" Checks ({}) — Enter for details ", app.data.checks.len());
    if app.data.checks.is_empty() {
        frame.render_widget(
            Paragraph::new("No probe check has reported yet.").block(Block::bordered().title(title)),
            area,
        );
        return None;
    }
    let (first, room) = shown_lines(area, app.selected, app.scroll);
    let rows = app.data.checks.iter().enumerate().skip(first).take(room).map(|(i, c)| {
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
    Some(table_lines(View::Checks, area, first))
}

pub(super) fn check_detail(check: &crate::app::CheckRow, frame: &mut Frame) {
    let text = serde_json::to_string_pretty(&check.result.details).unwrap_or_default();
    let lines: Vec<Line> = text.lines().map(|l| Line::from(l.to_string())).collect();
    popup(frame, format!(" {} {} — any key closes ", check.result.kind, check.result.target), lines);
}
