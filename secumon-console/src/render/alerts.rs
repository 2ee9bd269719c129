//! The alerts view (pending, firing and stale alerts) and the silences pop-up.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{TableLines, ago, popup, severity_colour, shown_lines, table_lines};
use crate::app::{App, View};

/// The silences in force, the selected one highlighted.
pub(super) fn silences(now_ms: i64, rows: &[crate::app::SilenceRow], at: usize, frame: &mut Frame) {
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

pub(super) fn alerts(app: &App, frame: &mut Frame, area: Rect) -> Option<TableLines> {
    let title = " Alerts (a acknowledge, s silence, S silences, h rule history) ";
    if app.data.alerts.is_empty() {
        frame.render_widget(
            Paragraph::new("No alert pending, firing or stale.").block(Block::bordered().title(title)),
            area,
        );
        return None;
    }
    let (first, room) = shown_lines(area, app.selected, app.scroll);
    let rows = app.data.alerts.iter().enumerate().skip(first).take(room).map(|(i, a)| {
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
    Some(table_lines(View::Alerts, area, first))
}
